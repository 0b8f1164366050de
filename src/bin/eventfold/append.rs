//! `eventfold append`: append one event.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use eventfold::{Error, EventMetadata, ExpectedVersion, NewEvent};
use uuid::Uuid;

use crate::{Ctx, Outcome, output};

/// Arguments of `append`.
#[derive(clap::Args)]
pub struct Args {
    /// The stream (aggregate id), e.g. `account-42`.
    pub stream: String,
    /// The event type, e.g. `Deposited`.
    pub event_type: String,
    /// The payload as JSON text. Without it (and without --payload-file) the
    /// payload is read from stdin.
    #[arg(long, conflicts_with = "payload_file")]
    pub payload: Option<String>,
    /// Read the JSON payload from this file.
    #[arg(long, value_name = "FILE")]
    pub payload_file: Option<PathBuf>,
    /// The version the stream must be at: a number, `any`, `no-stream` or `stream-exists`.
    #[arg(long, default_value = "any", value_parser = parse_expected, value_name = "N|any|no-stream|stream-exists")]
    pub expected_version: ExpectedVersion,
    /// The event id (default: a new UUID v7). Resending with the same id is idempotent.
    #[arg(long, value_name = "UUID")]
    pub event_id: Option<Uuid>,
    /// Correlation id (groups the events of one business transaction): any
    /// id, such as a request id `req-7f3a`, a trace id or a UUID.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Causation id (the event, command or request that caused this one): any id.
    #[arg(long, value_name = "ID")]
    pub causation_id: Option<String>,
    /// The user on whose behalf the event is recorded.
    #[arg(long)]
    pub user_id: Option<String>,
    /// The W3C trace-context header of the operation, `00-<trace id>-<parent id>-<flags>`.
    #[arg(long, value_name = "TRACEPARENT")]
    pub traceparent: Option<String>,
    /// Metadata as a JSON object: `correlation_id`, `causation_id`, `user_id`
    /// and `traceparent` set those fields (like their options), any other
    /// key is an extra field.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// The payload's schema version.
    #[arg(long, default_value_t = 1)]
    pub schema_version: u32,
    /// A tag (the entity the event concerns, e.g. `student:42`), indexed
    /// for `read --all --tag` and DCB queries (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

/// The event's metadata from the options and `--metadata`: a field given
/// both ways must agree.
fn metadata(a: &Args) -> anyhow::Result<EventMetadata> {
    let mut extra = match &a.metadata {
        None => serde_json::Map::new(),
        Some(m) => {
            let value: serde_json::Value = serde_json::from_str(m).map_err(|e| {
                anyhow!("--metadata is not JSON ({e}): pass an object such as '{{\"ip\":\"10.0.0.1\"}}'")
            })?;
            let serde_json::Value::Object(extra) = value else {
                bail!("--metadata must be a JSON object, such as '{{\"ip\":\"10.0.0.1\"}}'");
            };
            extra
        }
    };
    let mut field = |key: &str, option: &Option<String>| -> anyhow::Result<Option<String>> {
        let given = match extra.remove(key) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => bail!("--metadata field {key:?} must be a string, not {other}"),
        };
        match (option, given) {
            (Some(o), Some(g)) if *o != g => bail!(
                "--{} {o:?} and the --metadata field {key:?} {g:?} disagree: give it once",
                key.replace('_', "-")
            ),
            (Some(o), _) => Ok(Some(o.clone())),
            (None, g) => Ok(g),
        }
    };
    let mut metadata = EventMetadata::new();
    metadata.correlation_id = field("correlation_id", &a.correlation_id)?;
    metadata.causation_id = field("causation_id", &a.causation_id)?;
    metadata.user_id = field("user_id", &a.user_id)?;
    metadata.traceparent = field("traceparent", &a.traceparent)?;
    metadata.extra = extra;
    Ok(metadata)
}

fn parse_expected(s: &str) -> Result<ExpectedVersion, String> {
    match s {
        "any" => Ok(ExpectedVersion::Any),
        "no-stream" | "no_stream" => Ok(ExpectedVersion::NoStream),
        "stream-exists" | "stream_exists" => Ok(ExpectedVersion::StreamExists),
        n => n
            .parse()
            .map(ExpectedVersion::Exact)
            .map_err(|_| format!("{n:?} is not a version: use a number, any, no-stream or stream-exists")),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    let payload = match (&a.payload, &a.payload_file) {
        (Some(p), _) => p.clone().into_bytes(),
        (None, Some(f)) => {
            std::fs::read(f).with_context(|| format!("reading the payload file {}", f.display()))?
        }
        (None, None) => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("no payload: pass --payload JSON or --payload-file FILE, or pipe the JSON on stdin");
            }
            let mut buf = Vec::new();
            stdin.read_to_end(&mut buf).context("reading the payload from stdin")?;
            buf
        }
    };
    let metadata = metadata(&a)?;
    let mut event = NewEvent::json_bytes(a.event_type.clone(), payload)
        .with_schema_version(a.schema_version)
        .with_metadata(metadata)
        .with_tags(a.tags.iter().cloned());
    if let Some(id) = a.event_id {
        event = event.with_id(id);
    }
    let store = ctx.open_write()?;
    let result = match store.append(&a.stream, a.expected_version, [event]) {
        Ok(r) => r,
        Err(Error::WrongExpectedVersion { actual, expected, .. }) => bail!(
            "Expected version {expected}, got {actual}: stream {} is at version {actual}; read it again and retry with --expected-version {actual}",
            a.stream
        ),
        Err(e) => return Err(e.into()),
    };
    let mut out = output::stdout();
    if ctx.json {
        output::json_line(&mut out, &result)?;
    } else {
        let id = result.event_ids.first().map(Uuid::to_string).unwrap_or_default();
        let what =
            if result.already_stored { "already stored (a retry; nothing written)" } else { "appended" };
        writeln!(
            out,
            "{what}: {} {} version {} at position {}, event id {id}",
            a.stream, a.event_type, result.stream_version, result.first_position
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
