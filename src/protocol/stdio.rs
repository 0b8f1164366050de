//! The node over stdin and stdout.

use std::io;

use super::{ServeOptions, serve_connection};
use crate::store::Store;

/// Serves requests from stdin, one per line, writing one reply per line to
/// stdout (flushed per line), until stdin ends. Returns the number of
/// requests answered.
pub fn serve_stdio(store: &Store, options: &ServeOptions) -> io::Result<u64> {
    // `Stdout` (not its lock) because subscription threads write to it too.
    serve_connection(store, io::stdin().lock(), io::stdout(), options)
}
