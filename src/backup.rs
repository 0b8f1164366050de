//! Hot backups: a consistent copy of the store taken while it is in use.

use std::path::Path;

use heed::CompactionOption;

use crate::error::{Error, Result};
use crate::store::Store;

impl Store {
    /// Copies the store into `dir` (created if missing; it must not already
    /// hold a store) as of one read transaction, so the copy is consistent
    /// even while the writer goes on. With `compact`, free pages are left out
    /// and the copy is as small as the live data; without, the copy is a
    /// page-for-page image (faster). Works on a read-only handle too, so a
    /// backup can run beside the writing process. The copy opens as a normal
    /// store.
    pub fn backup_to(&self, dir: impl AsRef<Path>, compact: bool) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let target = dir.join("data.mdb");
        if target.exists() {
            return Err(Error::io(
                &target,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the backup directory already holds a store: choose an empty directory",
                ),
            ));
        }
        let option = if compact { CompactionOption::Enabled } else { CompactionOption::Disabled };
        let file = self.env().copy_to_path(&target, option).map_err(|e| match e {
            heed::Error::Io(io) => Error::io(&target, io),
            other => Error::Storage(format!("backup to {} failed: {other}", target.display())),
        })?;
        // The copy must be on disk before the caller relies on it.
        file.sync_all().map_err(|e| Error::io(&target, e))
    }
}
