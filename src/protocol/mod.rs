//! The JSON-lines protocol node: one JSON message per line in, one reply per
//! line out, over stdin/stdout ([`serve_stdio`]) or TCP ([`TcpServer`]).
//!
//! See `docs/protocol.md` for every message with an example. The wire types
//! are in [`wire`]; [`Session`] answers requests against a `Store`.
//!
//! Bad input never stops the node: a line that is not JSON, a missing field,
//! an unknown type or a line over the length limit each get an `error` reply
//! and the node reads on.

mod appends;
mod auth;
mod dispatch;
mod lifecycle;
mod parse;
mod pump;
mod reads;
mod stdio;
mod tcp;
#[cfg(feature = "tls")]
mod tls;
pub mod wire;

use std::io::{self, BufRead, Write};
use std::sync::Arc;

pub use auth::{MIN_TOKEN_BYTES, Token};
pub use dispatch::{Session, SharedOutput, error_reply};
pub use stdio::serve_stdio;
pub use tcp::TcpServer;
#[cfg(feature = "tls")]
pub use tls::{rustls, tls_server_config};

use crate::store::Store;

/// A function the node calls with one line of log text (connections opened
/// and closed, I/O errors). The `eventfold` CLI writes them to stderr.
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// Most connections a TCP node serves at once, by default; a client beyond
/// it gets one `error` line (code [`wire::codes::LIMIT_REACHED`]) and the
/// connection is closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Most subscriptions one connection may hold at once, by default; a
/// `subscribe` beyond it is answered with error [`wire::codes::LIMIT_REACHED`].
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 64;

/// Settings of a protocol node. Start from [`ServeOptions::default`] and
/// change what you need with the `with_*` methods:
///
/// ```
/// use eventfold::protocol::ServeOptions;
/// let options = ServeOptions::default().with_max_connections(16).with_max_subscriptions(8);
/// assert_eq!((options.max_connections, options.max_subscriptions), (16, 8));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Longest request line read, in bytes (default [`wire::DEFAULT_MAX_LINE_BYTES`]).
    pub max_line_bytes: usize,
    /// Most TCP connections served at once (default [`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Most subscriptions per connection (default [`DEFAULT_MAX_SUBSCRIPTIONS`]).
    pub max_subscriptions: usize,
    /// Where log lines go (default: nowhere).
    pub logger: Option<Logger>,
    /// The token every connection must present first (default: none).
    pub(crate) token: Option<Token>,
    /// TLS for TCP connections (default: plain text).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_line_bytes: wire::DEFAULT_MAX_LINE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            logger: None,
            token: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ServeOptions {
    /// Sets the longest request line read, in bytes.
    pub fn with_max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }

    /// Sets the most TCP connections served at once.
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets the most subscriptions one connection may hold at once.
    pub fn with_max_subscriptions(mut self, subscriptions: usize) -> Self {
        self.max_subscriptions = subscriptions;
        self
    }

    /// Requires every connection to send `auth` with this token before
    /// anything else; a wrong or missing token gets one `error` (code
    /// [`wire::codes::UNAUTHORIZED`]) and the connection is closed. A TCP
    /// node on an address that is not loopback needs one.
    pub fn with_token(mut self, token: Token) -> Self {
        self.token = Some(token);
        self
    }

    /// Serves TCP connections over TLS with `config` (see
    /// [`tls_server_config`]); a client that speaks plain text gets one
    /// plain-text `error` line (code [`wire::codes::UNAUTHORIZED`]) and
    /// the connection is closed.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Whether connections must present a token.
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// Sends log lines to `logger`.
    pub fn with_logger(mut self, logger: Logger) -> Self {
        self.logger = Some(logger);
        self
    }

    pub(crate) fn log(&self, text: &str) {
        if let Some(l) = &self.logger {
            l(text);
        }
    }
}

/// What [`read_line_limited`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// A whole line is in the buffer (newline and a trailing `\r` removed).
    Line,
    /// The line was longer than the limit; it was skipped to its end and the
    /// buffer is empty. Holds the line's length in bytes.
    TooLong(usize),
    /// End of input.
    Eof,
}

/// Reads one line into `buf`, keeping at most `max` bytes in memory: a
/// longer line is consumed chunk by chunk and thrown away.
pub fn read_line_limited<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<LineRead> {
    buf.clear();
    let mut total = 0usize;
    let mut too_long = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (total, too_long) {
                (0, _) => LineRead::Eof,
                (n, true) => LineRead::TooLong(n),
                (_, false) => {
                    trim_cr(buf);
                    LineRead::Line
                }
            });
        }
        let (chunk_len, used, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, i.saturating_add(1), true),
            None => (available.len(), available.len(), false),
        };
        total = total.saturating_add(chunk_len);
        if !too_long {
            if buf.len().saturating_add(chunk_len) > max {
                too_long = true;
                buf.clear();
                buf.shrink_to(max.min(64 << 10));
            } else {
                buf.extend_from_slice(&available[..chunk_len]);
            }
        }
        r.consume(used);
        if found {
            if too_long {
                return Ok(LineRead::TooLong(total));
            }
            trim_cr(buf);
            return Ok(LineRead::Line);
        }
    }
}

