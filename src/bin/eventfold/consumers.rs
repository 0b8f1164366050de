//! `eventfold consumers`: durable consumers, their checkpoints and lag.

use std::io::Write;

use crate::{Ctx, Outcome, output};

/// Arguments of `consumers`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_read()?;
    let consumers = store.consumers()?;
    let mut out = output::stdout();
    if ctx.json {
        for c in &consumers {
            output::json_line(&mut out, c)?;
        }
    } else {
        let mut table = output::Table::new(
            Vec::new(),
            &["NAME", "CHECKPOINT", "HEAD", "LAG", "PENDING DEDUP", "UPDATED"],
        );
        for c in &consumers {
            table.row(vec![
                c.name.clone(),
                c.checkpoint.to_string(),
                c.head.to_string(),
                c.lag.to_string(),
                c.pending_dedup.to_string(),
                output::time(c.updated_at),
            ])?;
        }
        out.write_all(&table.finish()?)?;
        if consumers.is_empty() {
            eprintln!("eventfold: no durable consumers in {}", ctx.data.display());
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
