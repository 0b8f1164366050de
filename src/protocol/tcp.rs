//! The node over TCP: one thread per connection, all sharing one [`Store`]
//! and so its group-commit writer (concurrent appends from different
//! connections share commits).
//!
//! Resources are bounded: at most [`ServeOptions::max_connections`]
//! connections at once (one more gets one `error` line and is closed), at
//! most [`ServeOptions::max_subscriptions`] per connection, one thread per
//! connection for its requests and one for all its subscriptions. Sockets
//! have `TCP_NODELAY` and every line goes out in one write, so a reply never
//! waits for an ACK. When `accept` fails (out of file descriptors, say) the
//! loop sleeps, longer after each failure in a row, and logs at most one
//! line a second.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::dispatch::{Session, SharedOutput, to_line};
use super::wire::{DEFAULT_NODE_ID, Envelope, Reply, codes};
use super::{ServeOptions, answer_lines};
use crate::store::Store;
use crate::vocab::{Error, Result};

/// First pause after a failed `accept`; it doubles with each failure in a row.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// Longest pause after failed `accept`s.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this interval about failing `accept`s.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A bound listener, ready to [`run`](TcpServer::run).
pub struct TcpServer {
    listener: TcpListener,
    store: Store,
    options: ServeOptions,
}

impl TcpServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one). An address that
    /// is not loopback is refused unless `allow_remote` is set and the
    /// options require a token ([`ServeOptions::with_token`]): anyone who
    /// can reach the port could otherwise read and write the store. Use TLS
    /// too ([`ServeOptions::with_tls`], feature `tls`), or the token crosses
    /// the network in clear.
    pub fn bind(store: Store, addr: &str, allow_remote: bool, options: ServeOptions) -> Result<TcpServer> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| Error::io(addr, e))?.collect();
        if addrs.is_empty() {
            return Err(Error::io(
                addr,
                io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing"),
            ));
        }
        if let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            let problem = match (allow_remote, options.requires_token()) {
                (false, _) => Some(format!(
                    "{remote} is not a loopback address: listen on 127.0.0.1, or allow remote clients explicitly (and give the node a token)"
                )),
                (true, false) => Some(format!(
                    "{remote} is not a loopback address and no token is set, so anyone who can reach it could read and write the store: give the node a token file (and TLS)"
                )),
                (true, true) => None,
            };
            if let Some(problem) = problem {
                return Err(Error::io(addr, io::Error::new(io::ErrorKind::PermissionDenied, problem)));
            }
        }
        let listener = TcpListener::bind(&addrs[..]).map_err(|e| Error::io(addr, e))?;
        Ok(TcpServer { listener, store, options })
    }

    /// The address actually bound (with the port chosen when 0 was asked).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| Error::io("tcp listener", e))
    }

    /// Accepts connections until the process ends, each served on its own
    /// thread. A failed connection is logged and does not stop the server;
    /// a failing `accept` is retried after a growing pause (see the module
    /// docs).
    pub fn run(self) -> Result<()> {
        let active = Arc::new(AtomicUsize::new(0));
        accept_loop(
            || Some(self.listener.accept()),
            std::thread::sleep,
            Instant::now,
            &|line: &str| self.options.log(line),
            |(stream, peer)| self.start(stream, peer, &active),
        );
        Ok(())
    }

    /// Serves a new connection on its own thread, or refuses it when the
    /// node serves as many as it may.
    fn start(&self, stream: TcpStream, peer: SocketAddr, active: &Arc<AtomicUsize>) {
        let max = self.options.max_connections;
        if active.load(Ordering::Acquire) >= max {
            self.options.log(&format!("refused a connection from {peer}: {max} connections are open"));
            refuse(
                stream,
                format!(
                    "limit reached: this node serves at most {max} connections at once (serve --max-connections): close one, or try again later"
                ),
            );
            return;
        }
        let slot = Slot::take(active.clone());
        let store = self.store.clone();
        let options = self.options.clone();
        let spawned = std::thread::Builder::new()
            .name("eventfold-conn".into())
            .spawn(move || serve_tcp_client(&store, stream, peer, &options, slot));
        if let Err(e) = spawned {
            self.options.log(&format!("could not start a thread for the connection from {peer}: {e}"));
        }
    }
}

