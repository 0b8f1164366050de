//! `eventfold snapshot create|show|list`: snapshots of the JSON-merge state.

use std::io::Write;

use clap::Subcommand;
use eventfold::{ContentType, JSON_STATE_SNAPSHOT_SCHEMA};
use serde::Serialize;

use crate::{Ctx, Outcome, output};

/// `eventfold snapshot …`
#[derive(Subcommand)]
pub enum Args {
    /// Save the stream's JSON-merge state as a snapshot at its current version.
    Create {
        /// The stream.
        stream: String,
    },
    /// Show the stream's latest JSON-merge snapshot.
    Show {
        /// The stream.
        stream: String,
    },
    /// List snapshots: every stream's, JSON-merge and aggregate ones alike.
    List {
        /// Only streams whose id starts with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

#[derive(Serialize)]
struct Listed {
    stream_id: String,
    version: u64,
    kind: String,
    state_schema_version: u32,
    size: usize,
    recorded_at: u64,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    let mut out = output::stdout();
    match a {
        Args::Create { stream } => {
            let store = ctx.open_write()?;
            let s = store.snapshot_json_state(&stream)?;
            if ctx.json {
                output::json_line(&mut out, &serde_json::json!({"stream_id": stream, "version": s.version}))?;
            } else {
                writeln!(out, "saved a snapshot of {stream} at version {}", s.version)?;
            }
        }
        Args::Show { stream } => {
            let store = ctx.open_read()?;
            let Some(s) = store.latest_json_snapshot(&stream)? else {
                return Ok(Outcome::Failed(format!(
                    "stream {stream:?} has no JSON-merge snapshot: make one with `eventfold snapshot create {stream}`"
                )));
            };
            if ctx.json {
                output::json_line(&mut out, &s)?;
            } else {
                writeln!(out, "snapshot of {stream} at version {} (position {})", s.version, s.position)?;
                writeln!(out, "{}", output::pretty_json(&s.state.to_string()))?;
            }
        }
        Args::List { prefix } => {
            let store = ctx.open_read()?;
            let reader = store.read()?;
            let mut table = output::Table::new(Vec::new(), &["STREAM", "VERSION", "KIND", "SIZE", "SAVED"]);
            let mut after: Option<String> = None;
            loop {
                let page = reader.streams(&prefix, after.as_deref(), 1000)?;
                let Some(last) = page.last() else { break };
                after = Some(last.stream_id.clone());
                for info in &page {
                    for version in reader.snapshot_versions(&info.stream_id)? {
                        let Ok(Some(s)) = reader.snapshot(&info.stream_id, version) else { continue };
                        let kind = if s.state_schema_version == JSON_STATE_SNAPSHOT_SCHEMA
                            && s.content_type == ContentType::Json
                        {
                            "json-state".to_string()
                        } else {
                            format!("aggregate (schema {})", s.state_schema_version)
                        };
                        let l = Listed {
                            stream_id: info.stream_id.clone(),
                            version,
                            kind,
                            state_schema_version: s.state_schema_version,
                            size: s.state.len(),
                            recorded_at: s.recorded_at,
                        };
                        if ctx.json {
                            output::json_line(&mut out, &l)?;
                        } else {
                            table.row(vec![
                                l.stream_id,
                                l.version.to_string(),
                                l.kind,
                                output::size(l.size as u64),
                                output::time(l.recorded_at),
                            ])?;
                        }
                    }
                }
                if page.len() < 1000 {
                    break;
                }
            }
            if !ctx.json {
                out.write_all(&table.finish()?)?;
            }
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
