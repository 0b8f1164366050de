//! The order read model and the analytics projection: two `Projection`s the
//! store's `ProjectionRunner` keeps up to date incrementally from their
//! checkpoints, and rebuilds from position 1 on demand.
//!
//! Both are idempotent: an event whose version the order's document already
//! has is skipped, so applying an event twice changes nothing
//! ([`OrderViewsTwice`] shows it).

use std::collections::BTreeMap;

use eventfold::{DomainEvent, Filter, Projection, ProjectionContext, RecordedEvent};
use serde::{Deserialize, Serialize};

use super::aggregate::{Item, OrderEvent, Status};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<Item>,
    pub status: Status,
    pub total_amount: u64,
    pub payment_id: Option<String>,
    pub shipped_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub version: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Analytics {
    /// Total of the orders that are paid or shipped.
    pub total_revenue: u64,
    pub total_orders: u64,
    /// Orders that are paid or shipped.
    pub paid_orders: u64,
    pub orders_by_status: BTreeMap<Status, u64>,
    /// Total of the cancelled orders.
    pub cancelled_revenue: u64,
}

impl Analytics {
    pub fn average_order_value(&self) -> u64 {
        self.total_revenue.checked_div(self.paid_orders).unwrap_or(0)
    }

    /// The same figures computed from scratch, to check the incremental ones.
    pub fn recompute<'a>(views: impl IntoIterator<Item = &'a OrderView>) -> Self {
        let mut a = Analytics::default();
        for v in views {
            a.total_orders += 1;
            a.enter(v.status, v.total_amount);
        }
        a
    }

    fn leave(&mut self, status: Status, total: u64) {
        if let Some(n) = self.orders_by_status.get_mut(&status) {
            *n -= 1;
            if *n == 0 {
                self.orders_by_status.remove(&status);
            }
        }
        match status {
            Status::Paid | Status::Shipped => {
                self.paid_orders -= 1;
                self.total_revenue -= total;
            }
            Status::Cancelled => self.cancelled_revenue -= total,
            Status::Pending => {}
        }
    }

    fn enter(&mut self, status: Status, total: u64) {
        *self.orders_by_status.entry(status).or_default() += 1;
        match status {
            Status::Paid | Status::Shipped => {
                self.paid_orders += 1;
                self.total_revenue += total;
            }
            Status::Cancelled => self.cancelled_revenue += total,
            Status::Pending => {}
        }
    }
}

/// The key of an order's document: `order/<id>`.
pub fn order_key(order_id: &str) -> String {
    format!("order/{order_id}")
}

/// Folds `recorded` into the view of its order, unless the view already has
/// it. Returns the view before and after, or `None` when it was skipped.
fn fold(
    ctx: &mut ProjectionContext<'_>,
    recorded: &RecordedEvent,
) -> eventfold::Result<Option<(Option<OrderView>, OrderView)>> {
    let order_id = recorded.stream_id.strip_prefix("order-").unwrap_or(&recorded.stream_id);
    let key = order_key(order_id);
    let old: Option<OrderView> = ctx.get(&key)?;
    if old.as_ref().is_some_and(|v| v.version >= recorded.version) {
        return Ok(None);
    }
    let event = OrderEvent::decode(&recorded.event_type, &recorded.payload).map_err(|reason| {
        eventfold::Error::Decode {
            stream: recorded.stream_id.clone(),
            position: recorded.position,
            event_type: recorded.event_type.clone(),
            reason,
        }
    })?;
    let mut view =
        old.clone().unwrap_or_else(|| OrderView { order_id: order_id.to_string(), ..OrderView::default() });
    match event {
        OrderEvent::OrderPlaced { customer_id } => view.customer_id = customer_id,
        OrderEvent::ItemAdded { item } => {
            view.total_amount += item.total();
            view.items.push(item);
        }
        OrderEvent::PaymentProcessed { payment_id, .. } => {
            view.status = Status::Paid;
            view.payment_id = Some(payment_id);
        }
        OrderEvent::PaymentRefunded { .. } => {
            view.status = Status::Pending;
            view.payment_id = None;
        }
        OrderEvent::OrderShipped => {
            view.status = Status::Shipped;
            view.shipped_at = Some(recorded.recorded_at);
        }
        OrderEvent::OrderCancelled { .. } => {
            view.status = Status::Cancelled;
            view.cancelled_at = Some(recorded.recorded_at);
        }
    }
    view.version = recorded.version;
    ctx.put(&key, &view)?;
    Ok(Some((old, view)))
}

/// One document per order: `order/<id>` → [`OrderView`].
pub struct OrderViews;

impl Projection for OrderViews {
    const NAME: &'static str = "order_views";
    const VERSION: u32 = 1;

    fn filter(&self) -> Filter {
        Filter::new().category("order")
    }

    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> eventfold::Result<()> {
        fold(ctx, event).map(|_| ())
    }
}

/// The store-wide figures, in the document `totals`. It keeps its own copy of
/// each order's view (status and total before the event) so it moves an
/// order between statuses without reading the other projection.
pub struct OrderAnalytics;

impl Projection for OrderAnalytics {
    const NAME: &'static str = "order_analytics";
    const VERSION: u32 = 1;

    fn filter(&self) -> Filter {
        Filter::new().category("order")
    }

    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> eventfold::Result<()> {
        let Some((old, new)) = fold(ctx, event)? else { return Ok(()) };
        ctx.update("totals", |a: &mut Analytics| {
            match &old {
                Some(o) => a.leave(o.status, o.total_amount),
                None => a.total_orders += 1,
            }
            a.enter(new.status, new.total_amount);
        })
    }
}

/// [`OrderViews`] with every event applied twice in a row: its model must
/// equal the one applied once.
pub struct OrderViewsTwice;

impl Projection for OrderViewsTwice {
    const NAME: &'static str = "order_views_twice";
    const VERSION: u32 = 1;

    fn filter(&self) -> Filter {
        Filter::new().category("order")
    }

    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> eventfold::Result<()> {
        OrderViews.apply(ctx, event)?;
        OrderViews.apply(ctx, event)
    }
}