/// One of the node's connection slots, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::AcqRel);
        Slot(active)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers a connection the node will not serve with one `error` line, and
/// closes it, without ever blocking the accept loop.
fn refuse(stream: TcpStream, text: String) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    answer_and_close(&stream, codes::LIMIT_REACHED, text);
}

/// Writes one `error` line to a client and closes the connection after it.
fn answer_and_close(stream: &TcpStream, code: u32, text: String) {
    let line = to_line(&Envelope {
        src: DEFAULT_NODE_ID.to_string(),
        dest: "client".to_string(),
        body: Reply::error(None, code, text),
    });
    let mut stream = stream;
    // A new socket's send buffer holds the line; if it somehow does not,
    // the client gets the close without it.
    let _ = super::write_line(&mut stream, line);
    close_after_reply(stream);
}

/// How long closing a refused connection waits for what the client still
/// sends, so that the close does not become a reset.
const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// Closes a connection whose last line is written: what the client already
/// sent is read away, so the close is a FIN after that line rather than a
/// reset that could discard it (a client that pipelined requests after a
/// refused one still reads why).
fn close_after_reply(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    // Bounded: a client that neither sends nor closes does not hold the thread.
    let _ = stream.set_read_timeout(Some(DRAIN_WAIT));
    let mut stream = stream;
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

/// Prepares an accepted socket: `TCP_NODELAY`, so that a reply is sent at
/// once instead of waiting for the ACK of the previous segment.
fn prepare(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)
}

/// Serves one connection until its input ends. `slot` is given back before
/// the socket closes, so a client that saw its connection end can connect
/// again at once without meeting the connection limit.
fn serve_tcp_client(store: &Store, stream: TcpStream, peer: SocketAddr, options: &ServeOptions, slot: Slot) {
    options.log(&format!("connection from {peer}"));
    if let Err(e) = prepare(&stream) {
        options.log(&format!("connection from {peer}: {e}"));
        let text = format!("temporarily unavailable: the node cannot serve this connection now ({e})");
        let line = to_line(&Envelope {
            src: DEFAULT_NODE_ID.to_string(),
            dest: "client".to_string(),
            body: Reply::error(None, codes::TEMPORARILY_UNAVAILABLE, text),
        });
        let mut stream = stream;
        let _ = super::write_line(&mut stream, line);
        return;
    }
    // One socket, read by this thread and written by it and the
    // subscription thread: one file descriptor per connection.
    let socket = Arc::new(stream);
    let Some(transport) = Transport::open(&socket, peer, options) else { return };
    let mut reader = BufReader::new(transport.reader());
    // No buffering: every line is built whole and written once.
    let output: SharedOutput = Arc::new(Mutex::new(transport.writer()));
    let mut session = Session::with_output(store.clone(), output.clone())
        .with_max_subscriptions(options.max_subscriptions)
        .with_token(options.token.clone());
    let result = answer_lines(&mut session, &mut reader, &output, options);
    transport.finish();
    if session.is_closing() {
        options.log(&format!("connection from {peer} refused: no valid token"));
        close_after_reply(&socket);
    }
    // A subscription thread stuck writing to a client that does not read is
    // cut loose by shutting the socket down, so teardown takes bounded time.
    session.close_with(Some(&|| {
        let _ = socket.shutdown(Shutdown::Both);
    }));
    match result {
        Ok(n) => options.log(&format!("connection from {peer} closed after {n} requests")),
        Err(e) => options.log(&format!("connection from {peer} ended: {e}")),
    }
    drop((session, output, reader));
    drop(slot);
    // The last handle: the socket closes here.
    drop(socket);
}

/// What a connection's lines travel over: the socket itself, or TLS on it.
enum Transport {
    Plain(Arc<TcpStream>),
    #[cfg(feature = "tls")]
    Tls(super::tls::TlsSocket),
}

