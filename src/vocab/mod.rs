//! Shared vocabulary: the types and rules every layer speaks, which use
//! nothing else of the crate. Errors, the events going in and coming out,
//! expected versions, names and their validation, categories, filters, the
//! clock, the limits on JSON, the rules for metadata fields, and the report
//! `verify` fills in.

mod clock;
mod dcb;
mod error;
mod event;
mod filter;
pub(crate) mod json_limits;
pub(crate) mod metadata;
mod names;
mod report;
mod retention;
#[cfg(feature = "tracing-span")]
mod span;
mod version;

pub(crate) use clock::now_micros;
pub use dcb::{AppendCondition, Query, QueryItem};
pub use error::{Error, Result};
pub(crate) use error::{from_heed, from_heed_while, panic_message};
pub use event::{AppendResult, ContentType, EventMetadata, NewEvent, RecordedEvent};
pub use filter::Filter;
pub use json_limits::MAX_JSON_DEPTH;
pub use metadata::{MAX_METADATA_ID_LEN, MAX_TRACEPARENT_LEN};
pub use names::{MAX_CONSUMER_NAME_LEN, MAX_NAME_LEN, MAX_TAG_LEN, MAX_TAGS, category_of};
pub(crate) use names::{name_problem, shorten, validate_name, validate_stream_id, validate_tags};
pub use report::{Fault, VerifyReport};
pub use retention::{StreamLifecycle, StreamRetention};
#[cfg(feature = "tracing-span")]
pub use span::SpanMetadataLayer;
pub use version::ExpectedVersion;
