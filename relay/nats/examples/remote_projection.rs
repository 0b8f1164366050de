//! A read model rebuilt in another process, from JetStream alone.
//!
//! The relay copies an eventfold log into a JetStream stream; this program
//! never opens the LMDB file. It reads the stream with an ordered consumer,
//! keeps only the subjects it cares about (one category, say), and folds the
//! events into a read model: per stream, how many events, the last version
//! and event type, and per event type a count. Because the relay keeps each
//! stream's events in order on one subject, a gap or a repeat in a stream's
//! versions would show here; the program checks for both.
//!
//! ```text
//! cargo run -p eventfold-nats --example remote_projection -- \
//!     nats://127.0.0.1:4222 EVENTS 'events.order.*'
//! ```
//!
//! Arguments: server URL(s), stream name, subject filter (default
//! `events.>`), subject prefix (default `events`). It reads what the stream
//! holds when it starts, prints the model and exits; a long-running service
//! would keep consuming, and store the last stream sequence it applied next
//! to its read model to resume from there (`DeliverPolicy::ByStartSequence`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use eventfold_nats::RelayedEvent;
use futures_util::StreamExt;

#[derive(Debug, Default)]
struct StreamRow {
    events: u64,
    version: u64,
    last_type: String,
}

#[derive(Debug, Default)]
struct ReadModel {
    streams: BTreeMap<String, StreamRow>,
    by_type: BTreeMap<String, u64>,
    last_sequence: u64,
}

impl ReadModel {
    fn apply(&mut self, sequence: u64, event: &RelayedEvent) -> Result<(), String> {
        let row = self.streams.entry(event.stream_id.clone()).or_default();
        if event.version != row.version + 1 {
            return Err(format!(
                "stream {:?}: version {} after {} (a gap or a repeat)",
                event.stream_id, event.version, row.version
            ));
        }
        row.version = event.version;
        row.events += 1;
        row.last_type.clone_from(&event.event_type);
        *self.by_type.entry(event.event_type.clone()).or_default() += 1;
        self.last_sequence = sequence;
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let urls = args.next().unwrap_or_else(|| "nats://127.0.0.1:4222".to_string());
    let stream_name = args.next().unwrap_or_else(|| "EVENTS".to_string());
    let filter = args.next().unwrap_or_else(|| "events.>".to_string());
    let prefix = args.next().unwrap_or_else(|| "events".to_string());

    let addrs = urls.split(',').map(str::parse).collect::<Result<Vec<async_nats::ServerAddr>, _>>()?;
    let js = jetstream::new(async_nats::connect(addrs).await?);
    let mut stream = js.get_stream(&stream_name).await?;
    // Read up to what the stream holds now.
    let last = stream.info().await?.state.last_sequence;
    let consumer = stream
        .create_consumer(OrderedConfig { filter_subject: filter.clone(), ..Default::default() })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut model = ReadModel::default();
    let mut seen = 0u64;
    while model.last_sequence < last {
        // Nothing matching at all: stop after a quiet spell.
        let next = match tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
            Ok(Some(m)) => m?,
            Ok(None) | Err(_) => break,
        };
        let info = next.info()?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let event = RelayedEvent::from_jetstream(&prefix, &next.message)?;
        model.apply(sequence, &event)?;
        seen += 1;
        if pending == 0 {
            break; // every matching message stored so far is applied
        }
    }
    println!("{seen} events from {stream_name} ({filter}), up to stream sequence {}", model.last_sequence);
    println!("{} streams; by event type:", model.streams.len());
    for (event_type, n) in &model.by_type {
        println!("  {event_type:<24} {n}");
    }
    for (id, row) in model.streams.iter().take(10) {
        println!("  {id:<24} {} events, version {}, last {}", row.events, row.version, row.last_type);
    }
    Ok(())
}
