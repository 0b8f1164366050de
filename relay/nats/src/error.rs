//! The relay's errors.

/// What can stop the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration cannot work; the message says what to change.
    #[error("invalid relay configuration: {0}")]
    Config(String),
    /// The JetStream stream exists with settings the relay cannot use.
    #[error("JetStream stream {stream:?} does not fit: {reason}")]
    StreamMismatch {
        /// The stream's name.
        stream: String,
        /// What differs and how to fix it.
        reason: String,
    },
    /// The JetStream server refused to create or describe the stream.
    #[error("JetStream refused stream {stream:?}: {reason}")]
    StreamRefused {
        /// The stream's name.
        stream: String,
        /// The server's answer.
        reason: String,
    },
    /// The eventfold store failed (disk, LMDB, closed store).
    #[error("eventfold store: {0}")]
    Store(#[from] eventfold::Error),
    /// A NATS or JetStream operation failed in a way that retrying may fix
    /// (connection lost, no leader, ack timeout).
    #[error("NATS: {0}")]
    Transient(String),
    /// A message read from JetStream does not carry what the relay writes.
    #[error("message {subject:?} is not an eventfold event: {reason}")]
    Decode {
        /// The message's subject.
        subject: String,
        /// What is missing or malformed.
        reason: String,
    },
}

impl RelayError {
    pub(crate) fn transient(e: impl std::fmt::Display) -> Self {
        RelayError::Transient(e.to_string())
    }

    /// Whether retrying after a pause may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, RelayError::Transient(_))
    }
}
