//! `eventfold read`: one stream, or the whole log with `--all`.

use std::io::Write;

use anyhow::bail;
use eventfold::{Filter, ReadAll, ReadStream, RecordedEvent};

use crate::{Ctx, Outcome, output};

/// Events per read transaction: long reads release LMDB pages between batches.
const BATCH: usize = 1024;

/// Arguments of `read`.
#[derive(clap::Args)]
pub struct Args {
    /// The stream to read.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub stream: Option<String>,
    /// Read the global log instead of one stream.
    #[arg(long)]
    pub all: bool,
    /// First version (of the stream) or position (with --all) to show, inclusive.
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// Show at most this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Newest first (stream reads only).
    #[arg(long, conflicts_with = "all")]
    pub backwards: bool,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only streams of this category, the part of the id before the first `-` (repeatable; with --all).
    #[arg(long, value_name = "C", requires = "all")]
    pub category: Vec<String>,
    /// Only events that carry this tag (repeatable: any of them; with --all).
    #[arg(long = "tag", value_name = "TAG", requires = "all")]
    pub tags: Vec<String>,
    /// Only events recorded at or before this time (RFC 3339 UTC, or microseconds).
    #[arg(long, value_name = "RFC3339")]
    pub until_time: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_read()?;
    let filter = Filter::new().event_types(a.types.iter().cloned());
    let until = a.until_time.as_deref().map(output::parse_time).transpose()?;
    let events: Box<dyn Iterator<Item = eventfold::Result<RecordedEvent>>> = if a.all {
        let mut filter = filter.tags(a.tags.iter().cloned());
        for c in &a.category {
            filter = filter.category(c.clone());
        }
        let mut o = ReadAll::from_position(a.from.unwrap_or(1)).filter(filter);
        if let Some(n) = a.limit {
            o = o.limit(n);
        }
        if let Some(t) = until {
            o = o.up_to_time(t);
        }
        Box::new(store.read_all_batched(o, BATCH)?)
    } else {
        let Some(stream) = a.stream.as_deref() else { bail!("name a stream to read, or pass --all") };
        let mut o = if a.backwards { ReadStream::backward() } else { ReadStream::forward() }.filter(filter);
        if let Some(v) = a.from {
            o = o.from_version(v);
        }
        if let Some(n) = a.limit {
            o = o.limit(n);
        }
        if let Some(t) = until {
            o = o.up_to_position(store.read()?.last_position_at(t)?);
        }
        if store.read()?.stream_version(stream)? == 0 && !ctx.json {
            eprintln!("eventfold: stream {stream:?} has no events (list streams with `eventfold streams`)");
        }
        Box::new(store.read_stream_batched(stream, o, BATCH)?)
    };
    print_events(ctx, events)?;
    Ok(Outcome::Ok)
}

/// Prints events as a table, or as JSON lines (the export format) with `--json`.
pub fn print_events(
    ctx: &Ctx,
    events: impl Iterator<Item = eventfold::Result<RecordedEvent>>,
) -> anyhow::Result<()> {
    let mut out = output::stdout();
    if ctx.json {
        for e in events {
            output::json_line(&mut out, &e?)?;
        }
        out.flush()?;
        return Ok(());
    }
    let mut table = output::Table::new(out, &output::EVENT_HEADERS);
    for e in events {
        table.row(output::event_row(&e?))?;
    }
    table.finish()?;
    Ok(())
}
