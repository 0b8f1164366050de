//! `eventfold export`: the log as JSON lines, every field kept.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use eventfold::ReadAll;

use crate::{Ctx, Outcome, output};

/// Events per read transaction.
const BATCH: usize = 4096;

/// Arguments of `export`.
#[derive(clap::Args)]
pub struct Args {
    /// First position to export (inclusive).
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub from: u64,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_read()?;
    let head = store.head()?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(output::stdout()),
    };
    let bar = output::progress(head.saturating_sub(a.from.max(1)).saturating_add(1), "exporting");
    let mut count = 0u64;
    for e in store.read_all_batched(ReadAll::from_position(a.from), BATCH)? {
        // One line per event, in the serde form of `RecordedEvent`.
        output::json_line(&mut out, &e?)?;
        count = count.saturating_add(1);
        bar.inc(1);
    }
    out.flush()?;
    bar.finish_and_clear();
    if let Some(path) = &a.output {
        eprintln!("exported {count} events to {}", path.display());
    }
    Ok(Outcome::Ok)
}
