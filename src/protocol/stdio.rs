//! The node over stdin and stdout.

use std::io;

use super::{ServeOptions, serve_connection};
use crate::store::Store;

/// Serves requests from stdin, one per line, writing one reply per line to
/// stdout (flushed per line), until stdin ends. Returns the number of
/// requests answered.
pub fn serve_stdio(store: &Store, options: &ServeOptions) -> io::Result<u64> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    serve_connection(store, stdin.lock(), stdout.lock(), options)
}
