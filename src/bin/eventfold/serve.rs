//! `eventfold serve`: the JSON-lines protocol node.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use eventfold::protocol::{self, ServeOptions, TcpServer, wire};

use crate::{Ctx, Outcome};

/// Arguments of `serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Read requests on stdin, write replies on stdout; exit at end of input.
    #[arg(long, required_unless_present = "tcp", conflicts_with = "tcp")]
    pub stdio: bool,
    /// Listen on this TCP address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:7878")]
    pub tcp: Option<String>,
    /// Allow a TCP address that is not loopback. Needs --token-file; use
    /// --tls-cert and --tls-key too, or the token crosses the network in clear.
    #[arg(long, requires = "tcp")]
    pub allow_remote: bool,
    /// Require every connection to send this file's contents (a shared
    /// secret of at least 16 bytes; trailing whitespace is dropped) in an
    /// `auth` message first; a wrong or missing token closes the connection.
    #[arg(long, value_name = "FILE", requires = "tcp")]
    pub token_file: Option<PathBuf>,
    /// Serve TCP over TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires_all = ["tcp", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Longest request line, in bytes; longer lines get an error reply.
    #[arg(long, default_value_t = wire::DEFAULT_MAX_LINE_BYTES, value_name = "BYTES")]
    pub max_line_bytes: usize,
    /// Most TCP connections served at once; a client beyond it gets one
    /// error line and the connection is closed.
    #[arg(long, default_value_t = protocol::DEFAULT_MAX_CONNECTIONS, value_name = "N", requires = "tcp")]
    pub max_connections: usize,
    /// Most subscriptions one connection (or stdio) may hold at once; a
    /// subscribe beyond it gets an error reply.
    #[arg(long, default_value_t = protocol::DEFAULT_MAX_SUBSCRIPTIONS, value_name = "N")]
    pub max_subscriptions: usize,
    /// Serve the metrics in Prometheus' text format at http://ADDR/metrics
    /// (port 0 picks a free port). No authentication: it shows counts and
    /// the names of consumers and projections, never events.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<Outcome> {
    // Before the store opens, so that it counts from the first request.
    let _metrics = match &a.metrics {
        Some(addr) => {
            let server = eventfold::metrics::serve_prometheus(addr.as_str())
                .with_context(|| format!("serving metrics on {addr}"))?;
            eprintln!("eventfold: metrics on http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let store = ctx.open_write()?;
    // Logs go to stderr: stdout carries only protocol replies.
    let mut options = ServeOptions::default()
        .with_max_line_bytes(a.max_line_bytes.max(1))
        .with_max_connections(a.max_connections)
        .with_max_subscriptions(a.max_subscriptions)
        .with_logger(Arc::new(|line: &str| eprintln!("eventfold: {line}")));
    if let Some(path) = &a.token_file {
        options = options.with_token(protocol::Token::from_file(path).context("reading --token-file")?);
    }
    if let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) {
        options = options
            .with_tls(protocol::tls_server_config(cert, key).context("loading --tls-cert and --tls-key")?);
    }
    if let Some(addr) = &a.tcp {
        let server = TcpServer::bind(store, addr, a.allow_remote, options).map_err(|e| match e {
            eventfold::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                anyhow::anyhow!("refusing to listen on {addr}: {source} (--allow-remote --token-file FILE)")
            }
            other => anyhow::Error::new(other),
        })?;
        let bound = server.local_addr()?;
        let security = match (a.token_file.is_some(), a.tls_cert.is_some()) {
            (true, true) => " (tls, token required)",
            (true, false) => " (token required)",
            (false, true) => " (tls)",
            (false, false) => "",
        };
        eprintln!("eventfold: serving {} on tcp{security}, listening on {bound}", ctx.data.display());
        server.run()?;
    } else {
        eprintln!("eventfold: serving {} on stdio", ctx.data.display());
        let n = protocol::serve_stdio(&store, &options).context("serving on stdio")?;
        eprintln!("eventfold: end of input after {n} requests");
    }
    Ok(Outcome::Ok)
}
