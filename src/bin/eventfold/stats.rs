//! `eventfold stats`: what is in the store.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

use crate::{Ctx, Outcome, output};

/// Arguments of `stats`.
#[derive(clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct Stats {
    data: String,
    store_id: String,
    created_at: u64,
    events: u64,
    streams: u64,
    head: u64,
    last_commit_at: Option<u64>,
    size_on_disk: u64,
    map_size: u64,
    projections: Vec<eventfold::StoredProjection>,
    consumers: Vec<eventfold::ConsumerInfo>,
}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_read()?;
    let s = store.stats().context("reading the store's counters")?;
    let reader = store.read()?;
    let last_commit_at = match reader.event(s.head)? {
        Some(e) if s.head > 0 => Some(e.recorded_at()),
        _ => None,
    };
    let stats = Stats {
        data: ctx.data.display().to_string(),
        store_id: store.store_id().to_string(),
        created_at: store.created_at(),
        // Positions are gapless, so the head is the number of events.
        events: s.head,
        streams: s.streams,
        head: s.head,
        last_commit_at,
        size_on_disk: s.size_on_disk,
        map_size: s.map_size,
        projections: store.stored_projections().context("reading the projections' checkpoints")?,
        consumers: store.consumers().context("reading the consumers' checkpoints")?,
    };
    let mut out = output::stdout();
    if ctx.json {
        output::json_line(&mut out, &stats)?;
    } else {
        output::pairs(
            &mut out,
            &[
                ("data", stats.data.clone()),
                ("store id", stats.store_id.clone()),
                ("created", output::time(stats.created_at)),
                ("events", stats.events.to_string()),
                ("streams", stats.streams.to_string()),
                ("head", stats.head.to_string()),
                ("last commit", stats.last_commit_at.map_or_else(|| "-".into(), output::time)),
                ("size on disk", output::size(stats.size_on_disk)),
                ("map size", output::size(stats.map_size)),
                ("projections", stats.projections.len().to_string()),
                ("consumers", stats.consumers.len().to_string()),
            ],
        )?;
        for p in &stats.projections {
            writeln!(
                out,
                "  projection {}: checkpoint {}, lag {} events",
                p.name, p.checkpoint, p.lag_events
            )?;
        }
        for c in &stats.consumers {
            writeln!(out, "  consumer {}: checkpoint {}, lag {} events", c.name, c.checkpoint, c.lag)?;
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
