//! The order aggregate and its rules.

use eventfold::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: u64,
}

impl Item {
    pub fn total(&self) -> u64 {
        self.unit_price * u64::from(self.quantity)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    OrderPlaced { customer_id: String },
    ItemAdded { item: Item },
    PaymentProcessed { payment_id: String, amount: u64 },
    PaymentRefunded { payment_id: String, amount: u64 },
    OrderShipped,
    OrderCancelled { reason: String },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::ItemAdded { .. } => "ItemAdded",
            OrderEvent::PaymentProcessed { .. } => "PaymentProcessed",
            OrderEvent::PaymentRefunded { .. } => "PaymentRefunded",
            OrderEvent::OrderShipped => "OrderShipped",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Pending,
    Paid,
    Shipped,
    Cancelled,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub placed: bool,
    pub customer_id: String,
    pub items: Vec<Item>,
    pub status: Status,
    pub payment_id: Option<String>,
}

impl Order {
    pub fn total(&self) -> u64 {
        self.items.iter().map(Item::total).sum()
    }
}

#[derive(Debug, Clone)]
pub enum OrderCommand {
    PlaceOrder { customer_id: String },
    AddItem { item: Item },
    ProcessPayment { payment_id: String },
    RefundPayment,
    ShipOrder,
    CancelOrder { reason: String },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum OrderError {
    #[error("the order is already placed")]
    AlreadyPlaced,
    #[error("no such order")]
    NotPlaced,
    #[error("cannot add items to a {} order", .0.name())]
    ItemsClosed(Status),
    #[error("an item needs a quantity of at least 1")]
    ZeroQuantity,
    #[error("cannot pay for a cancelled order")]
    PaymentOnCancelled,
    #[error("the order is already paid")]
    AlreadyPaid,
    #[error("cannot pay for an order without items")]
    NothingToPay,
    #[error("no payment to refund")]
    NothingToRefund,
    #[error("cannot refund a shipped order")]
    RefundAfterShipping,
    #[error("cannot ship before payment")]
    ShipBeforePayment,
    #[error("cannot ship a {} order", .0.name())]
    CannotShip(Status),
    #[error("cannot cancel a shipped order")]
    CancelShipped,
    #[error("the order is already cancelled")]
    AlreadyCancelled,
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Event = OrderEvent;
    type Command = OrderCommand;
    type Error = OrderError;

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { customer_id } => {
                self.placed = true;
                self.customer_id = customer_id.clone();
            }
            OrderEvent::ItemAdded { item } => self.items.push(item.clone()),
            OrderEvent::PaymentProcessed { payment_id, .. } => {
                self.status = Status::Paid;
                self.payment_id = Some(payment_id.clone());
            }
            OrderEvent::PaymentRefunded { .. } => {
                self.status = Status::Pending;
                self.payment_id = None;
            }
            OrderEvent::OrderShipped => self.status = Status::Shipped,
            OrderEvent::OrderCancelled { .. } => self.status = Status::Cancelled,
        }
    }

    fn handle(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderCommand as C;
        use OrderError as E;
        if let C::PlaceOrder { customer_id } = command {
            return if self.placed {
                Err(E::AlreadyPlaced)
            } else {
                Ok(vec![OrderEvent::OrderPlaced { customer_id }])
            };
        }
        if !self.placed {
            return Err(E::NotPlaced);
        }
        let event = match command {
            C::PlaceOrder { .. } => return Err(E::AlreadyPlaced),
            C::AddItem { item } => match self.status {
                Status::Cancelled | Status::Shipped => return Err(E::ItemsClosed(self.status)),
                _ if item.quantity == 0 => return Err(E::ZeroQuantity),
                _ => OrderEvent::ItemAdded { item },
            },
            C::ProcessPayment { payment_id } => match self.status {
                Status::Cancelled => return Err(E::PaymentOnCancelled),
                Status::Paid | Status::Shipped => return Err(E::AlreadyPaid),
                Status::Pending if self.items.is_empty() => return Err(E::NothingToPay),
                Status::Pending => OrderEvent::PaymentProcessed { payment_id, amount: self.total() },
            },
            C::RefundPayment => match (&self.status, &self.payment_id) {
                (Status::Shipped, _) => return Err(E::RefundAfterShipping),
                (Status::Paid, Some(p)) => {
                    OrderEvent::PaymentRefunded { payment_id: p.clone(), amount: self.total() }
                }
                _ => return Err(E::NothingToRefund),
            },
            C::ShipOrder => match self.status {
                Status::Pending => return Err(E::ShipBeforePayment),
                Status::Paid => OrderEvent::OrderShipped,
                other => return Err(E::CannotShip(other)),
            },
            C::CancelOrder { reason } => match self.status {
                Status::Shipped => return Err(E::CancelShipped),
                Status::Cancelled => return Err(E::AlreadyCancelled),
                _ => OrderEvent::OrderCancelled { reason },
            },
        };
        Ok(vec![event])
    }
}