fn trim_cr(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
}

/// Writes one protocol line: `line` with its newline in a single write, then
/// a flush. A line in two writes (text, then newline) leaves the newline
/// waiting on the sender's Nagle timer or the peer's delayed ACK, which
/// stalled replies over TCP by about 40 ms.
pub(crate) fn write_line<W: Write + ?Sized>(out: &mut W, mut line: String) -> io::Result<()> {
    line.push('\n');
    out.write_all(line.as_bytes())?;
    out.flush()
}

/// Serves one client: reads request lines from `input` until it ends and
/// writes one reply line per request to `output`, each line in one write and
/// flushed, with the events of the client's subscriptions pushed between
/// replies (by one thread for all of them). Blank lines are ignored.
/// Subscriptions end with the input. Returns the number of requests
/// answered; an error means the input or output failed, never that a
/// request was bad.
pub fn serve_connection<R: BufRead, W: Write + Send + 'static>(
    store: &Store,
    mut input: R,
    output: W,
    options: &ServeOptions,
) -> io::Result<u64> {
    let output: SharedOutput = Arc::new(std::sync::Mutex::new(output));
    let mut session = Session::with_output(store.clone(), output.clone())
        .with_max_subscriptions(options.max_subscriptions)
        .with_token(options.token.clone());
    let answered = answer_lines(&mut session, &mut input, &output, options);
    session.close();
    answered
}

/// The request loop of a connection: one reply line per request line, until
/// the input ends.
pub(crate) fn answer_lines<R: BufRead>(
    session: &mut Session,
    input: &mut R,
    output: &SharedOutput,
    options: &ServeOptions,
) -> io::Result<u64> {
    let mut line = Vec::new();
    let mut answered = 0u64;
    loop {
        let reply = match read_line_limited(input, &mut line, options.max_line_bytes)? {
            LineRead::Eof => return Ok(answered),
            LineRead::TooLong(n) => session.oversized_line(n, options.max_line_bytes),
            LineRead::Line if line.iter().all(u8::is_ascii_whitespace) => continue,
            LineRead::Line => session.handle_line(&line),
        };
        write_line(&mut *output.lock().unwrap_or_else(|p| p.into_inner()), reply)?;
        session.after_reply();
        answered = answered.saturating_add(1);
        if session.is_closing() {
            return Ok(answered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer that records each `write` call it gets.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Guards one write per line: a reply went out as its text and then its
    /// newline in a second write (and past 8 KiB the buffered writer sent the
    /// text on its own), which over TCP left the newline waiting ~40 ms on
    /// Nagle's algorithm and delayed ACKs. Every line, small or large reply
    /// or pushed event, must reach the writer as one `write` ending in its
    /// only newline.
    #[test]
    fn every_line_is_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
        let mut input = String::new();
        for i in 0..30 {
            input.push_str(&format!(
                r#"{{"body":{{"type":"append","msg_id":{i},"aggregate_id":"a-1","event_type":"E","event_data":{big},"version":"any"}}}}"#
            ));
            input.push('\n');
        }
        input.push_str(r#"{"body":{"type":"read_all","msg_id":100}}"#);
        input.push('\n');
        input.push_str("not json\n");
        input.push_str(r#"{"body":{"type":"subscribe","msg_id":101,"from_sequence":1}}"#);
        input.push('\n');
        let writes = Writes::default();
        let answered =
            serve_connection(&store, input.as_bytes(), writes.clone(), &ServeOptions::default()).unwrap();
        assert_eq!(answered, 33);
        let writes = writes.0.lock().unwrap();
        // 33 replies, and up to 30 events pushed before the input ended.
        assert!(writes.len() >= 33, "{}", writes.len());
        for w in writes.iter() {
            assert_eq!(w.iter().filter(|&&b| b == b'\n').count(), 1, "{}", String::from_utf8_lossy(w));
            assert_eq!(w.last(), Some(&b'\n'));
            serde_json::from_slice::<serde_json::Value>(w).unwrap();
        }
        assert!(writes.iter().any(|w| w.len() > 30_000), "the read_all reply is one write of over 30 KB");
    }

    #[test]
    fn long_lines_are_skipped_whole() {
        let input = format!("short\n{}\nnext\r\nlast", "x".repeat(100));
        // A tiny buffer forces the long line across many chunks.
        let mut r = io::BufReader::with_capacity(7, input.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(read_line_limited(&mut r, &mut buf, 10).unwrap(), LineRead::Line);
        assert_eq!(buf, b"short");
        assert_eq!(read_line_limited(&mut r, &mut buf, 10).unwrap(), LineRead::TooLong(100));
        assert!(buf.is_empty());
        assert_eq!(read_line_limited(&mut r, &mut buf, 10).unwrap(), LineRead::Line);
        assert_eq!(buf, b"next");
        assert_eq!(read_line_limited(&mut r, &mut buf, 10).unwrap(), LineRead::Line);
        assert_eq!(buf, b"last");
        assert_eq!(read_line_limited(&mut r, &mut buf, 10).unwrap(), LineRead::Eof);
    }
}
