//! `eventfold projection list|status`: read models and how far behind they are.

use std::io::Write;

use clap::Subcommand;
use eventfold::StoredProjection;

use crate::{Ctx, Outcome, output};

/// `eventfold projection …`
#[derive(Subcommand)]
pub enum Args {
    /// Projections with their checkpoints and lag.
    List,
    /// One projection's checkpoint, head, lag in events and time.
    Status {
        /// The projection's name.
        name: String,
    },
}

/// A lag in microseconds for people: `0s`, `1.5s`, `3m 20s`.
fn lag(micros: u64) -> String {
    let secs = micros / 1_000_000;
    match secs {
        0 => format!("{:.1}s", micros as f64 / 1e6),
        1..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, (secs % 3600) / 60),
    }
}

fn row(p: &StoredProjection) -> Vec<String> {
    vec![
        p.name.clone(),
        p.version.to_string(),
        p.checkpoint.to_string(),
        p.head.to_string(),
        p.lag_events.to_string(),
        lag(p.lag_micros),
        p.rebuild_checkpoint.map_or_else(|| "-".into(), |c| format!("at {c}")),
    ]
}

const HEADERS: [&str; 7] = ["NAME", "VERSION", "CHECKPOINT", "HEAD", "LAG", "LAG TIME", "REBUILD"];

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_read()?;
    let mut out = output::stdout();
    let projections = match &a {
        Args::List => store.stored_projections()?,
        Args::Status { name } => match store.stored_projection(name)? {
            Some(p) => vec![p],
            None => {
                return Ok(Outcome::Failed(format!(
                    "no projection named {name:?} in {}: list them with `eventfold projection list` (a projection appears once the service that defines it has run it)",
                    ctx.data.display()
                )));
            }
        },
    };
    if ctx.json {
        for p in &projections {
            output::json_line(&mut out, p)?;
        }
    } else if let Args::Status { .. } = a {
        for p in &projections {
            output::pairs(
                &mut out,
                &[
                    ("projection", p.name.clone()),
                    ("version", p.version.to_string()),
                    ("checkpoint", p.checkpoint.to_string()),
                    ("checkpoint time", output::time(p.checkpoint_at)),
                    ("head", p.head.to_string()),
                    ("lag", format!("{} events, {}", p.lag_events, lag(p.lag_micros))),
                    (
                        "rebuild",
                        p.rebuild_checkpoint.map_or_else(|| "none".into(), |c| format!("under way, at {c}")),
                    ),
                ],
            )?;
        }
    } else {
        let mut table = output::Table::new(Vec::new(), &HEADERS);
        for p in &projections {
            table.row(row(p))?;
        }
        out.write_all(&table.finish()?)?;
        if projections.is_empty() {
            eprintln!("eventfold: no projections in {}", ctx.data.display());
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
