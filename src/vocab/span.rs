//! Event metadata from the current `tracing` span (feature `tracing-span`).
//!
//! `tracing` has no trace ids of its own, and a span's field values are
//! seen only by the subscriber. So a service records the ids it carries as
//! span fields, and [`SpanMetadataLayer`], added to a subscriber built on
//! `tracing_subscriber`'s registry, keeps the ones eventfold knows
//! (`traceparent`, `correlation_id`, `causation_id`, `user_id`) with each
//! span; [`EventMetadata::from_current_span`] reads them back from the
//! current span and its parents.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, Registry};

use super::EventMetadata;
use super::metadata::{check_id, check_traceparent};

/// A `tracing_subscriber` layer that keeps, with each span, the span
/// fields named `traceparent`, `correlation_id`, `causation_id` and
/// `user_id`, for [`EventMetadata::from_current_span`].
///
/// Record them as strings or with `%` (their `Display` form): a field
/// recorded with `?` is kept in its `Debug` form, quotes included.
///
/// ```
/// use eventfold::{EventMetadata, SpanMetadataLayer};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let subscriber = tracing_subscriber::registry().with(SpanMetadataLayer::new());
/// tracing::subscriber::with_default(subscriber, || {
///     let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
///     let request = tracing::info_span!("request", traceparent = tp, correlation_id = "req-7f3a");
///     let _in = request.enter();
///     let meta = EventMetadata::from_current_span().user_id("ann");
///     assert_eq!(meta.correlation_id.as_deref(), Some("req-7f3a"));
///     assert_eq!(meta.traceparent.as_deref(), Some(tp));
/// });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanMetadataLayer {
    _private: (),
}

impl SpanMetadataLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The fields of one span that eventfold reads.
#[derive(Debug, Default)]
struct SpanFields {
    correlation_id: Option<String>,
    causation_id: Option<String>,
    user_id: Option<String>,
    traceparent: Option<String>,
}

impl SpanFields {
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        match name {
            "correlation_id" => Some(&mut self.correlation_id),
            "causation_id" => Some(&mut self.causation_id),
            "user_id" => Some(&mut self.user_id),
            "traceparent" => Some(&mut self.traceparent),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.user_id.is_none()
            && self.traceparent.is_none()
    }
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(slot) = self.slot(field.name()) {
            *slot = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(slot) = self.slot(field.name()) {
            *slot = Some(format!("{value:?}"));
        }
    }
}

impl<S> Layer<S> for SpanMetadataLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id)
            && !fields.is_empty()
        {
            span.extensions_mut().replace(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(fields);
        } else {
            let mut fields = SpanFields::default();
            values.record(&mut fields);
            if !fields.is_empty() {
                extensions.replace(fields);
            }
        }
    }
}

impl EventMetadata {
    /// Metadata filled from the current `tracing` span: its `traceparent`,
    /// `correlation_id`, `causation_id` and `user_id` fields, each from the
    /// innermost span (the current one, then its parents) that records it.
    ///
    /// The fields are kept by [`SpanMetadataLayer`], which must be part of
    /// the default subscriber, built on `tracing_subscriber`'s registry;
    /// without it, or outside any span, the metadata is empty. A value
    /// that breaks the metadata rules (see [`EventMetadata`]) is left out,
    /// so a span's bad field never fails an append. With OpenTelemetry,
    /// whose context holds the trace rather than a span field, format the
    /// context's `traceparent` and set it with
    /// [`traceparent`](Self::traceparent) instead.
    pub fn from_current_span() -> Self {
        EventMetadata::new().with_current_span()
    }

    /// Fills the fields that are not set yet from the current `tracing`
    /// span, as [`from_current_span`](Self::from_current_span) does.
    pub fn with_current_span(mut self) -> Self {
        let span = tracing::Span::current();
        span.with_subscriber(|(id, dispatch)| fill_from_span(&mut self, id, dispatch));
        self
    }
}

fn fill_from_span(meta: &mut EventMetadata, id: &Id, dispatch: &Dispatch) {
    let Some(registry) = dispatch.downcast_ref::<Registry>() else { return };
    let Some(span) = registry.span(id) else { return };
    for s in span.scope() {
        let extensions = s.extensions();
        let Some(fields) = extensions.get::<SpanFields>() else { continue };
        let id_ok = |field: &'static str| move |v: &&String| check_id(field, v).is_ok();
        if meta.correlation_id.is_none() {
            meta.correlation_id = fields.correlation_id.as_ref().filter(id_ok("correlation id")).cloned();
        }
        if meta.causation_id.is_none() {
            meta.causation_id = fields.causation_id.as_ref().filter(id_ok("causation id")).cloned();
        }
        if meta.user_id.is_none() {
            meta.user_id = fields.user_id.as_ref().filter(id_ok("user id")).cloned();
        }
        if meta.traceparent.is_none() {
            meta.traceparent = fields.traceparent.as_ref().filter(|v| check_traceparent(v).is_ok()).cloned();
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with_layer<T>(f: impl FnOnce() -> T) -> T {
        tracing::subscriber::with_default(tracing_subscriber::registry().with(SpanMetadataLayer::new()), f)
    }

    #[test]
    fn the_innermost_span_that_records_a_field_wins() {
        with_layer(|| {
            let outer = tracing::info_span!(
                "request",
                traceparent = TP,
                correlation_id = "req-7f3a",
                user_id = "ann"
            );
            let _o = outer.enter();
            let id = uuid::Uuid::now_v7();
            let inner =
                tracing::info_span!("handler", correlation_id = %id, causation_id = tracing::field::Empty);
            let _i = inner.enter();
            let m = EventMetadata::from_current_span();
            assert_eq!(m.correlation_id, Some(id.to_string()));
            assert_eq!(
                (m.causation_id, m.user_id.as_deref(), m.traceparent.as_deref()),
                (None, Some("ann"), Some(TP))
            );
            inner.record("causation_id", "cmd-9");
            assert_eq!(EventMetadata::from_current_span().causation_id.as_deref(), Some("cmd-9"));
            // Fields already set are kept.
            let m = EventMetadata::new().correlation_id("mine").with_current_span();
            assert_eq!(
                (m.correlation_id.as_deref(), m.causation_id.as_deref()),
                (Some("mine"), Some("cmd-9"))
            );
        });
    }

    #[test]
    fn invalid_values_are_left_out_and_no_layer_means_no_fields() {
        with_layer(|| {
            let span = tracing::info_span!("request", traceparent = "not one", correlation_id = "a\nb");
            let _s = span.enter();
            assert_eq!(EventMetadata::from_current_span(), EventMetadata::new());
            let m = EventMetadata::from_current_span();
            assert!(m.check(false).is_ok());
        });
        with_layer(|| assert_eq!(EventMetadata::from_current_span(), EventMetadata::new()));
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let span = tracing::info_span!("request", correlation_id = "req-7f3a");
            let _s = span.enter();
            assert_eq!(EventMetadata::from_current_span(), EventMetadata::new());
        });
    }
}
