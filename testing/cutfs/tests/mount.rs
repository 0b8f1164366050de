//! Mounts a real `cutfs` (needs root or fusermount3, and /dev/fuse; skips
//! with the reason otherwise) and cuts it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use cutfs::{CutFs, CutMode, Image};

fn mount_or_skip(at: &std::path::Path, image: &Image) -> Option<CutFs> {
    if let Err(why) = cutfs::check_support() {
        eprintln!("skipped: {why}");
        return None;
    }
    match CutFs::mount(at, image) {
        Ok(fs) => Some(fs),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[test]
fn a_cut_keeps_what_was_synced_and_drops_the_rest() {
    let base = tempfile::tempdir().unwrap();
    let (m1, m2) = (base.path().join("m1"), base.path().join("m2"));
    std::fs::create_dir(&m1).unwrap();
    std::fs::create_dir(&m2).unwrap();
    let Some(fs) = mount_or_skip(&m1, &Image::empty()) else { return };
    std::fs::write(m1.join("written-back"), b"flushed").unwrap();
    fs.write_back();
    std::fs::write(m1.join("written-back"), b"FLUSHED").unwrap();
    std::fs::create_dir(m1.join("d")).unwrap();
    let mut synced = std::fs::File::create(m1.join("d/synced")).unwrap();
    synced.write_all(&[1u8; 10_000]).unwrap();
    synced.sync_data().unwrap();
    synced.write_all(b"lost").unwrap();
    let mut dsync = OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DSYNC)
        .open(m1.join("dsync"))
        .unwrap();
    dsync.write_all(b"kept at once").unwrap();
    std::fs::write(m1.join("unsynced"), b"gone").unwrap();
    drop((synced, dsync));
    assert!(fs.pending_pages() >= 2);
    assert!(fs.counters().sync_writes >= 1);

    let (image, report) = fs.cut(CutMode::DropAll).unwrap();
    assert_eq!(report.kept_pages(), 0, "{report}");
    assert_eq!(image.file("written-back").unwrap(), b"flushed");
    assert!(image.file("d/synced").unwrap() == [1u8; 10_000], "the synced file changed");
    assert_eq!(image.file("dsync").unwrap(), b"kept at once");
    assert_eq!(image.file("unsynced").unwrap(), b"", "the name is durable, the contents are not");

    // The surviving image is served again, and a clean unmount keeps all.
    let fs = CutFs::mount(&m2, &image).unwrap();
    assert_eq!(std::fs::read(m2.join("d/synced")).unwrap().len(), 10_000);
    std::fs::write(m2.join("unsynced"), b"back").unwrap();
    std::fs::rename(m2.join("unsynced"), m2.join("renamed")).unwrap();
    let image = fs.unmount().unwrap();
    assert_eq!(image.file("renamed").unwrap(), b"back");
    assert!(image.file("unsynced").is_none());
}

#[test]
fn flock_is_handled_by_the_kernel() {
    let base = tempfile::tempdir().unwrap();
    let Some(fs) = mount_or_skip(base.path(), &Image::empty()) else { return };
    let path = fs.path().join("f");
    let f = std::fs::File::create(&path).unwrap();
    f.try_lock().unwrap();
    let other = std::fs::File::open(&path).unwrap();
    assert!(other.try_lock().is_err(), "a second flock must be refused");
    drop((f, other));
    let (_, report) = fs.cut(CutMode::KeepAll).unwrap();
    assert_eq!(report.files.len(), 1);
}
