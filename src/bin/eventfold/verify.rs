//! `eventfold verify`: walk the whole store and name every fault.

use std::io::Write;

use crate::{Ctx, Outcome, output};

/// Arguments of `verify`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_read()?;
    let spinner = output::spinner("verifying every record and index");
    let report = store.verify()?;
    spinner.finish_and_clear();
    let mut out = output::stdout();
    if ctx.json {
        output::json_line(&mut out, &report)?;
    } else {
        for f in &report.faults {
            writeln!(out, "FAULT {f}")?;
        }
        if report.fault_count > report.faults.len() as u64 {
            writeln!(
                out,
                "… and {} more faults",
                report.fault_count.saturating_sub(report.faults.len() as u64)
            )?;
        }
        writeln!(
            out,
            "checked {} events, {} streams, {} index runs, {} event ids, {} term index blocks: {}",
            report.events,
            report.streams,
            report.index_runs,
            report.event_ids,
            report.term_blocks,
            if report.is_ok() { "ok".to_string() } else { format!("{} faults", report.fault_count) }
        )?;
        if report.removed > 0 {
            writeln!(out, "{} positions were removed by scavenging (recorded, not damage)", report.removed)?;
        }
    }
    out.flush()?;
    if report.is_ok() {
        Ok(Outcome::Ok)
    } else {
        Ok(Outcome::Failed(format!(
            "verify found {} faults in {}: restore from a backup (`eventfold backup`), or rebuild the store from an export",
            report.fault_count,
            ctx.data.display()
        )))
    }
}
