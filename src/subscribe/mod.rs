//! Following the log: subscriptions that catch up and go live, and durable
//! consumers that remember where they stopped.

mod checkpoint;
pub(crate) mod consumer;
mod subscription;

pub(crate) use consumer::verify_checkpoints;
pub use consumer::{Consumer, ConsumerInfo};
#[cfg(feature = "async")]
pub use subscription::SubscriptionStream;
pub use subscription::{DEFAULT_SUBSCRIPTION_BATCH, SubscribeFrom, Subscription};
pub(crate) use subscription::{Follow, read_log_batch};
