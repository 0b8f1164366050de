//! The `LOCK` file: one writing process per store directory.
//!
//! The lock is an OS file lock (`flock`), so it dies with its process: a
//! crashed writer never leaves a stale lock behind. The file also holds the
//! holder's pid, so a refused opener can say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the lock file inside the data directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Held by the one process that may write; released on drop.
#[derive(Debug)]
pub(crate) struct WriterLock {
    // Kept open: closing the file would release the lock.
    _file: File,
}

/// Takes the writer lock of `dir`, or reports the pid that holds it.
pub(crate) fn acquire(dir: &Path) -> Result<WriterLock> {
    let path: PathBuf = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Locked { path: dir.to_path_buf(), pid: read_pid(&mut file) });
        }
        Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let pid = std::process::id();
    let write = |f: &mut File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        writeln!(f, "{pid}")?;
        f.sync_all()
    };
    write(&mut file).map_err(|e| Error::io(&path, e))?;
    Ok(WriterLock { _file: file })
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path()).unwrap();
        match acquire(dir.path()) {
            Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        assert!(acquire(dir.path()).is_ok());
    }
}
