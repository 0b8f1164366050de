//! `eventfold tail`: follow new events live, until Ctrl-C (or `--limit`).

use std::io::Write;

use eventfold::{Filter, SubscribeFrom};

use crate::{Ctx, Outcome, output};

/// Arguments of `tail`.
#[derive(clap::Args)]
pub struct Args {
    /// First position to show (default: only events appended from now on).
    #[arg(long, value_name = "P")]
    pub from: Option<u64>,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only streams of this category (repeatable).
    #[arg(long, value_name = "C")]
    pub category: Vec<String>,
    /// Only this stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    // Read-only: tail follows a store that a service is writing. The store
    // handle is read-only and every line is flushed as it is printed, so
    // Ctrl-C (which ends the process) loses nothing and leaves nothing behind.
    let store = ctx.open_read()?;
    let mut filter = Filter::new().event_types(a.types.iter().cloned());
    for c in &a.category {
        filter = filter.category(c.clone());
    }
    if let Some(s) = &a.stream {
        filter = filter.stream(s.clone());
    }
    let from = a.from.map_or(SubscribeFrom::End, SubscribeFrom::AtPosition);
    let sub = store.subscribe(from, filter)?;
    let mut out = std::io::stdout().lock();
    let mut left = a.limit.unwrap_or(u64::MAX);
    if !ctx.json && left > 0 {
        writeln!(
            out,
            "{:<10}  {:<24}  {:<7}  {:<20}  {:<24}  DATA",
            "POSITION", "STREAM", "VERSION", "TYPE", "RECORDED"
        )?;
    }
    if left == 0 {
        return Ok(Outcome::Ok);
    }
    for event in sub {
        let e = event?;
        if ctx.json {
            output::json_line(&mut out, &e)?;
        } else {
            let r = output::event_row(&e);
            writeln!(out, "{:<10}  {:<24}  {:<7}  {:<20}  {:<24}  {}", r[0], r[1], r[2], r[3], r[4], r[5])?;
        }
        out.flush()?;
        // Above 0 here: the loop stops when it reaches 0.
        left = left.saturating_sub(1);
        if left == 0 {
            break;
        }
    }
    Ok(Outcome::Ok)
}
