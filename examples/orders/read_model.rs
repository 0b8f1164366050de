//! The order read model and the analytics projection, kept up to date
//! incrementally by folding the global log from a checkpoint.
//!
//! Both are plain folds over `Store::read_all_batched`, filtered to the
//! `order` category: `catch_up` reads only what is after the checkpoint, and
//! re-feeding events that were already applied changes nothing (each event's
//! position is compared with the checkpoint, and its version with the order's).

use std::collections::BTreeMap;

use eventfold::{DomainEvent, Filter, ReadAll, RecordedEvent, Store};
use serde::Serialize;

use super::aggregate::{Item, OrderEvent, Status};

#[derive(Debug, Clone, PartialEq, Serialize)]
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

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
    pub fn recompute(views: &BTreeMap<String, OrderView>) -> Self {
        let mut a = Analytics::default();
        for v in views.values() {
            a.total_orders += 1;
            *a.orders_by_status.entry(v.status).or_default() += 1;
            match v.status {
                Status::Paid | Status::Shipped => {
                    a.paid_orders += 1;
                    a.total_revenue += v.total_amount;
                }
                Status::Cancelled => a.cancelled_revenue += v.total_amount,
                Status::Pending => {}
            }
        }
        a.orders_by_status.retain(|_, n| *n > 0);
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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadModel {
    pub orders: BTreeMap<String, OrderView>,
    pub analytics: Analytics,
    /// Position of the last event applied.
    pub checkpoint: u64,
    pub applied: u64,
}

impl ReadModel {
    /// Applies every order event after the checkpoint; returns how many.
    pub fn catch_up(&mut self, store: &Store) -> eventfold::Result<u64> {
        let from = ReadAll::from_position(self.checkpoint + 1).filter(Filter::new().category("order"));
        let mut n = 0;
        for event in store.read_all_batched(from, 512)? {
            if self.apply(&event?)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Applies one event; returns false when it was already applied.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> eventfold::Result<bool> {
        if recorded.position <= self.checkpoint {
            return Ok(false);
        }
        self.checkpoint = recorded.position;
        let order_id = recorded.stream_id.strip_prefix("order-").unwrap_or(&recorded.stream_id).to_string();
        if self.orders.get(&order_id).is_some_and(|v| v.version >= recorded.version) {
            return Ok(false);
        }
        let event = OrderEvent::decode(&recorded.event_type, &recorded.payload).map_err(|reason| {
            eventfold::Error::Decode {
                position: recorded.position,
                event_type: recorded.event_type.clone(),
                reason,
            }
        })?;
        let view = self.orders.entry(order_id.clone()).or_insert_with(|| OrderView {
            order_id,
            customer_id: String::new(),
            items: Vec::new(),
            status: Status::Pending,
            total_amount: 0,
            payment_id: None,
            shipped_at: None,
            cancelled_at: None,
            version: 0,
        });
        let (old_status, old_total) = (view.status, view.total_amount);
        let existed = view.version > 0;
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
        let (new_status, new_total) = (view.status, view.total_amount);
        if existed {
            self.analytics.leave(old_status, old_total);
        } else {
            self.analytics.total_orders += 1;
        }
        self.analytics.enter(new_status, new_total);
        self.applied += 1;
        Ok(true)
    }
}
