//! The HTTP bank service (examples/bank_service) driven over loopback:
//! concurrent commands, state and history reads, and server-sent-event
//! clients that must see every event of the log exactly once, in order.
//! The service's router runs in this process; the client is a small
//! HTTP/1.1 client over a `TcpStream`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use eventfold::{ReadAll, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[allow(dead_code)]
#[path = "../../examples/bank_service/service.rs"]
mod service;

/// Long enough never to fire on a working service; only a hang trips it.
const PATIENCE: Duration = Duration::from_secs(60);

const ACCOUNTS: usize = 4;
const CLIENTS: usize = 8;
const COMMANDS_PER_CLIENT: usize = 25;

/// Sends one request on a new connection and reads the whole answer:
/// the status and the body parsed as JSON.
async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(conn);
    let (status, headers) = read_head(&mut reader).await;
    let body = if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        while let Some(chunk) = read_chunk(&mut reader).await {
            body.extend(chunk);
        }
        body
    } else {
        let mut body = Vec::new();
        reader.read_to_end(&mut body).await.unwrap();
        body
    };
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: status {status}, body not JSON ({e}): {body:?}"));
    (status, value)
}

/// The status line and headers (names lower-cased) of a response.
async fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, HashMap<String, String>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    (status, headers)
}

/// One chunk of a chunked body; `None` at the last (empty) chunk.
async fn read_chunk(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).expect("a chunk size");
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).await.unwrap();
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

/// One server-sent event: its id, event name and data.
#[derive(Debug, Clone)]
struct SseEvent {
    id: u64,
    event: String,
    data: Value,
}

/// A server-sent-event client on `GET path`, with an optional Last-Event-ID.
struct SseClient {
    reader: BufReader<TcpStream>,
    /// Body bytes received and not yet parsed into events.
    pending: Vec<u8>,
}

impl SseClient {
    /// Connects and reads the response head: once this returns, the
    /// service has made its subscription.
    async fn connect(addr: SocketAddr, path: &str, last_event_id: Option<u64>) -> SseClient {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let resume = last_event_id.map(|id| format!("last-event-id: {id}\r\n")).unwrap_or_default();
        let head =
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n{resume}\r\n");
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(conn);
        let (status, headers) = read_head(&mut reader).await;
        assert_eq!(status, 200);
        assert!(
            headers.get("content-type").is_some_and(|v| v.starts_with("text/event-stream")),
            "{headers:?}"
        );
        assert!(headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")), "{headers:?}");
        SseClient { reader, pending: Vec::new() }
    }

    /// The next event (keep-alive comments skipped).
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<u64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                assert_ne!(event, "error", "the stream reported an error: {data}");
                let id = id.expect("every event has an id");
                return SseEvent { id, event, data: serde_json::from_str(&data).unwrap() };
            }
            let chunk = read_chunk(&mut self.reader).await.expect("the event stream ended");
            self.pending.extend(chunk);
        }
    }

    /// The next `n` events, failing the test if they do not come.
    async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        tokio::time::timeout(PATIENCE, async {
            let mut events = Vec::with_capacity(n);
            while events.len() < n {
                events.push(self.next().await);
            }
            events
        })
        .await
        .expect("hung: the events did not all come")
    }
}

/// (position, event id, event type) of each event of the whole log.
fn log_of(store: &Store) -> Vec<(u64, String, String)> {
    store
        .read()
        .unwrap()
        .all(ReadAll::new())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.position(), e.event_id().to_string(), e.event_type().to_string())
        })
        .collect()
}

fn seen(events: &[SseEvent]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .map(|e| {
            assert_eq!(e.data["position"].as_u64(), Some(e.id));
            assert_eq!(e.data["event_type"].as_str(), Some(e.event.as_str()));
            (e.id, e.data["event_id"].as_str().unwrap().to_string(), e.event.clone())
        })
        .collect()
}

