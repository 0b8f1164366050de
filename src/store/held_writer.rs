//! For tests: holding the writer inside its transaction, so that the
//! requests queued behind it are taken together (one batch) or fill the
//! queue.

use crossbeam_channel::{Receiver, Sender};
use heed::RwTxn;

use super::Store;
use crate::lmdb::env::Dbs;
use crate::writer::{AppendTicket, SideWrite, boxed};

/// A side write that waits, inside the writer's transaction, until told
/// to go on.
#[derive(Debug)]
struct Gate {
    entered: Sender<()>,
    release: Receiver<()>,
}

impl SideWrite for Gate {
    fn apply(&self, _wtxn: &mut RwTxn<'_>, _dbs: &Dbs) -> heed::Result<()> {
        let _ = self.entered.send(());
        let _ = self.release.recv();
        Ok(())
    }
}

/// The writer, held until [`HeldWriter::release`].
pub(crate) struct HeldWriter {
    release: Sender<()>,
    held: AppendTicket,
}

impl HeldWriter {
    /// Holds `store`'s writer; returns once it is held.
    pub(crate) fn hold(store: &Store) -> HeldWriter {
        let (entered_tx, entered) = crossbeam_channel::bounded(1);
        let (release, release_rx) = crossbeam_channel::bounded(1);
        let held = store
            .send(Vec::new(), vec![boxed(Gate { entered: entered_tx, release: release_rx })])
            .unwrap_or_else(|e| panic!("holding the writer: {e}"));
        entered.recv().unwrap_or_else(|e| panic!("the writer never took the gate: {e}"));
        HeldWriter { release, held }
    }

    /// Lets the writer go on, and waits for the held request's commit.
    pub(crate) fn release(self) {
        let _ = self.release.send(());
        self.held.wait_many().unwrap_or_else(|e| panic!("the held request failed: {e}"));
    }
}
