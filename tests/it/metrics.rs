//! Metrics: the Prometheus endpoint, scraped over loopback with a plain
//! HTTP GET, shows the counters move after appends, and the lag of named
//! consumers and projections.
//!
//! A process has one recorder, so every test of this binary records into
//! the same one: these assert that a shared counter moved by at least what
//! the test did, and exact values only under labels no other test uses.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;

use eventfold::metrics::{self, MetricsServer};
use eventfold::{
    ExpectedVersion, Filter, Projection, ProjectionContext, ProjectionRunner, RecordedEvent, SubscribeFrom,
};
use serde_json::json;

use crate::common::{ev, temp_store};

/// A plain HTTP/1.1 GET of `/metrics`; the body.
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// The value of the sample `name` with exactly `labels` (as rendered, e.g.
/// `reason="invalid"`; empty for none), 0 when it is absent.
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let key = if labels.is_empty() { name.to_string() } else { format!("{name}{{{labels}}}") };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&key).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap_or_else(|e| panic!("{key}: {v:?}: {e}")))
}

fn endpoint() -> MetricsServer {
    metrics::serve_prometheus("127.0.0.1:0").expect("serve metrics")
}

#[test]
fn appends_move_the_writer_counters() {
    let server = endpoint();
    let (_dir, store) = temp_store();
    let before = scrape(server.local_addr());
    for i in 0..5 {
        store.append("metrics-1", ExpectedVersion::Exact(i), [ev("E", i)]).unwrap();
    }
    store.append_many([("metrics-2", ExpectedVersion::NoStream, vec![ev("E", 0), ev("E", 1)])]).unwrap();
    assert!(store.append("metrics-1", ExpectedVersion::NoStream, [ev("E", 9)]).is_err());
    assert!(store.append("", ExpectedVersion::Any, [ev("E", 9)]).is_err());
    let after = scrape(server.local_addr());

    let moved = |name: &str, labels: &str| sample(&after, name, labels) - sample(&before, name, labels);
    assert!(moved(metrics::APPENDS_TOTAL, "") >= 6.0, "{after}");
    assert!(moved(metrics::EVENTS_APPENDED_TOTAL, "") >= 7.0, "{after}");
    assert!(moved(metrics::APPENDED_BYTES_TOTAL, "") > 0.0, "{after}");
    assert!(moved(metrics::COMMITS_TOTAL, "") >= 6.0, "{after}");
    assert!(moved(metrics::APPENDS_REJECTED_TOTAL, r#"reason="wrong_expected_version""#) >= 1.0, "{after}");
    assert!(moved(metrics::APPENDS_REJECTED_TOTAL, r#"reason="invalid""#) >= 1.0, "{after}");
    // Histograms, each append and batch counted once.
    let count = |name: &str| format!("{name}_count");
    assert!(moved(&count(metrics::APPEND_LATENCY_SECONDS), "") >= 7.0, "{after}");
    assert!(moved(&count(metrics::APPEND_QUEUE_SECONDS), "") >= 7.0, "{after}");
    assert!(moved(&count(metrics::COMMIT_DURATION_SECONDS), "") >= 6.0, "{after}");
    assert!(moved(&count(metrics::BATCH_REQUESTS), "") >= 7.0, "{after}");
    assert!(moved(&format!("{}_sum", metrics::BATCH_EVENTS), "") >= 7.0, "{after}");
    assert!(after.contains(&format!("{}_bucket{{le=\"0.01\"}}", metrics::APPEND_LATENCY_SECONDS)), "{after}");
    assert!(after.contains(&format!("\n{} ", metrics::QUEUE_DEPTH)), "{after}");
    assert!(after.contains(&format!("# HELP {}", metrics::APPENDS_TOTAL)), "{after}");
}

struct Counted;

impl Projection for Counted {
    const NAME: &'static str = "metrics_test_counted";
    const VERSION: u32 = 1;
    fn apply(&self, ctx: &mut ProjectionContext<'_>, _: &RecordedEvent) -> eventfold::Result<()> {
        ctx.update("n", |n: &mut u64| *n += 1)
    }
}

#[test]
fn consumers_projections_and_subscriptions_report_their_lag() {
    let server = endpoint();
    let (_dir, store) = temp_store();
    let before = scrape(server.local_addr());
    store.append("lag-1", ExpectedVersion::NoStream, [ev("E", 1), ev("E", 2), ev("E", 3)]).unwrap();

    let consumer_lag =
        |text: &str| sample(text, metrics::CONSUMER_LAG_EVENTS, r#"consumer="metrics-test-mailer""#);
    let mut consumer = store.consumer("metrics-test-mailer").unwrap();
    assert_eq!(consumer_lag(&scrape(server.local_addr())), 3.0);
    consumer.ack(2).unwrap();
    consumer.commit().unwrap();
    assert_eq!(consumer_lag(&scrape(server.local_addr())), 1.0);

    let projection = r#"projection="metrics_test_counted""#;
    let runner = ProjectionRunner::new(&store).unwrap().register(Counted).unwrap();
    runner.run_until_caught_up().unwrap();
    let text = scrape(server.local_addr());
    assert_eq!(sample(&text, metrics::PROJECTION_LAG_EVENTS, projection), 0.0, "{text}");
    assert_eq!(sample(&text, metrics::PROJECTION_EVENTS_TOTAL, projection), 3.0, "{text}");
    assert!(sample(&text, &format!("{}_count", metrics::PROJECTION_BATCH_SECONDS), projection) >= 1.0);
    store.append("lag-1", ExpectedVersion::Exact(3), [ev("E", 4)]).unwrap();
    runner.run_until_caught_up().unwrap();
    let text = scrape(server.local_addr());
    assert_eq!(sample(&text, metrics::PROJECTION_EVENTS_TOTAL, projection), 4.0, "{text}");

    let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap().with_batch_size(1);
    assert_eq!(sub.try_next().unwrap().map(|e| e.position), Some(1));
    let after = scrape(server.local_addr());
    let lag_count = format!("{}_count", metrics::SUBSCRIPTION_LAG_EVENTS);
    assert!(sample(&after, &lag_count, "") - sample(&before, &lag_count, "") >= 1.0, "{after}");
    // Its first read (of position 1) left positions 2..=4 unread.
    let lag_sum = format!("{}_sum", metrics::SUBSCRIPTION_LAG_EVENTS);
    assert!(sample(&after, &lag_sum, "") - sample(&before, &lag_sum, "") >= 3.0, "{after}");
}

/// `eventfold serve --metrics 127.0.0.1:0` says where it serves them, and
/// the node's appends show in its own process's counters, exactly.
#[test]
fn serve_with_metrics_shows_the_nodes_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::cli::bin()
        .arg("--data")
        .arg(dir.path())
        .args(["serve", "--stdio", "--metrics", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("eventfold: metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{line:?}"));
    let addr: SocketAddr = addr.parse().unwrap();
    std::thread::spawn(move || for _ in stderr.lines() {});
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |body: serde_json::Value| {
        let line = json!({"src": "client", "dest": "eventstore", "body": body}).to_string();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        stdout.read_line(&mut reply).unwrap();
        serde_json::from_str::<serde_json::Value>(&reply).unwrap()["body"]["type"]
            .as_str()
            .unwrap()
            .to_string()
    };

    assert_eq!(sample(&scrape(addr), metrics::APPENDS_TOTAL, ""), 0.0);
    for i in 0..3 {
        let r = send(
            json!({"type": "append", "msg_id": i, "aggregate_id": "user-1", "event_type": "E", "event_data": {}, "version": "any"}),
        );
        assert_eq!(r, "appended");
    }
    let r = send(
        json!({"type": "append", "msg_id": 9, "aggregate_id": "user-1", "event_type": "E", "event_data": {}, "version": 0}),
    );
    assert_eq!(r, "concurrency_error");
    let text = scrape(addr);
    assert_eq!(sample(&text, metrics::APPENDS_TOTAL, ""), 3.0, "{text}");
    assert_eq!(sample(&text, metrics::EVENTS_APPENDED_TOTAL, ""), 3.0, "{text}");
    assert_eq!(sample(&text, metrics::APPENDS_REJECTED_TOTAL, r#"reason="wrong_expected_version""#), 1.0);
    assert_eq!(sample(&text, &format!("{}_count", metrics::APPEND_LATENCY_SECONDS), ""), 4.0, "{text}");

    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// What a subscriber of `tracing` saw: each span's name and fields.
#[derive(Default)]
struct SeenSpans(std::sync::Mutex<Vec<(&'static str, BTreeMap<String, String>)>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for SeenSpans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let mut seen = self.0.lock().unwrap();
        seen.push((span.metadata().name(), fields));
        tracing::span::Id::from_u64(seen.len() as u64)
    }

    fn record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut seen = self.0.lock().unwrap();
        let index = usize::try_from(id.into_u64() - 1).unwrap();
        values.record(&mut Fields(&mut seen[index].1));
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

struct Traced;

impl Projection for Traced {
    const NAME: &'static str = "metrics_test_traced";
    const VERSION: u32 = 1;
    fn apply(&self, _: &mut ProjectionContext<'_>, _: &RecordedEvent) -> eventfold::Result<()> {
        Ok(())
    }
}

/// The spans of an append, a consumer's handling and a projection batch
/// carry the stream and positions.
#[test]
fn spans_name_the_stream_and_positions() {
    let (_dir, store) = temp_store();
    let seen = std::sync::Arc::new(SeenSpans::default());
    tracing::subscriber::with_default(seen.clone(), || {
        store.append("traced-1", ExpectedVersion::NoStream, [ev("E", 1), ev("E", 2)]).unwrap();
        let mut consumer = store.consumer("metrics-test-traced").unwrap();
        let event = store.read_all_batched(eventfold::ReadAll::new(), 10).unwrap().next().unwrap().unwrap();
        consumer.handle(&event, |_| Ok(())).unwrap();
        ProjectionRunner::new(&store).unwrap().register(Traced).unwrap().run_until_caught_up().unwrap();
    });
    let seen = seen.0.lock().unwrap();
    let find = |name: &str| {
        seen.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no {name} span"))
    };
    let append = find("append");
    assert_eq!(append["stream"], "traced-1");
    assert_eq!((append["first_position"].as_str(), append["last_position"].as_str()), ("1", "2"));
    let handle = find("handle");
    assert_eq!(handle["consumer"], "metrics-test-traced");
    assert_eq!((handle["stream"].as_str(), handle["position"].as_str()), ("traced-1", "1"));
    assert_eq!(handle["skipped"], "false");
    let batch = find("projection_batch");
    assert_eq!(batch["projection"], "metrics_test_traced");
    assert_eq!((batch["from"].as_str(), batch["to"].as_str(), batch["events"].as_str()), ("1", "2", "2"));
}