impl Transport {
    /// The connection's transport, or `None` when the client was refused
    /// (plain text to a TLS node) or TLS could not be set up; both are
    /// logged.
    fn open(socket: &Arc<TcpStream>, peer: SocketAddr, options: &ServeOptions) -> Option<Transport> {
        #[cfg(feature = "tls")]
        if let Some(config) = &options.tls {
            // A TLS client speaks first, with a handshake record; anything
            // else is a plain-text client, which is told so in plain text
            // rather than left to puzzle over a TLS alert.
            let mut first = [0u8; 1];
            match socket.peek(&mut first) {
                Ok(1) if first[0] == super::tls::HANDSHAKE_RECORD => {}
                Ok(0) | Err(_) => return None,
                Ok(_) => {
                    options
                        .log(&format!("refused a plain-text connection from {peer}: this node requires TLS"));
                    let text = "unauthorized: this node accepts TLS connections only: connect with TLS (and, if it requires one, send the token in an auth message)";
                    answer_and_close(socket, codes::UNAUTHORIZED, text.to_string());
                    return None;
                }
            }
            return match super::tls::TlsSocket::new(config.clone(), socket.clone()) {
                Ok(tls) => Some(Transport::Tls(tls)),
                Err(e) => {
                    options.log(&format!("connection from {peer}: could not start TLS: {e}"));
                    None
                }
            };
        }
        let _ = (peer, options);
        Some(Transport::Plain(socket.clone()))
    }

    fn reader(&self) -> Box<dyn Read + Send> {
        match self {
            Transport::Plain(s) => Box::new(Socket(s.clone())),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => Box::new(t.clone()),
        }
    }

    fn writer(&self) -> Box<dyn Write + Send> {
        match self {
            Transport::Plain(s) => Box::new(Socket(s.clone())),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => Box::new(t.clone()),
        }
    }

    /// Ends the conversation: TLS says so to the client.
    fn finish(&self) {
        match self {
            Transport::Plain(_) => {}
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.close_notify(),
        }
    }
}

/// A connection's socket, shared by its reader and its writers.
struct Socket(Arc<TcpStream>);

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

