//! `eventfold projection list|status`: read models and how far behind they are.

use std::io::Write;

use clap::Subcommand;
use eventfold::{Projection, ProjectionRunner, StoredProjection};

use crate::demo::Balances;
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
    /// Rebuild a projection from position 1, with progress; readers keep the
    /// old model until the new one has caught up. Only for projections built
    /// into this tool (the demo's); an application's projections are
    /// rebuilt by the application (`ProjectionRunner::rebuild`), which has
    /// their code.
    Rebuild {
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

fn rebuild(ctx: &Ctx, name: &str) -> anyhow::Result<Outcome> {
    if name != <Balances as Projection>::NAME {
        return Ok(Outcome::Failed(format!(
            "projection {name:?} is not built into this tool: rebuild it in the service that defines it, with ProjectionRunner::rebuild"
        )));
    }
    let store = ctx.open_write()?;
    let bar = output::progress(store.head()?, "rebuilding");
    let progress = bar.clone();
    let runner = ProjectionRunner::new(&store)?.register(Balances)?.on_progress(move |p| {
        progress.set_length(p.total);
        progress.set_position(p.done);
    });
    runner.rebuild(name)?;
    let statuses = runner.run_until_caught_up()?;
    bar.finish_and_clear();
    let mut out = output::stdout();
    for s in statuses {
        if ctx.json {
            output::json_line(&mut out, &s)?;
        } else {
            writeln!(
                out,
                "rebuilt projection {}: checkpoint {}, lag {} events",
                s.name, s.checkpoint, s.lag_events
            )?;
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    if let Args::Rebuild { name } = &a {
        return rebuild(ctx, name);
    }
    let store = ctx.open_read()?;
    let mut out = output::stdout();
    let projections = match &a {
        Args::List | Args::Rebuild { .. } => store.stored_projections()?,
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
    if let Some(p) = projections.iter().find(|p| p.not_served.is_some()) {
        let why = p.not_served.as_deref().unwrap_or_default();
        return Ok(Outcome::Failed(format!(
            "the read model of projection {:?} is not served: {why}; the service that runs it rebuilds it when it opens the store",
            p.name
        )));
    }
    Ok(Outcome::Ok)
}
