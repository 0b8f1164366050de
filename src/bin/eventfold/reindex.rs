//! `eventfold reindex`: build the secondary indexes (by type, category and
//! tag) of the whole log anew.

use std::io::Write;

use crate::{Ctx, Outcome, output};

/// Arguments of `reindex`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_write()?;
    let head = store.head()?;
    let bar = output::progress(head, "indexing");
    let indexed = store.reindex(&mut |done, _total| bar.set_position(done))?;
    bar.finish_and_clear();
    let mut out = output::stdout();
    if ctx.json {
        output::json_line(&mut out, &serde_json::json!({ "indexed": indexed }))?;
    } else {
        writeln!(out, "indexed {indexed} events by type, category and tag")?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
