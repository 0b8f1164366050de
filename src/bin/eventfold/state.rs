//! `eventfold state`: the JSON-merge state of a stream, now or in the past.

use std::io::Write;

use crate::{Ctx, Outcome, output};

/// Arguments of `state`.
#[derive(clap::Args)]
pub struct Args {
    /// The stream.
    pub stream: String,
    /// Fold events up to this version.
    #[arg(long, value_name = "V")]
    pub as_of_version: Option<u64>,
    /// Fold events recorded up to this time (RFC 3339 UTC, or microseconds).
    #[arg(long, value_name = "RFC3339")]
    pub as_of_time: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    let time = a.as_of_time.as_deref().map(output::parse_time).transpose()?;
    let store = ctx.open_read()?;
    let s = store.json_state_as_of(&a.stream, a.as_of_version, time)?;
    let mut out = output::stdout();
    if ctx.json {
        output::json_line(&mut out, &s)?;
    } else {
        writeln!(
            out,
            "{} at version {} (position {}): {} events merged, {} skipped (not JSON objects)",
            a.stream, s.version, s.position, s.events, s.skipped
        )?;
        writeln!(out, "{}", output::pretty_json(&s.state.to_string()))?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
