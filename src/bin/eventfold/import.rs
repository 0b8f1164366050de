//! `eventfold import`: load an export, keeping ids, versions, metadata and times.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use eventfold::{AppendTicket, Error, RecordedEvent, Store};

use crate::{Ctx, Outcome, output};

/// Most events in one append: a run of one stream is split beyond this.
const MAX_RUN: usize = 1024;
/// Appends kept in flight, so the writer can group them into large commits.
const IN_FLIGHT: usize = 64;

/// Arguments of `import`.
#[derive(clap::Args)]
pub struct Args {
    /// The export file (JSON lines), or `-` for stdin.
    pub file: PathBuf,
}

#[derive(serde::Serialize, Default)]
struct Summary {
    events: u64,
    written: u64,
    already_stored: u64,
}

/// A run of consecutive events of one stream, and the line it started on.
struct Run {
    line: u64,
    events: Vec<RecordedEvent>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    let (input, len): (Box<dyn Read>, u64) = if a.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), 0)
    } else {
        let f = File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(f), len)
    };
    let store = ctx.open_write()?;
    let bar = output::progress(len, "importing");
    let mut summary = Summary::default();
    let mut in_flight: VecDeque<(u64, u64, AppendTicket)> = VecDeque::new();
    let mut run: Option<Run> = None;
    for (index, line) in BufReader::new(input).lines().enumerate() {
        let line_no = (index as u64).saturating_add(1);
        let line = line.with_context(|| format!("reading line {line_no} of {}", a.file.display()))?;
        bar.inc((line.len() as u64).saturating_add(1));
        if line.trim().is_empty() {
            continue;
        }
        let event: RecordedEvent = serde_json::from_str(&line).map_err(|e| {
            anyhow!("line {line_no} is not an exported event ({e}): import only files written by `eventfold export`")
        })?;
        summary.events = summary.events.saturating_add(1);
        let continues = run.as_ref().is_some_and(|r| {
            r.events.len() < MAX_RUN
                && r.events.last().is_some_and(|l| {
                    l.stream_id == event.stream_id && l.version.checked_add(1) == Some(event.version)
                })
        });
        if !continues && let Some(done) = run.take() {
            submit(&store, done, &mut in_flight, &mut summary)?;
        }
        run.get_or_insert_with(|| Run { line: line_no, events: Vec::new() }).events.push(event);
    }
    if let Some(done) = run.take() {
        submit(&store, done, &mut in_flight, &mut summary)?;
    }
    while let Some(t) = in_flight.pop_front() {
        settle(t, &mut summary)?;
    }
    bar.finish_and_clear();
    let mut out = output::stdout();
    if ctx.json {
        output::json_line(&mut out, &summary)?;
    } else {
        writeln!(
            out,
            "imported {} events from {}: {} written, {} already stored",
            summary.events,
            a.file.display(),
            summary.written,
            summary.already_stored
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

fn submit(
    store: &Store,
    run: Run,
    in_flight: &mut VecDeque<(u64, u64, AppendTicket)>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    if in_flight.len() >= IN_FLIGHT
        && let Some(t) = in_flight.pop_front()
    {
        settle(t, summary)?;
    }
    let n = run.events.len() as u64;
    let ticket = store.submit_recorded(run.events).map_err(|e| explain(run.line, e))?;
    in_flight.push_back((run.line, n, ticket));
    Ok(())
}

fn settle((line, n, ticket): (u64, u64, AppendTicket), summary: &mut Summary) -> anyhow::Result<()> {
    let r = ticket.wait().map_err(|e| explain(line, e))?;
    if r.already_stored {
        summary.already_stored = summary.already_stored.saturating_add(n);
    } else {
        summary.written = summary.written.saturating_add(n);
    }
    Ok(())
}

fn explain(line: u64, e: Error) -> anyhow::Error {
    match e {
        Error::WrongExpectedVersion { stream, expected, actual } => anyhow!(
            "line {line}: the file continues stream {stream:?} after version {expected}, but the store has it at version {actual}: import into an empty store, or into the store the export came from"
        ),
        Error::DuplicateEventId { .. } => anyhow!(
            "line {line}: {e} (the store holds these events at other places: it is not the store the export came from, nor empty)"
        ),
        other => anyhow::Error::new(other).context(format!("importing the events from line {line}")),
    }
}