#[test]
fn the_bank_service_serves_commands_reads_and_every_event_once_over_sse() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, service::router(store.clone())).into_future());

        // Connected before anything is written: it sees the log as it grows.
        let mut live = SseClient::connect(addr, "/events", None).await;

        for a in 0..ACCOUNTS {
            let (status, body) = request(
                addr,
                "POST",
                &format!("/accounts/acc-{a}/open"),
                Some(json!({"owner": format!("owner {a}")})),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            assert_eq!((body["balance"].as_u64(), body["version"].as_u64()), (Some(0), Some(1)));
        }
        let (status, body) =
            request(addr, "POST", "/accounts/acc-0/open", Some(json!({"owner": "again"}))).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("already_open")), "{body}");

        // Concurrent clients: deposits and withdrawals spread over the
        // accounts, several clients on each. A withdrawal beyond the
        // balance is refused with a 422 and a JSON error; each client
        // tallies the net amount it moved per account.
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(async move {
                    let mut net = [0i64; ACCOUNTS];
                    let (mut accepted, mut refused) = (0u64, 0u64);
                    for i in 0..COMMANDS_PER_CLIENT {
                        let a = (c + i) % ACCOUNTS;
                        let amount = 100 + (c * 7 + i * 13) as u64 % 400;
                        let (kind, sign) = if i % 3 == 2 { ("withdraw", -1) } else { ("deposit", 1) };
                        let path = format!("/accounts/acc-{a}/{kind}");
                        let (status, body) =
                            request(addr, "POST", &path, Some(json!({"amount": amount}))).await;
                        match status {
                            200 => {
                                accepted += 1;
                                net[a] += sign * amount as i64;
                            }
                            422 => {
                                assert_eq!(body["code"].as_str(), Some("insufficient_funds"), "{body}");
                                refused += 1;
                            }
                            other => panic!("{path}: status {other}: {body}"),
                        }
                    }
                    (net, accepted, refused)
                })
            })
            .collect();
        let mut net = [0i64; ACCOUNTS];
        let mut accepted = 0;
        for client in clients {
            let (n, a, _refused) = client.await.unwrap();
            accepted += a;
            for (total, n) in net.iter_mut().zip(n) {
                *total += n;
            }
        }

        // An overdraft is a 4xx with a JSON error, never a 500, and writes nothing.
        let head_before = store.head().unwrap();
        let (status, body) =
            request(addr, "POST", "/accounts/acc-1/withdraw", Some(json!({"amount": 1u64 << 40}))).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"].as_str(), Some("insufficient_funds"));
        assert!(body["error"].as_str().is_some_and(|e| e.contains("insufficient funds")), "{body}");
        let (status, body) =
            request(addr, "POST", "/accounts/nobody/deposit", Some(json!({"amount": 5}))).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_open")), "{body}");
        assert_eq!(store.head().unwrap(), head_before);

        // State and history, per account.
        let mut versions = 0;
        for (a, net) in net.iter().enumerate() {
            let (status, state) = request(addr, "GET", &format!("/accounts/acc-{a}"), None).await;
            assert_eq!(status, 200, "{state}");
            assert_eq!(state["balance"].as_i64(), Some(*net), "acc-{a}: {state}");
            assert_eq!(state["owner"].as_str(), Some(format!("owner {a}").as_str()));
            let (status, history) = request(addr, "GET", &format!("/accounts/acc-{a}/events"), None).await;
            assert_eq!(status, 200);
            let history = history.as_array().unwrap().clone();
            assert_eq!(history.len() as u64, state["version"].as_u64().unwrap());
            assert_eq!(history[0]["event_type"].as_str(), Some("AccountOpened"));
            let versions_seen: Vec<u64> = history.iter().map(|e| e["version"].as_u64().unwrap()).collect();
            assert_eq!(versions_seen, (1..=history.len() as u64).collect::<Vec<_>>());
            versions += history.len() as u64;
        }
        let (status, _) = request(addr, "GET", "/accounts/nobody", None).await;
        assert_eq!(status, 404);

        // Every event of the log, once each, in position order.
        let total = store.head().unwrap();
        assert_eq!(total, ACCOUNTS as u64 + accepted);
        assert_eq!(versions, total);
        let log = log_of(&store);
        let events = live.take(total as usize).await;
        assert_eq!(seen(&events), log);

        // A client that resumes: after the id it last saw, or from a position.
        let mut resumed = SseClient::connect(addr, "/events", Some(10)).await;
        assert_eq!(seen(&resumed.take(log.len() - 10).await), log[10..].to_vec());
        let mut from = SseClient::connect(addr, "/events?from=5", None).await;
        assert_eq!(seen(&from.take(log.len() - 4).await), log[4..].to_vec());

        // Live again: one more command reaches every connected client.
        let (status, _) = request(addr, "POST", "/accounts/acc-2/deposit", Some(json!({"amount": 1}))).await;
        assert_eq!(status, 200);
        for client in [&mut live, &mut resumed, &mut from] {
            let e = client.take(1).await.remove(0);
            assert_eq!((e.id, e.event.as_str()), (total + 1, "MoneyDeposited"));
        }
        server.abort();
    });
    store.close().unwrap();
}
