//! `eventfold scavenge`: remove from the file what deletions and retention
//! no longer serve, with a progress bar; safe to stop and run again.

use std::io::Write;

use crate::{Ctx, Outcome, output};

/// Arguments of `scavenge`.
#[derive(clap::Args)]
pub struct Args {
    /// Only say how many events a scavenge would remove.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_write()?;
    let mut out = output::stdout();
    if args.dry_run {
        let n = store.scavengeable()?;
        if ctx.json {
            output::json_line(&mut out, &serde_json::json!({ "scavengeable": n }))?;
        } else {
            writeln!(out, "{n} events are no longer served and would be removed")?;
        }
        out.flush()?;
        return Ok(Outcome::Ok);
    }
    let bar = output::progress(store.scavengeable()?, "scavenging");
    let report = store.scavenge_with_progress(|p| {
        bar.set_length(p.planned.max(p.removed));
        bar.set_position(p.removed);
    })?;
    bar.finish_and_clear();
    if ctx.json {
        output::json_line(&mut out, &report)?;
    } else {
        writeln!(
            out,
            "removed {} events of {} streams in {} steps; `eventfold backup --compact` writes a smaller copy",
            report.events_removed, report.streams, report.steps
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
