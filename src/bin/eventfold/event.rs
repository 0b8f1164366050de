//! `eventfold event`: one event, by id or position.

use std::io::Write;

use anyhow::anyhow;
use eventfold::ContentType;
use uuid::Uuid;

use crate::{Ctx, Outcome, output};

/// Arguments of `event`.
#[derive(clap::Args)]
pub struct Args {
    /// An event id (UUID) or a global position (a number).
    pub id: String,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_read()?;
    let reader = store.read()?;
    let found = if let Ok(position) = a.id.parse::<u64>() {
        reader.event(position)?
    } else {
        let id = Uuid::parse_str(&a.id)
            .map_err(|_| anyhow!("{:?} is neither an event id (a UUID) nor a position (a number)", a.id))?;
        reader.event_by_id(id)?
    };
    let Some(event) = found else {
        return Ok(Outcome::Failed(format!(
            "no event {} in {}: find ids and positions with `eventfold read`",
            a.id,
            ctx.data.display()
        )));
    };
    let e = event.to_owned()?;
    let mut out = output::stdout();
    if ctx.json {
        output::json_line(&mut out, &e)?;
    } else {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let mut rows = vec![
            ("position", e.position.to_string()),
            ("stream", e.stream_id.clone()),
            ("version", e.version.to_string()),
            ("type", e.event_type.clone()),
            ("event id", e.event_id.to_string()),
            ("recorded", output::time(e.recorded_at)),
            ("schema version", e.schema_version.to_string()),
            ("correlation id", opt(e.correlation_id.clone())),
            ("causation id", opt(e.causation_id.clone())),
            ("user id", opt(e.user_id.clone())),
            ("traceparent", opt(e.traceparent.clone())),
        ];
        if !e.tags.is_empty() {
            rows.push(("tags", e.tags.join(", ")));
        }
        if !e.metadata.is_empty() {
            rows.push(("metadata", serde_json::Value::Object(e.metadata.clone()).to_string()));
        }
        output::pairs(&mut out, &rows)?;
        // JSON as stored, laid out: numbers are shown as they were written.
        let data = match (e.content_type, std::str::from_utf8(&e.payload)) {
            (ContentType::Json, Ok(text)) => output::pretty_json(text),
            _ => serde_json::to_string_pretty(&e.payload_json()?)?,
        };
        writeln!(out, "data:\n{data}")?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
