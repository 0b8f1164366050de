//! `eventfold-relay-nats`: relay an eventfold store's log to a NATS JetStream
//! stream, exactly once. See `docs/scale-out.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use eventfold::{Filter, Store};
use eventfold_nats::{Relay, RelayConfig, RelayError, RelayStats};

/// Relay an eventfold store's log to a NATS JetStream stream, exactly once.
///
/// The relay is a durable consumer of the store: it resumes after its
/// checkpoint, and `Store::consumers()` (or `eventfold consumers`) shows its
/// lag. Progress goes to stderr.
#[derive(Debug, Parser)]
#[command(name = "eventfold-relay-nats", version)]
struct Args {
    /// The store's directory.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// NATS server URLs, comma-separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// The JetStream stream to publish to (created when missing).
    #[arg(long, value_name = "NAME")]
    stream: String,
    /// Replicas of the stream (1, 3 or 5 in a cluster).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Subjects are `<PREFIX>.<category>.<stream id>`.
    #[arg(long, default_value = "events")]
    subject_prefix: String,
    /// The durable consumer's name in the store.
    #[arg(long, default_value = "nats-relay")]
    consumer: String,
    /// Relay only these categories (repeatable).
    #[arg(long = "category", value_name = "CATEGORY")]
    categories: Vec<String>,
    /// Relay only these event types (repeatable).
    #[arg(long = "event-type", value_name = "TYPE")]
    event_types: Vec<String>,
    /// Relay only streams whose id starts with this.
    #[arg(long)]
    stream_prefix: Option<String>,
    /// Duplicate window of the stream when it is created, in seconds.
    #[arg(long, default_value_t = 120)]
    duplicate_window: u64,
    /// Save the checkpoint at least this often, in seconds.
    #[arg(long, default_value_t = 5)]
    checkpoint_interval: u64,
    /// Publishes awaiting acknowledgement at most.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Seconds to wait for a publish acknowledgement.
    #[arg(long, default_value_t = 10)]
    ack_timeout: u64,
    /// Seconds between progress lines (0: none).
    #[arg(long, default_value_t = 2)]
    progress: u64,
    /// Exit once everything committed so far is relayed.
    #[arg(long)]
    exit_when_caught_up: bool,
}

fn run(args: Args) -> Result<RelayStats, RelayError> {
    let mut filter = Filter::new().event_types(args.event_types);
    for c in args.categories {
        filter = filter.category(c);
    }
    if let Some(p) = args.stream_prefix {
        filter = filter.stream_prefix(p);
    }
    let mut config = RelayConfig::new(args.url, args.stream);
    config.replicas = args.replicas;
    config.subject_prefix = args.subject_prefix;
    config.consumer = args.consumer;
    config.filter = filter;
    config.duplicate_window = Duration::from_secs(args.duplicate_window);
    config.checkpoint_interval = Duration::from_secs(args.checkpoint_interval);
    config.max_in_flight = args.max_in_flight;
    config.ack_timeout = Duration::from_secs(args.ack_timeout);
    config.exit_when_caught_up = args.exit_when_caught_up;
    config.validate(config.duplicate_window)?;
    if !args.data.is_dir() {
        return Err(RelayError::Config(format!(
            "no store at {}: pass the directory the application opens with Store::open",
            args.data.display()
        )));
    }
    let store = Store::open(&args.data)?;
    let mut relay = Relay::new(store, config)?;
    if args.progress > 0 {
        let started = Instant::now();
        let mut last = (Instant::now(), 0u64);
        relay = relay.on_progress(Duration::from_secs(args.progress), move |s| {
            let secs = last.0.elapsed().as_secs_f64().max(1e-3);
            let rate = (s.published.saturating_sub(last.1)) as f64 / secs;
            last = (Instant::now(), s.published);
            let error = s.last_error.as_deref().map(|e| format!(" retrying after: {e}")).unwrap_or_default();
            eprintln!(
                "[{:>6.1}s] published {} (duplicates {}) checkpoint {} head {} lag {} {:.0} ev/s reconnects {}{error}",
                started.elapsed().as_secs_f64(),
                s.published,
                s.duplicates,
                s.checkpoint,
                s.head,
                s.lag(),
                rate,
                s.reconnects,
            );
        });
    }
    relay.run_blocking()
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(stats) => {
            println!(
                "relayed {} events ({} duplicates dropped by JetStream); checkpoint {}",
                stats.published, stats.duplicates, stats.checkpoint
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eventfold-relay-nats: {e}");
            ExitCode::FAILURE
        }
    }
}
