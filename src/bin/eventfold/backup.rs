//! `eventfold backup`: a consistent hot copy of the store.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::{Ctx, Outcome, output};

/// Arguments of `backup`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory to write the copy to (created; must not already hold a store).
    pub dir: PathBuf,
    /// Leave out free pages: a smaller copy, a little slower to make.
    #[arg(long)]
    pub compact: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    // Read-only: the backup runs beside a service that holds the write lock.
    let store = ctx.open_read()?;
    let head = store.head()?;
    store.backup_to(&a.dir, a.compact).with_context(|| format!("backing up to {}", a.dir.display()))?;
    let size = std::fs::metadata(a.dir.join("data.mdb")).map(|m| m.len()).unwrap_or(0);
    let mut out = output::stdout();
    if ctx.json {
        let v = serde_json::json!({"dir": a.dir, "head": head, "size": size, "compacted": a.compact});
        output::json_line(&mut out, &v)?;
    } else {
        writeln!(
            out,
            "backed up {} (at least {head} events) to {} ({}{})",
            ctx.data.display(),
            a.dir.display(),
            output::size(size),
            if a.compact { ", compacted" } else { "" }
        )?;
        writeln!(out, "check it with: eventfold --data {} verify", a.dir.display())?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
