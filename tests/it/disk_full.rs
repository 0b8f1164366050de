//! A real full disk: the store lives on a 2 MiB tmpfs. The append that hits
//! ENOSPC is not acknowledged and poisons the store (a failed write cannot be
//! retried safely); reads go on; after space is freed, a reopen continues
//! with every acknowledged event in place. Needs root to mount; otherwise the
//! test says why it skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use eventfold::{Error, ExpectedVersion, NewEvent, Store};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(at.to_path_buf()))
}

#[test]
fn full_disk_is_not_acknowledged_and_reopen_continues() {
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_tmpfs(base.path(), "2m") else {
        println!("skipped: cannot mount a tmpfs here (needs root); see docs/reliability.md");
        return;
    };
    let dir = mount.0.join("store");
    let store = Store::builder(&dir).map_size(64 << 20).open().unwrap();
    let mut acked = Vec::new();
    let err = loop {
        match store.append(
            "disk-1",
            ExpectedVersion::Exact(acked.len() as u64),
            [NewEvent::binary("Blob", vec![1u8; 50_000])],
        ) {
            Ok(r) => acked.push(r.event_ids[0]),
            Err(e) => break e,
        }
        assert!(acked.len() < 200, "a 2 MiB disk should fill up");
    };
    assert!(
        matches!(err, Error::Poisoned { .. } | Error::StorageFull { .. } | Error::Storage { .. }),
        "{err:?}"
    );
    println!("disk full after {} appends: {err}", acked.len());
    assert_eq!(store.read().unwrap().stream_version("disk-1").unwrap(), acked.len() as u64);
    drop(store);

    // Make room: grow the filesystem, then reopen.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(&mount.0)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "remount with more space failed");
    let store = Store::builder(&dir).map_size(64 << 20).open().unwrap();
    assert!(store.verify().unwrap().is_ok());
    let r = store.read().unwrap();
    for (i, id) in acked.iter().enumerate() {
        let e = r
            .stream("disk-1", eventfold::ReadStream::forward().from_version(i as u64 + 1).limit(1))
            .unwrap()
            .next();
        assert_eq!(e.unwrap().unwrap().event_id(), *id);
    }
    let v = r.stream_version("disk-1").unwrap();
    drop(r);
    store.append("disk-1", ExpectedVersion::Exact(v), [NewEvent::binary("Blob", vec![2u8; 10])]).unwrap();
    drop(store);
}
