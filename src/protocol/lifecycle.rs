//! The protocol's part of forgetting: `delete_stream`,
//! `set_stream_retention` and `get_stream_lifecycle` (see
//! `docs/forgetting.md`).

use super::wire::{DeleteStreamRequest, Reply, SetStreamRetentionRequest};
use crate::store::Store;
use crate::vocab::{Result, StreamRetention};

/// `delete_stream`: soft, or for good with `hard`.
pub(super) fn delete_stream(store: &Store, r: &DeleteStreamRequest) -> Result<Reply> {
    let meta = r.metadata.clone().map(Into::into).unwrap_or_default();
    let recorded = if r.hard {
        store.tombstone_stream(&r.aggregate_id, &r.reason, meta)?
    } else {
        store.delete_stream(&r.aggregate_id, &r.reason, meta)?
    };
    Ok(Reply::StreamDeleted {
        in_reply_to: r.msg_id,
        aggregate_id: r.aggregate_id.clone(),
        hard: r.hard,
        sequence_number: recorded.first_position,
    })
}

/// `set_stream_retention`, answered with the stream's lifecycle after it.
pub(super) fn set_stream_retention(store: &Store, r: &SetStreamRetentionRequest) -> Result<Reply> {
    let mut retention = StreamRetention::new();
    if let Some(v) = r.truncate_before {
        retention = retention.truncate_before(v);
    }
    if let Some(n) = r.max_count {
        retention = retention.max_count(n);
    }
    if let Some(s) = r.max_age_seconds {
        retention = retention.max_age(std::time::Duration::from_secs(s));
    }
    let meta = r.metadata.clone().map(Into::into).unwrap_or_default();
    let recorded = store.set_stream_retention(&r.aggregate_id, retention, &r.reason, meta)?;
    lifecycle(store, &r.aggregate_id, r.msg_id, Some(recorded.first_position))
}

/// `get_stream_lifecycle`.
pub(super) fn lifecycle(store: &Store, stream: &str, msg_id: Option<u64>, at: Option<u64>) -> Result<Reply> {
    let l = store.stream_lifecycle(stream)?;
    Ok(Reply::StreamLifecycle {
        in_reply_to: msg_id,
        aggregate_id: stream.to_string(),
        deleted: l.deleted,
        tombstoned: l.tombstoned,
        truncate_before: l.truncate_before,
        max_count: l.max_count,
        max_age_seconds: l.max_age.map(|d| d.as_secs()),
        sequence_number: at,
    })
}
