//! Token authentication: a shared secret that a connection presents in an
//! `auth` message before anything else. A wrong or missing token gets one
//! `error` reply (code [`codes::UNAUTHORIZED`](super::wire::codes::UNAUTHORIZED))
//! and the connection is closed.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::vocab::{Error, Result};

/// The shortest token accepted: anything shorter is guessable.
pub const MIN_TOKEN_BYTES: usize = 16;

/// A shared secret that every connection of a node must present (`auth`)
/// before its first other request. Its `Debug` form hides the secret.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl Token {
    /// A token of `secret`, which must be at least [`MIN_TOKEN_BYTES`] long.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Token> {
        let secret = secret.into();
        if secret.len() < MIN_TOKEN_BYTES {
            return Err(Error::io(
                "token",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a token of {} bytes is too short to keep anyone out: use at least {MIN_TOKEN_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
                        secret.len()
                    ),
                ),
            ));
        }
        Ok(Token(secret.into()))
    }

    /// The token kept in the file at `path`: its contents without the
    /// whitespace at its end (the newline an editor or `echo` leaves).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Token> {
        let path = path.as_ref();
        let mut secret = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        while secret.last().is_some_and(u8::is_ascii_whitespace) {
            secret.pop();
        }
        Token::new(secret).map_err(|e| match e {
            Error::Io { source, .. } => Error::io(path, source),
            other => other,
        })
    }

    /// Whether `presented` is the secret, compared in constant time: every
    /// byte is looked at whatever matched before, so the reply's timing
    /// does not tell a guesser how much of a guess was right.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let secret = &self.0;
        let n = secret.len().max(presented.len());
        let mut diff = u8::from(secret.len() != presented.len());
        for i in 0..n {
            let a = secret.get(i).copied().unwrap_or(0);
            let b = presented.get(i).copied().unwrap_or(0);
            diff |= a ^ b;
        }
        std::hint::black_box(diff) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let t = Token::new("0123456789abcdef-secret").unwrap();
        assert!(t.matches(b"0123456789abcdef-secret"));
        for wrong in
            [&b""[..], b"0123456789abcdef-secreT", b"0123456789abcdef-secret ", b"0123456789abcdef-secre"]
        {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{t:?}"), "Token(..)");
        assert!(Token::new("short").unwrap_err().to_string().contains("too short"));
    }

    #[test]
    fn a_token_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef\n").unwrap();
        assert!(Token::from_file(&path).unwrap().matches(b"0123456789abcdef"));
        std::fs::write(&path, "\n").unwrap();
        let err = Token::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("token") && err.contains("too short"), "{err}");
        assert!(Token::from_file(dir.path().join("missing")).is_err());
    }
}
