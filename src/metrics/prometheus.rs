//! Prometheus' text format over HTTP (feature `prometheus`), without an
//! async runtime: the recorder of `metrics-exporter-prometheus`, and one
//! thread that answers `GET /metrics` with its rendering.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::vocab::{Error, Result};

/// Bucket bounds of the `_seconds` histograms: 50 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Bucket bounds of the batch sizes, in requests or events.
const COUNT_BUCKETS: &[f64] =
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0, 65536.0];
/// Bucket bounds of the subscriptions' lag, in positions.
const LAG_BUCKETS: &[f64] = &[0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
/// How often the recorder's histograms are drained when nobody scrapes,
/// so their samples do not pile up.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How long a scrape may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// The recorder's handle, once installed: a process has one recorder.
static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

fn metrics_error(reason: impl Into<String>) -> Error {
    Error::Metrics { reason: reason.into() }
}

/// The installed recorder's handle, installing it on first use.
fn handle() -> Result<PrometheusHandle> {
    let mut kept = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(handle) = kept.as_ref() {
        return Ok(handle.clone());
    }
    let bad = |e: metrics_exporter_prometheus::BuildError| metrics_error(e.to_string());
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(super::BATCH_REQUESTS.into()), COUNT_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(super::BATCH_EVENTS.into()), COUNT_BUCKETS))
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(super::SUBSCRIPTION_LAG_EVENTS.into()), LAG_BUCKETS)
        })
        .map_err(bad)?;
    let handle = builder.install_recorder().map_err(|e| {
        metrics_error(format!("{e}: the process has a metrics recorder already; render it yourself"))
    })?;
    super::describe();
    handle.run_upkeep();
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("eventfold-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| metrics_error(format!("cannot start the upkeep thread: {e}")))?;
    *kept = Some(handle.clone());
    Ok(handle)
}

/// Installs a Prometheus recorder as the process's `metrics` recorder
/// (once: later calls, and [`serve_prometheus`], use the same one).
///
/// Fails with [`Error::Metrics`] when the process has another recorder.
/// Install it before anything records: counts made before it are lost.
pub fn install_prometheus_recorder() -> Result<()> {
    handle().map(drop)
}

/// Every metric recorded so far, in Prometheus' text format (installs the
/// recorder on first use, as [`install_prometheus_recorder`] does). For
/// an application that serves its own HTTP endpoint.
pub fn render_prometheus() -> Result<String> {
    let handle = handle()?;
    handle.run_upkeep();
    Ok(handle.render())
}

/// Serves the metrics in Prometheus' text format at `http://ADDR/metrics`
/// (and `/`) on a thread of its own, installing the recorder on first use.
/// Port 0 picks a free port: ask [`MetricsServer::local_addr`].
///
/// The endpoint has no authentication: it shows counts and names of
/// projections and consumers, nothing of the events. Scrapes are answered
/// one at a time; a client that sends nothing is dropped after 5 s.
///
/// ```
/// # fn main() -> eventfold::Result<()> {
/// let server = eventfold::metrics::serve_prometheus("127.0.0.1:0")?;
/// println!("scrape http://{}/metrics", server.local_addr());
/// # Ok(())
/// # }
/// ```
pub fn serve_prometheus(addr: impl ToSocketAddrs) -> Result<MetricsServer> {
    let handle = handle()?;
    let listener =
        TcpListener::bind(addr).map_err(|e| metrics_error(format!("cannot listen for scrapes: {e}")))?;
    let local = listener.local_addr().map_err(|e| metrics_error(format!("no local address: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let join = std::thread::Builder::new()
        .name("eventfold-metrics".into())
        .spawn(move || accept(&listener, &handle, &stopping))
        .map_err(|e| metrics_error(format!("cannot start the metrics thread: {e}")))?;
    Ok(MetricsServer { addr: local, stop, join: Some(join) })
}

/// The HTTP endpoint of [`serve_prometheus`]. Dropping it (or
/// [`stop`](MetricsServer::stop)) stops serving; the recorder stays
/// installed and keeps counting.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(join) = self.join.take() else { return };
        self.stop.store(true, Ordering::Release);
        // Wake the blocked accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if TcpStream::connect_timeout(&wake, CLIENT_TIMEOUT).is_ok() {
            let _ = join.join();
        }
        // Otherwise the thread ends at its next connection.
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept(listener: &TcpListener, handle: &PrometheusHandle, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match conn {
            // A client that goes away mid-answer is its own business.
            Ok(stream) => drop(answer(stream, handle)),
            // Out of descriptors, most likely: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Reads one request head and answers it, then closes the connection.
fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !ends_head(&head) && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics" | "/") => {
            handle.run_upkeep();
            ("200 OK", handle.render())
        }
        ("GET" | "HEAD", _) => ("404 Not Found", "not found: the metrics are at /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET and HEAD\n".to_string()),
    };
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        reply.push_str("Allow: GET, HEAD\r\n");
    }
    reply.push_str("\r\n");
    if method != "HEAD" {
        reply.push_str(&body);
    }
    stream.write_all(reply.as_bytes())?;
    stream.flush()
}

fn ends_head(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(addr: SocketAddr, text: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(text.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn answers_metrics_and_refuses_the_rest() {
        let server = serve_prometheus("127.0.0.1:0").unwrap();
        let addr = server.local_addr();
        ::metrics::counter!(super::super::APPENDS_TOTAL).increment(1);
        let ok = request(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\neventfold_appends_total "), "{ok}");
        assert!(ok.contains("# HELP eventfold_appends_total"), "{ok}");
        let missing = request(addr, "GET /other HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = request(addr, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"), "{post}");
        let head = request(addr, "HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"), "{head}");
        // A second endpoint shares the recorder.
        let other = serve_prometheus("127.0.0.1:0").unwrap();
        assert!(request(other.local_addr(), "GET / HTTP/1.1\r\n\r\n").contains("eventfold_appends_total"));
        server.stop();
        assert!(TcpStream::connect(addr).is_err(), "stopped");
    }
}
