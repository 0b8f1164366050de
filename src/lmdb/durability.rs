//! How hard a commit works to survive a crash: the environment's sync flags,
//! and what the writer promises under each.

/// How hard a commit works to survive a crash.
///
/// | setting | fsyncs per commit | process crash | power cut / kernel crash | read models, durable consumers |
/// |---|---|---|---|---|
/// | `Sync` | 2 (data, then meta) | nothing acknowledged lost | nothing acknowledged lost | follow every commit |
/// | `Relaxed` | 1 (data and the previous meta) | nothing acknowledged lost | the last commit may be undone; the file stays intact | follow one commit behind, or a sync (at most `sync_interval` after they wait) |
/// | `NoSync` | 0 (the OS flushes when it likes) | nothing acknowledged lost | every commit since the last [`Store::sync`](crate::Store::sync) or clean close may be lost, and unless the file system keeps write order the file can be damaged — damage that open or `verify` may not see | follow syncs: the writer syncs at most `sync_interval` after they wait |
///
/// [`Store::close`](crate::Store::close) syncs under every setting, and
/// [`Store::sync`](crate::Store::sync) makes everything committed durable on
/// demand. Under `NoSync` that holds only while nothing is committed after
/// the sync: LMDB reuses the pages that later commits free, and when those
/// are written back out of order a power cut can damage what was synced
/// before. So with `NoSync`, a power cut in the middle of writing promises
/// nothing (the damage may even pass `verify`): restore from a backup, or
/// rebuild the data. After a sync or a clean close with no writes since,
/// nothing is lost.
///
/// More settings may be added: a `match` outside eventfold needs a wildcard
/// arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every commit is on disk before the appenders are answered: an
    /// acknowledged event survives a process crash and a power cut. Group
    /// commit spreads the fsyncs over every request of a batch.
    #[default]
    Sync,
    /// One fsync per commit instead of two (LMDB's `NOMETASYNC`): the data
    /// pages are synced, the meta page that makes them current is synced with
    /// the next commit. A power cut may undo the last acknowledged commit;
    /// the file is never damaged.
    Relaxed,
    /// No fsync (LMDB's `NOSYNC`): commits are left to the operating system
    /// to flush. A process crash loses nothing acknowledged (the data is in
    /// the page cache). A power cut or kernel crash may lose recent commits,
    /// and, on a file system that reorders writes, may damage the file. For
    /// data you can rebuild (tests, caches), and bulk loads followed by a
    /// [`Store::sync`](crate::Store::sync) or a [`Store::close`](crate::Store::close).
    NoSync,
}
