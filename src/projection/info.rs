//! What the `projections/` environment says about each projection, read
//! without the projections' code: for tools (`eventfold projection list`,
//! `eventfold stats`) that run beside the service that owns the projections.

use serde::{Deserialize, Serialize};

use crate::projection::ProjEnv;
use crate::store::Store;
use crate::vocab::Result;

/// A projection's progress as stored on disk; see [`Store::stored_projections`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredProjection {
    /// The projection's name.
    pub name: String,
    /// The version of the model readers see.
    pub version: u32,
    /// The last position applied to the model readers see.
    pub checkpoint: u64,
    /// When that event was recorded (µs since the Unix epoch; 0 when none).
    pub checkpoint_at: u64,
    /// The head of the log.
    pub head: u64,
    /// Positions between the checkpoint and the head.
    pub lag_events: u64,
    /// Time between the checkpoint's event and the newest event, in µs.
    pub lag_micros: u64,
    /// When a rebuild is under way: the position it has reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_checkpoint: Option<u64>,
    /// Set when the read model does not match the log and is not served
    /// (see [`Error::ReadModelAhead`](crate::Error::ReadModelAhead)): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_served: Option<String>,
}

impl Store {
    /// Every projection that has a read model in this store, with its
    /// checkpoint and lag, read from disk: it needs no registered
    /// [`Projection`](crate::Projection), so it works from a read-only handle
    /// beside the service that runs the projections.
    pub fn stored_projections(&self) -> Result<Vec<StoredProjection>> {
        let reader = self.read()?;
        let head = reader.head()?;
        let head_at = match reader.event(head)? {
            Some(e) if head > 0 => e.recorded_at(),
            _ => 0,
        };
        drop(reader);
        let Some(env) = ProjEnv::get(self)? else { return Ok(Vec::new()) };
        let txn = env.env.read_txn()?;
        let mut out = Vec::new();
        for item in env.meta.iter(&txn)? {
            let (k, _) = item?;
            if k.first() == Some(&0) {
                continue; // the environment's own entries (format, store id)
            }
            let name = String::from_utf8_lossy(k).into_owned();
            let Some(meta) = env.load_meta(&txn, &name)? else { continue };
            out.push(StoredProjection {
                version: meta.version,
                checkpoint: meta.checkpoint,
                checkpoint_at: meta.checkpoint_at,
                head,
                lag_events: head.saturating_sub(meta.checkpoint),
                lag_micros: if meta.checkpoint >= head {
                    0
                } else {
                    head_at.saturating_sub(meta.checkpoint_at)
                },
                rebuild_checkpoint: meta.rebuild.as_ref().map(|r| r.checkpoint),
                not_served: env.stale.get(&name).cloned(),
                name,
            });
        }
        Ok(out)
    }

    /// One projection's stored progress; `None` when the store has no read
    /// model of that name.
    pub fn stored_projection(&self, name: &str) -> Result<Option<StoredProjection>> {
        Ok(self.stored_projections()?.into_iter().find(|p| p.name == name))
    }
}
