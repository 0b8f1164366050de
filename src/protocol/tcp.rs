//! The node over TCP: one thread per connection, all sharing one [`Store`]
//! and so its group-commit writer (concurrent appends from different
//! connections share commits).

use std::io::{self, BufReader, BufWriter};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};

use super::{ServeOptions, serve_connection};
use crate::error::{Error, Result};
use crate::store::Store;

/// A bound listener, ready to [`run`](TcpServer::run).
pub struct TcpServer {
    listener: TcpListener,
    store: Store,
    options: ServeOptions,
}

impl TcpServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one). The protocol has
    /// no authentication, so an address that is not loopback is refused
    /// unless `allow_remote` is set.
    pub fn bind(store: Store, addr: &str, allow_remote: bool, options: ServeOptions) -> Result<TcpServer> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| Error::io(addr, e))?.collect();
        if addrs.is_empty() {
            return Err(Error::io(
                addr,
                io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing"),
            ));
        }
        if !allow_remote && let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(Error::io(
                addr,
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{remote} is not a loopback address and the protocol has no authentication: listen on 127.0.0.1, or allow remote clients explicitly"
                    ),
                ),
            ));
        }
        let listener = TcpListener::bind(&addrs[..]).map_err(|e| Error::io(addr, e))?;
        Ok(TcpServer { listener, store, options })
    }

    /// The address actually bound (with the port chosen when 0 was asked).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| Error::io("tcp listener", e))
    }

    /// Accepts connections until the process ends, each served on its own
    /// thread. A failed connection is logged and does not stop the server.
    pub fn run(self) -> Result<()> {
        for conn in self.listener.incoming() {
            match conn {
                Ok(stream) => {
                    let store = self.store.clone();
                    let options = self.options.clone();
                    let spawned = std::thread::Builder::new()
                        .name("eventfold-conn".into())
                        .spawn(move || serve_tcp_client(&store, stream, &options));
                    if let Err(e) = spawned {
                        self.options.log(&format!("could not start a connection thread: {e}"));
                    }
                }
                Err(e) => self.options.log(&format!("accept failed: {e}")),
            }
        }
        Ok(())
    }
}

fn serve_tcp_client(store: &Store, stream: TcpStream, options: &ServeOptions) {
    let peer = stream.peer_addr().map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    options.log(&format!("connection from {peer}"));
    let reader = match stream.try_clone() {
        Ok(s) => BufReader::new(s),
        Err(e) => {
            options.log(&format!("connection from {peer}: {e}"));
            return;
        }
    };
    match serve_connection(store, reader, BufWriter::new(stream), options) {
        Ok(n) => options.log(&format!("connection from {peer} closed after {n} requests")),
        Err(e) => options.log(&format!("connection from {peer} ended: {e}")),
    }
}