/// The accept loop, with what it needs from the outside passed in so that a
/// test can drive it: `accept` (`None` ends the loop; the server's never
/// does), `sleep`, the clock, the log, and what to do with a connection.
///
/// A failed `accept` is retried after a pause that starts at
/// [`ACCEPT_BACKOFF_FIRST`] and doubles with each failure in a row up to
/// [`ACCEPT_BACKOFF_MAX`]: a node out of file descriptors neither spins nor
/// floods its log, and serves the waiting clients once descriptors are free.
/// Failures are logged at most once per [`ACCEPT_LOG_INTERVAL`], with the
/// number left out since the previous line. An aborted or interrupted
/// `accept` is the client's doing and is retried at once, silently.
fn accept_loop<C>(
    mut accept: impl FnMut() -> Option<io::Result<C>>,
    mut sleep: impl FnMut(Duration),
    mut now: impl FnMut() -> Instant,
    log: &dyn Fn(&str),
    mut serve: impl FnMut(C),
) {
    let mut pause = ACCEPT_BACKOFF_FIRST;
    let mut in_a_row = 0u64;
    let mut limiter = RateLimit::new(ACCEPT_LOG_INTERVAL);
    while let Some(result) = accept() {
        match result {
            Ok(conn) => {
                if in_a_row > 0 {
                    log(&format!("accepting connections again after {in_a_row} failed accepts"));
                }
                in_a_row = 0;
                pause = ACCEPT_BACKOFF_FIRST;
                limiter = RateLimit::new(ACCEPT_LOG_INTERVAL);
                serve(conn);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                in_a_row = in_a_row.saturating_add(1);
                if let Some(left_out) = limiter.admit(now()) {
                    let more = match left_out {
                        0 => String::new(),
                        n => format!("; {n} more failed since the last report"),
                    };
                    log(&format!("accept failed: {e}{more}; retrying in {} ms", pause.as_millis()));
                }
                sleep(pause);
                pause = pause.saturating_mul(2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// Lets through at most one occurrence per interval, counting the others.
struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    left_out: u64,
}

impl RateLimit {
    fn new(interval: Duration) -> Self {
        RateLimit { interval, last: None, left_out: 0 }
    }

    /// An occurrence at `now`: `Some(number left out since the last one let
    /// through)` when this one may be logged, `None` when it is left out.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.left_out = self.left_out.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.left_out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// Guards `TCP_NODELAY` on accepted sockets (seen from the server side,
    /// where it is set): without it a reply waited for the ACK of the one
    /// before, ~40 ms with delayed ACKs.
    #[test]
    fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(!accepted.nodelay().unwrap(), "the default, which stalled replies");
        prepare(&accepted).unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    /// Guards the accept loop at the file-descriptor limit: it retried a
    /// failing `accept` at once, forever, so one core spun and the log grew
    /// by hundreds of MB in seconds. Now each failure in a row pauses twice
    /// as long as the one before, up to 1 s; at most one log line a second
    /// says how many failures it stands for; and after a success the
    /// pause starts small again.
    #[test]
    fn failing_accepts_back_off_and_log_once_a_second() {
        let start = Instant::now();
        let clock = Cell::new(start);
        let sleeps = RefCell::new(Vec::new());
        let lines = RefCell::new(Vec::new());
        let served = Cell::new(0);
        // 10,000 failures, a connection, 3 failures, an aborted handshake, a connection.
        let mut script: Vec<io::Result<u32>> = Vec::new();
        script.extend((0..10_000).map(|_| Err(io::Error::from_raw_os_error(24))));
        script.push(Ok(1));
        script.extend((0..3).map(|_| Err(io::Error::from_raw_os_error(24))));
        script.push(Err(io::Error::from(io::ErrorKind::ConnectionAborted)));
        script.push(Ok(2));
        let mut script = script.into_iter();
        accept_loop(
            || script.next(),
            |d| {
                sleeps.borrow_mut().push(d);
                clock.set(clock.get() + d);
            },
            || clock.get(),
            &|line: &str| lines.borrow_mut().push(line.to_string()),
            |_| served.set(served.get() + 1),
        );
        assert_eq!(served.get(), 2);
        let sleeps = sleeps.into_inner();
        assert_eq!(sleeps.len(), 10_003, "one pause per failure, none for the aborted handshake");
        assert_eq!(&sleeps[..4], &[5, 10, 20, 40].map(Duration::from_millis));
        assert!(sleeps.iter().all(|d| *d <= ACCEPT_BACKOFF_MAX));
        assert_eq!(sleeps[10_000], ACCEPT_BACKOFF_FIRST, "a success starts the pauses small again");
        let lines = lines.into_inner();
        let failures: Vec<&String> = lines.iter().filter(|l| l.starts_with("accept failed")).collect();
        let seconds = (clock.get() - start).as_secs() + 1;
        assert!(failures.len() as u64 <= seconds + 1, "{} lines in {seconds} s", failures.len());
        assert!(
            failures[0].contains("Too many open files") || failures[0].contains("os error 24"),
            "{}",
            failures[0]
        );
        // Every failure is either logged or counted in a later line.
        let counted: u64 = failures
            .iter()
            .map(|l| {
                1 + l
                    .split("; ")
                    .find_map(|p| p.strip_suffix(" more failed since the last report"))
                    .map_or(0, |n| n.parse::<u64>().unwrap())
            })
            .sum();
        assert!(counted <= 10_003 && counted + 1_000 > 10_000, "{counted}");
        assert!(
            lines.iter().any(|l| l == "accepting connections again after 10000 failed accepts"),
            "{lines:?}"
        );
    }

    #[test]
    fn rate_limit_counts_what_it_leaves_out() {
        let t = Instant::now();
        let mut r = RateLimit::new(Duration::from_secs(1));
        assert_eq!(r.admit(t), Some(0));
        assert_eq!(r.admit(t + Duration::from_millis(500)), None);
        assert_eq!(r.admit(t + Duration::from_millis(999)), None);
        assert_eq!(r.admit(t + Duration::from_millis(1000)), Some(2));
        assert_eq!(r.admit(t + Duration::from_millis(1001)), None);
    }
}
