//! `eventfold`: the command-line tool of the eventfold event store. A thin
//! layer over the library: one file per command.

#![deny(clippy::arithmetic_side_effects)]

mod append;
mod backup;
mod consumers;
mod delete;
mod demo;
mod event;
mod export;
mod import;
mod init;
mod output;
mod projection;
mod read;
mod reindex;
mod scavenge;
mod serve;
mod snapshot;
mod state;
mod stats;
mod streams;
mod tail;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use eventfold::{Error, Store};

/// eventfold: an embedded event store on LMDB.
#[derive(Parser)]
#[command(
    name = "eventfold",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 done; 1 the command failed, or `verify` found faults; 2 a usage error; \
3 the store's files are damaged (a corrupt record or index entry, a file cut short, a damaged page): \
restore the store from a backup, and run `eventfold verify` to see what is wrong."
)]
struct Cli {
    /// The store's data directory.
    #[arg(long, global = true, env = "EVENTFOLD_DATA", default_value = "./eventfold-data")]
    data: PathBuf,
    /// Machine-readable output: JSON (one object, or one per line for lists).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a store (or check that one exists and opens).
    Init(init::Args),
    /// Events, streams, size on disk, head and last commit time.
    Stats(stats::Args),
    /// Append one event to a stream.
    Append(append::Args),
    /// Read one stream, or the whole log with --all.
    Read(read::Args),
    /// List streams with their versions.
    Streams(streams::Args),
    /// Show one event, by id or by position.
    Event(event::Args),
    /// Follow new events live (Ctrl-C ends it).
    Tail(tail::Args),
    /// The JSON-merge state of a stream, now or as of a version or time.
    State(state::Args),
    /// Snapshots of the JSON-merge state.
    #[command(subcommand)]
    Snapshot(snapshot::Args),
    /// Durable consumers with their checkpoints and lag.
    Consumers(consumers::Args),
    /// Projections (read models) with their checkpoints and lag.
    #[command(subcommand)]
    Projection(projection::Args),
    /// Check every record, index and stream head; exit 1 on any fault.
    Verify(verify::Args),
    /// Build the indexes by event type, category and tag anew (after `verify` reports index faults).
    Reindex(reindex::Args),
    /// Delete a stream: hidden at once (appending brings it back), or for good with --hard.
    Delete(delete::DeleteArgs),
    /// Limit what of a stream is served: truncate before a version, a maximum count or age.
    Retention(delete::RetentionArgs),
    /// Remove from the file the events deletions and retention no longer serve.
    Scavenge(scavenge::Args),
    /// Write the log as JSON lines (every field kept), to stdout or a file.
    Export(export::Args),
    /// Load an export; importing the same file twice writes nothing new.
    Import(import::Args),
    /// Copy the store, consistently, while it is in use.
    Backup(backup::Args),
    /// Run a small bank-account scenario and show what to look at next.
    Demo(demo::Args),
    /// Serve the JSON-lines protocol on stdin/stdout or TCP.
    Serve(serve::Args),
}

/// What every command gets: where the store is and how to print.
pub struct Ctx {
    /// The data directory.
    pub data: PathBuf,
    /// `--json` was given.
    pub json: bool,
}

impl Ctx {
    /// Opens the store read-only: works while another process writes.
    pub fn open_read(&self) -> anyhow::Result<Store> {
        Store::builder(&self.data).open_read_only().map_err(|e| explain(e, &self.data))
    }

    /// Opens (or creates) the store for writing.
    pub fn open_write(&self) -> anyhow::Result<Store> {
        Store::open(&self.data).map_err(|e| explain(e, &self.data))
    }
}

/// Rewords the library's open errors in the CLI's terms.
fn explain(e: Error, data: &std::path::Path) -> anyhow::Error {
    match e {
        Error::Locked { pid, .. } => anyhow!(
            "store {} is locked by {}: stop it, or use a read-only command (read, stats, export, verify, backup)",
            data.display(),
            pid.map_or_else(|| "another process".to_string(), |p| format!("pid {p}"))
        ),
        Error::NotAStore { .. } => anyhow!(
            "no eventfold store at {}: create one with `eventfold init`, or point --data (or EVENTFOLD_DATA) at an existing store",
            data.display()
        ),
        other => anyhow::Error::new(other),
    }
}

/// How a command ended when it did not fail outright.
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1 with this one-line reason (the command ran but found a problem,
    /// such as `verify` finding faults).
    Failed(String),
}

fn main() -> ExitCode {
    // Before anything opens the store: a damaged page that LMDB follows out
    // of the file ends the process with one line and exit code 3, not a
    // bare `Bus error`.
    if let Err(e) = eventfold::install_damaged_file_handler() {
        eprintln!("eventfold: warning: {e}");
    }
    let cli = Cli::parse();
    let ctx = Ctx { data: cli.data, json: cli.json };
    let result = match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Stats(a) => stats::run(&ctx, a),
        Command::Append(a) => append::run(&ctx, a),
        Command::Read(a) => read::run(&ctx, a),
        Command::Streams(a) => streams::run(&ctx, a),
        Command::Event(a) => event::run(&ctx, a),
        Command::Tail(a) => tail::run(&ctx, a),
        Command::State(a) => state::run(&ctx, a),
        Command::Snapshot(a) => snapshot::run(&ctx, a),
        Command::Consumers(a) => consumers::run(&ctx, a),
        Command::Projection(a) => projection::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Reindex(a) => reindex::run(&ctx, a),
        Command::Delete(a) => delete::delete(&ctx, a),
        Command::Retention(a) => delete::retention(&ctx, a),
        Command::Scavenge(a) => scavenge::run(&ctx, a),
        Command::Export(a) => export::run(&ctx, a),
        Command::Import(a) => import::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Demo(a) => demo::run(&ctx, a),
        Command::Serve(a) => serve::run(&ctx, a),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed(reason)) => {
            eprintln!("eventfold: {reason}");
            ExitCode::FAILURE
        }
        // `eventfold read --all | head` closes the pipe early: not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let text = one_line(&e);
            eprintln!("eventfold: error: {text}");
            if is_damage(&e) { ExitCode::from(DAMAGED_EXIT) } else { ExitCode::FAILURE }
        }
    }
}

/// The exit code of a command stopped by damaged store files, the same as
/// the signal handler's.
const DAMAGED_EXIT: u8 = {
    assert!(eventfold::DAMAGED_FILE_EXIT_CODE > 0 && eventfold::DAMAGED_FILE_EXIT_CODE < 256);
    eventfold::DAMAGED_FILE_EXIT_CODE as u8
};

/// The error and its context chain on one line: "doing X: because Y". The
/// chain ends at the library's error, whose message already names its cause
/// (the I/O or LMDB error it wraps): printing that cause again would say
/// it twice.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        parts.push(cause.to_string());
        if cause.downcast_ref::<Error>().is_some() {
            break;
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// Whether the command failed on damaged data: a corrupt record or index
/// entry, a damaged file or page.
fn is_damage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Error>().is_some_and(Error::is_damage))
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
