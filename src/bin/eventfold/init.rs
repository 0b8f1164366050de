//! `eventfold init`: create a store.

use std::io::Write;

use crate::{Ctx, Outcome, output};

/// Arguments of `init` (none besides the global `--data`).
#[derive(clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<Outcome> {
    let existed = ctx.data.join("data.mdb").exists();
    let store = ctx.open_write()?;
    let head = store.head()?;
    let mut out = output::stdout();
    if ctx.json {
        let v = serde_json::json!({
            "data": ctx.data,
            "created": !existed,
            "store_id": store.store_id(),
            "head": head,
        });
        output::json_line(&mut out, &v)?;
    } else if existed {
        writeln!(out, "store {} already exists ({head} events); nothing to do", ctx.data.display())?;
    } else {
        writeln!(out, "created an empty store in {}", ctx.data.display())?;
        writeln!(out, "next: eventfold append account-1 Opened --payload '{{\"owner\":\"ann\"}}'")?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
