//! Arguments of `eventfold projection list|status|rebuild`, fixed here so the
//! command line is designed in one place. Projections are Rust types compiled
//! into the service that runs them: listing their status needs the library to
//! read projection metadata without the projection's code, and a rebuild
//! needs that code, so the command is added when the library offers both.
//! Until then it is not reachable, hence the `dead_code` allowance.
#![allow(dead_code)]

use clap::Subcommand;

/// `eventfold projection …`
#[derive(Subcommand)]
pub enum ProjectionCommand {
    /// Projections with their checkpoints and lag.
    List,
    /// One projection's checkpoint, head, lag in events and time.
    Status {
        /// The projection's name.
        name: String,
    },
    /// Rebuild a projection from position 1 (with progress); readers keep the
    /// old model until the new one has caught up.
    Rebuild {
        /// The projection's name.
        name: String,
    },
}
