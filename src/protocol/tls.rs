//! TLS on the node's TCP connections (feature `tls`), with rustls.
//!
//! A connection is read by its request thread and written by that thread
//! and by the thread that pushes its subscriptions, so the TLS state is
//! shared behind a lock. The lock is never held while waiting for the
//! client's bytes: the request thread reads the socket without it and then
//! hands the bytes to rustls under it, so a pushed event is never held up
//! by a read that waits for the next request.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use rustls;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::vocab::{Error, Result};

/// The first byte of every TLS connection (a handshake record). A client
/// that starts with anything else speaks plain text to a TLS node.
pub(crate) const HANDSHAKE_RECORD: u8 = 0x16;

/// A server configuration for [`ServeOptions::with_tls`](super::ServeOptions::with_tls)
/// from a PEM certificate chain (the server's certificate first) and its
/// PEM private key (PKCS #8, PKCS #1 or SEC1), with ring as the crypto
/// provider, TLS 1.2 and 1.3, and no client certificates.
pub fn tls_server_config(
    cert_chain: impl AsRef<Path>,
    private_key: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>> {
    let (cert_path, key_path) = (cert_chain.as_ref(), private_key.as_ref());
    let bad = |path: &Path, what: String| Error::io(path, io::Error::new(io::ErrorKind::InvalidData, what));
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| bad(cert_path, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            cert_path,
            "holds no certificate: give the PEM file of the server's certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| bad(key_path, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            bad(key_path, format!("the certificate and key do not make a TLS configuration: {e}"))
        })?;
    Ok(Arc::new(config))
}

/// One TLS connection, as a reader and a writer that may be used from two
/// threads (clone it).
pub(crate) struct TlsSocket {
    state: Arc<Mutex<State>>,
    tcp: Arc<TcpStream>,
    /// Where the reader receives the socket's bytes; each clone has its own.
    raw: Vec<u8>,
}

impl Clone for TlsSocket {
    fn clone(&self) -> Self {
        TlsSocket { state: self.state.clone(), tcp: self.tcp.clone(), raw: Vec::new() }
    }
}

/// Bytes read from the socket at a time: one TLS record and its overhead.
const RAW_CHUNK: usize = 18 << 10;

struct State {
    conn: rustls::ServerConnection,
    /// Bytes read from the socket that rustls has not taken yet.
    pending: Vec<u8>,
}

impl TlsSocket {
    pub(crate) fn new(config: Arc<ServerConfig>, tcp: Arc<TcpStream>) -> io::Result<TlsSocket> {
        let mut conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        // Every line is flushed as it is written, so what rustls holds is
        // at most one line: no limit is needed, and one would make a long
        // reply fail instead of waiting.
        conn.set_buffer_limit(None);
        let state = Arc::new(Mutex::new(State { conn, pending: Vec::new() }));
        Ok(TlsSocket { state, tcp, raw: Vec::new() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the client the connection ends (TLS `close_notify`), if it
    /// can still be told.
    pub(crate) fn close_notify(&self) {
        let mut st = self.lock();
        st.conn.send_close_notify();
        let _ = send(&mut st.conn, &self.tcp);
    }
}

/// Writes what rustls has to send (records, handshake messages, alerts).
fn send(conn: &mut rustls::ServerConnection, tcp: &TcpStream) -> io::Result<()> {
    let mut out = tcp;
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    Ok(())
}

impl Read for TlsSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.raw.len() < RAW_CHUNK {
            self.raw.resize(RAW_CHUNK, 0);
        }
        loop {
            {
                let mut st = self.lock();
                match st.conn.reader().read(buf) {
                    // 0: the client's close_notify.
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                let State { conn, pending } = &mut *st;
                if !pending.is_empty() {
                    // rustls's plaintext buffer is empty (the read above
                    // found nothing), so it takes at least some bytes.
                    let mut unread = &pending[..];
                    let taken = conn.read_tls(&mut unread)?;
                    pending.drain(..taken);
                    let processed = conn.process_new_packets();
                    // Handshake replies, or the alert that says why not.
                    send(conn, &self.tcp)?;
                    if let Err(e) = processed {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")));
                    }
                    continue;
                }
                send(conn, &self.tcp)?;
            }
            let n = (&*self.tcp).read(&mut self.raw)?;
            if n == 0 {
                return Ok(0);
            }
            let got = self.raw.get(..n).unwrap_or_default();
            self.state.lock().unwrap_or_else(|p| p.into_inner()).pending.extend_from_slice(got);
        }
    }
}

impl Write for TlsSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.lock();
        st.conn.writer().write_all(buf)?;
        send(&mut st.conn, &self.tcp)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut st = self.lock();
        send(&mut st.conn, &self.tcp)
    }
}
