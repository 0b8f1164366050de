//! The `LOCK` file: one writing process per store directory.
//!
//! The lock is an OS file lock (`flock`), so it dies with its process: a
//! crashed writer never leaves a stale lock behind. The file also holds the
//! holder's pid, so a refused opener can say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::vocab::{Error, Result};

/// Name of the lock file inside the data directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// How many times (5 ms apart) to retry a lock that names this very process.
const SAME_PROCESS_RETRIES: u32 = 100;

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
    let me = std::process::id();
    let mut patience = SAME_PROCESS_RETRIES;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let holder = read_pid(&mut file);
                if holder != Some(me) {
                    return Err(Error::Locked { path: dir.to_path_buf(), pid: holder });
                }
                // The lock file names this process. Either a store handle here
                // still holds it, or a child process forked by this process
                // inherited the lock's file descriptor for the instant between
                // fork and exec. Give the second case time to pass.
                if patience == 0 {
                    return Err(Error::AlreadyOpen { path: dir.to_path_buf() });
                }
                patience = patience.saturating_sub(1);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
    }
    let pid = me;
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
    fn second_lock_in_the_same_process_is_already_open() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path()).unwrap();
        assert!(matches!(acquire(dir.path()), Err(Error::AlreadyOpen { .. })));
        drop(held);
        assert!(acquire(dir.path()).is_ok());
    }
}
