//! `eventfold streams`: list streams.

use std::io::Write;

use crate::{Ctx, Outcome, output};

/// Arguments of `streams`.
#[derive(clap::Args)]
pub struct Args {
    /// Only streams whose id starts with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Show at most this many streams.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// Streams per read transaction.
const PAGE: usize = 1000;

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_read()?;
    let mut left = a.limit.unwrap_or(usize::MAX);
    let mut after: Option<String> = None;
    let mut out = output::stdout();
    let mut table = (!ctx.json).then(|| {
        output::Table::new(Vec::new(), &["STREAM", "VERSION", "LAST POSITION", "CREATED", "UPDATED"])
    });
    while left > 0 {
        // A fresh read transaction per page keeps a long listing from pinning pages.
        let page = store.read()?.streams(&a.prefix, after.as_deref(), PAGE.min(left))?;
        let Some(last) = page.last() else { break };
        after = Some(last.stream_id.clone());
        // A page holds at most `left` streams.
        left = left.saturating_sub(page.len());
        for s in &page {
            match &mut table {
                Some(t) => {
                    t.row(vec![
                        s.stream_id.clone(),
                        s.version.to_string(),
                        s.last_position.to_string(),
                        output::time(s.created_at),
                        output::time(s.updated_at),
                    ])?;
                }
                None => output::json_line(&mut out, s)?,
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    if let Some(t) = table {
        out.write_all(&t.finish()?)?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
