//! `eventfold delete` and `eventfold retention`: stop serving a stream, or
//! what of it falls outside limits (see `docs/forgetting.md`).

use std::io::Write;
use std::time::Duration;

use eventfold::{EventMetadata, StreamRetention};

use crate::{Ctx, Outcome, output};

/// Arguments of `delete`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    /// The stream to delete.
    pub stream: String,
    /// Why: recorded in the `$StreamDeleted` (or `$StreamTombstoned`) event.
    #[arg(long)]
    pub reason: String,
    /// Delete for good (a tombstone): the stream can never be read or written again.
    #[arg(long)]
    pub hard: bool,
    /// Who asked, recorded as the event's user id.
    #[arg(long)]
    pub user_id: Option<String>,
}

/// Arguments of `retention`.
#[derive(clap::Args)]
pub struct RetentionArgs {
    /// The stream to limit.
    pub stream: String,
    /// Why: recorded in the `$StreamRetentionSet` event.
    #[arg(long)]
    pub reason: String,
    /// Stop serving the versions below this one.
    #[arg(long, value_name = "VERSION")]
    pub truncate_before: Option<u64>,
    /// Serve only the newest N events (0 lifts the limit).
    #[arg(long, value_name = "N")]
    pub max_count: Option<u64>,
    /// Serve only events younger than this many seconds (0 lifts the limit).
    #[arg(long, value_name = "SECONDS")]
    pub max_age: Option<u64>,
    /// Who asked, recorded as the event's user id.
    #[arg(long)]
    pub user_id: Option<String>,
}

fn metadata(user: &Option<String>) -> EventMetadata {
    match user {
        Some(u) => EventMetadata::new().user_id(u),
        None => EventMetadata::new(),
    }
}

pub fn delete(ctx: &Ctx, a: DeleteArgs) -> anyhow::Result<Outcome> {
    let store = ctx.open_write()?;
    let meta = metadata(&a.user_id);
    let recorded = if a.hard {
        store.tombstone_stream(&a.stream, &a.reason, meta)?
    } else {
        store.delete_stream(&a.stream, &a.reason, meta)?
    };
    let mut out = output::stdout();
    if ctx.json {
        output::json_line(
            &mut out,
            &serde_json::json!({"stream": a.stream, "hard": a.hard, "recorded_at_position": recorded.first_position}),
        )?;
    } else {
        let how = if a.hard {
            "deleted for good"
        } else {
            "deleted (appending again brings it back, without its past)"
        };
        writeln!(out, "stream {} {how}; recorded at position {}", a.stream, recorded.first_position)?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

pub fn retention(ctx: &Ctx, a: RetentionArgs) -> anyhow::Result<Outcome> {
    let mut r = StreamRetention::new();
    if let Some(v) = a.truncate_before {
        r = r.truncate_before(v);
    }
    if let Some(n) = a.max_count {
        r = r.max_count(n);
    }
    if let Some(s) = a.max_age {
        r = r.max_age(Duration::from_secs(s));
    }
    let store = ctx.open_write()?;
    let recorded = store.set_stream_retention(&a.stream, r, &a.reason, metadata(&a.user_id))?;
    let now = store.stream_lifecycle(&a.stream)?;
    let mut out = output::stdout();
    if ctx.json {
        output::json_line(
            &mut out,
            &serde_json::json!({
                "stream": a.stream,
                "truncate_before": now.truncate_before,
                "max_count": now.max_count,
                "max_age_seconds": now.max_age.map(|d| d.as_secs()),
                "recorded_at_position": recorded.first_position,
            }),
        )?;
    } else {
        let opt = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
        writeln!(
            out,
            "stream {}: serving versions from {}, max count {}, max age {} s; recorded at position {}",
            a.stream,
            now.truncate_before,
            opt(now.max_count),
            opt(now.max_age.map(|d| d.as_secs())),
            recorded.first_position
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
