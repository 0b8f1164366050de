//! Hot backups: a consistent copy of the store taken while it is in use.

use std::path::Path;

use heed::{CompactionOption, Env, WithoutTls};

use crate::projection::ProjEnv;
use crate::store::Store;
use crate::vocab::{Error, Result, from_heed_while};

impl Store {
    /// Copies the store into `dir` (created if missing; it must not already
    /// hold a store) as of one read transaction, so the copy is consistent
    /// even while the writer goes on. With `compact`, free pages are left out
    /// and the copy is as small as the live data; without, the copy is a
    /// page-for-page image (faster). Works on a read-only handle too, so a
    /// backup can run beside the writing process. The copy opens as a normal
    /// store.
    ///
    /// Read models (`projections/`) are copied too, first: a read model's
    /// checkpoint then never runs ahead of the copied log, and a runner on
    /// the restored store catches up from it.
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
        if self.path().join("projections").join("data.mdb").exists()
            && let Some(projections) = ProjEnv::get(self)?
        {
            let to = dir.join("projections");
            std::fs::create_dir_all(&to).map_err(|e| Error::io(&to, e))?;
            copy_env(&projections.env, &to.join("data.mdb"), option)?;
        }
        copy_env(self.env(), &target, option)
    }
}

/// Copies one LMDB environment to `target` and syncs the copy: it must be on
/// disk before the caller relies on it.
fn copy_env(env: &Env<WithoutTls>, target: &Path, option: CompactionOption) -> Result<()> {
    let file = env.copy_to_path(target, option).map_err(|e| match e {
        heed::Error::Io(io) => Error::io(target, io),
        other => from_heed_while(other, format!("backing up to {}", target.display())),
    })?;
    file.sync_all().map_err(|e| Error::io(target, e))
}
