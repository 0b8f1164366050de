//! A saga orchestrator: payment -> inventory reservation -> shipping.
//!
//! Each step has an execute and a compensate action. When a step fails, the
//! steps already completed are compensated in reverse order, then the order
//! is cancelled. The saga's own progress is an event stream (`saga-{order}`),
//! written with the expected version like any aggregate, so a process that
//! stops mid-saga picks it up on restart with [`Orchestrator::run`]: it
//! resumes the next step, or goes on compensating. Every action is
//! idempotent, because a crash can fall between doing a step and recording it.

use eventfold::{Aggregate, CommandError, DomainEvent, EventMetadata, Repository};
use serde::{Deserialize, Serialize};

use super::aggregate::{Order, OrderCommand, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Payment,
    Inventory,
    Shipping,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Payment, Step::Inventory, Step::Shipping];

    pub fn name(self) -> &'static str {
        match self {
            Step::Payment => "payment",
            Step::Inventory => "inventory",
            Step::Shipping => "shipping",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SagaEvent {
    SagaStarted { order_id: String },
    StepCompleted { step: Step },
    StepFailed { step: Step, reason: String },
    StepCompensated { step: Step },
    SagaCompleted,
    SagaCompensated,
    SagaFailed { reason: String },
}

impl DomainEvent for SagaEvent {
    fn event_type(&self) -> &'static str {
        match self {
            SagaEvent::SagaStarted { .. } => "SagaStarted",
            SagaEvent::StepCompleted { .. } => "StepCompleted",
            SagaEvent::StepFailed { .. } => "StepFailed",
            SagaEvent::StepCompensated { .. } => "StepCompensated",
            SagaEvent::SagaCompleted => "SagaCompleted",
            SagaEvent::SagaCompensated => "SagaCompensated",
            SagaEvent::SagaFailed { .. } => "SagaFailed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SagaStatus {
    #[default]
    NotStarted,
    Pending,
    PaymentCompleted,
    InventoryReserved,
    Completed,
    Compensating,
    Compensated,
    Failed,
}

impl SagaStatus {
    pub fn name(self) -> &'static str {
        match self {
            SagaStatus::NotStarted => "not_started",
            SagaStatus::Pending => "pending",
            SagaStatus::PaymentCompleted => "payment_completed",
            SagaStatus::InventoryReserved => "inventory_reserved",
            SagaStatus::Completed => "completed",
            SagaStatus::Compensating => "compensating",
            SagaStatus::Compensated => "compensated",
            SagaStatus::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Saga {
    pub order_id: String,
    pub status: SagaStatus,
    pub completed: Vec<Step>,
    pub compensated: Vec<Step>,
    pub failure: Option<String>,
}

impl Saga {
    fn next_step(&self) -> Option<Step> {
        Step::ALL.get(self.completed.len()).copied()
    }

    /// The most recently completed step not yet compensated.
    fn next_compensation(&self) -> Option<Step> {
        self.completed.iter().rev().find(|s| !self.compensated.contains(s)).copied()
    }
}

#[derive(Debug, Clone)]
pub enum SagaCommand {
    Start { order_id: String },
    Complete(Step),
    Fail(Step, String),
    Compensate(Step),
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SagaError {
    #[error("the saga is already started")]
    AlreadyStarted,
    #[error("the saga is {}, it takes no more steps", .0.name())]
    Finished(SagaStatus),
    #[error("expected step {expected:?}, got {got:?}")]
    OutOfOrder { expected: Option<Step>, got: Step },
}

impl Aggregate for Saga {
    const CATEGORY: &'static str = "saga";
    type Event = SagaEvent;
    type Command = SagaCommand;
    type Error = SagaError;

    fn apply(&mut self, event: &SagaEvent) {
        match event {
            SagaEvent::SagaStarted { order_id } => {
                self.order_id = order_id.clone();
                self.status = SagaStatus::Pending;
            }
            SagaEvent::StepCompleted { step } => {
                self.completed.push(*step);
                self.status = match step {
                    Step::Payment => SagaStatus::PaymentCompleted,
                    Step::Inventory => SagaStatus::InventoryReserved,
                    Step::Shipping => self.status,
                };
            }
            SagaEvent::StepFailed { reason, .. } => {
                self.failure = Some(reason.clone());
                if !self.completed.is_empty() {
                    self.status = SagaStatus::Compensating;
                }
            }
            SagaEvent::StepCompensated { step } => self.compensated.push(*step),
            SagaEvent::SagaCompleted => self.status = SagaStatus::Completed,
            SagaEvent::SagaCompensated => self.status = SagaStatus::Compensated,
            SagaEvent::SagaFailed { .. } => self.status = SagaStatus::Failed,
        }
    }

    fn handle(&self, command: SagaCommand) -> Result<Vec<SagaEvent>, SagaError> {
        if let SagaCommand::Start { order_id } = command {
            return match self.status {
                SagaStatus::NotStarted => Ok(vec![SagaEvent::SagaStarted { order_id }]),
                _ => Err(SagaError::AlreadyStarted),
            };
        }
        if self.status.is_terminal() {
            return Err(SagaError::Finished(self.status));
        }
        let compensating = self.status == SagaStatus::Compensating;
        match command {
            SagaCommand::Start { .. } => Err(SagaError::AlreadyStarted),
            SagaCommand::Complete(step) | SagaCommand::Fail(step, _)
                if compensating || self.next_step() != Some(step) =>
            {
                Err(SagaError::OutOfOrder { expected: self.next_step(), got: step })
            }
            SagaCommand::Complete(step) => {
                let mut events = vec![SagaEvent::StepCompleted { step }];
                if step == Step::Shipping {
                    events.push(SagaEvent::SagaCompleted);
                }
                Ok(events)
            }
            SagaCommand::Fail(step, reason) => {
                let mut events = vec![SagaEvent::StepFailed { step, reason: reason.clone() }];
                if self.completed.is_empty() {
                    events.push(SagaEvent::SagaFailed { reason });
                }
                Ok(events)
            }
            SagaCommand::Compensate(step) if !compensating || self.next_compensation() != Some(step) => {
                Err(SagaError::OutOfOrder { expected: self.next_compensation(), got: step })
            }
            SagaCommand::Compensate(step) => {
                let mut events = vec![SagaEvent::StepCompensated { step }];
                if self.completed.len() == self.compensated.len() + 1 {
                    events.push(SagaEvent::SagaCompensated);
                }
                Ok(events)
            }
        }
    }
}

/// The inventory service's side: one reservation per order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReservationEvent {
    StockReserved { items: Vec<(String, u32)> },
    StockReleased,
}

impl DomainEvent for ReservationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            ReservationEvent::StockReserved { .. } => "StockReserved",
            ReservationEvent::StockReleased => "StockReleased",
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Reservation {
    pub reserved: Vec<(String, u32)>,
    pub released: bool,
}

#[derive(Debug, Clone)]
pub enum ReservationCommand {
    Reserve(Vec<(String, u32)>),
    Release,
}

impl Aggregate for Reservation {
    const CATEGORY: &'static str = "reservation";
    type Event = ReservationEvent;
    type Command = ReservationCommand;
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: &ReservationEvent) {
        match event {
            ReservationEvent::StockReserved { items } => self.reserved = items.clone(),
            ReservationEvent::StockReleased => self.released = true,
        }
    }

    /// Both commands are idempotent: a repeat decides nothing.
    fn handle(&self, command: ReservationCommand) -> Result<Vec<ReservationEvent>, Self::Error> {
        Ok(match command {
            ReservationCommand::Reserve(_) if !self.reserved.is_empty() => Vec::new(),
            ReservationCommand::Reserve(items) => vec![ReservationEvent::StockReserved { items }],
            ReservationCommand::Release if self.reserved.is_empty() || self.released => Vec::new(),
            ReservationCommand::Release => vec![ReservationEvent::StockReleased],
        })
    }
}

/// Where a run is made to fail or stop, to show recovery.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// This step's execute action fails.
    pub fail_at: Option<Step>,
    /// The process "dies" right after recording this step's completion.
    pub crash_after: Option<Step>,
    /// The process "dies" right after recording its first compensation.
    pub crash_while_compensating: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Finished(SagaStatus),
    /// The run stopped as if the process had died; run it again to recover.
    Crashed,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn to_box<E: std::error::Error + Send + Sync + 'static>(e: CommandError<E>) -> BoxError {
    Box::new(e)
}

pub struct Orchestrator {
    pub orders: Repository<Order>,
    pub sagas: Repository<Saga>,
    pub reservations: Repository<Reservation>,
    pub log: Vec<String>,
}

impl Orchestrator {
    fn say(&mut self, order_id: &str, line: String) {
        let line = format!("  [saga {order_id}] {line}");
        println!("{line}");
        self.log.push(line);
    }

    /// Starts the saga for `order_id` if it has not started, then drives it
    /// until it finishes (or until an injected crash).
    pub fn run(&mut self, order_id: &str, faults: Faults) -> Result<RunOutcome, BoxError> {
        let meta = EventMetadata::new().user_id("saga-orchestrator");
        if self.sagas.load(order_id)?.state.status == SagaStatus::NotStarted {
            self.sagas
                .execute(order_id, SagaCommand::Start { order_id: order_id.to_string() }, meta.clone())
                .map_err(to_box)?;
            self.say(order_id, "started".into());
        } else {
            let s = self.sagas.load(order_id)?.state;
            self.say(order_id, format!("resumed in state {}", s.status.name()));
        }
        loop {
            let saga = self.sagas.load(order_id)?.state;
            match saga.status {
                SagaStatus::Completed => {
                    self.say(order_id, "state completed".into());
                    return Ok(RunOutcome::Finished(saga.status));
                }
                SagaStatus::Compensated | SagaStatus::Failed => {
                    self.ensure_cancelled(order_id, &meta)?;
                    self.say(order_id, format!("state {}", saga.status.name()));
                    return Ok(RunOutcome::Finished(saga.status));
                }
                SagaStatus::Compensating => {
                    let Some(step) = saga.next_compensation() else {
                        return Err("compensating with nothing left to compensate".into());
                    };
                    self.compensate(order_id, step, &meta)?;
                    self.sagas
                        .execute(order_id, SagaCommand::Compensate(step), meta.clone())
                        .map_err(to_box)?;
                    self.say(order_id, format!("{}: compensated", step.name()));
                    if faults.crash_while_compensating {
                        self.say(order_id, "*** process crashed while compensating ***".into());
                        return Ok(RunOutcome::Crashed);
                    }
                }
                _ => {
                    let Some(step) = saga.next_step() else {
                        return Err("every step completed but the saga is not".into());
                    };
                    let result = if faults.fail_at == Some(step) {
                        Err(format!("{} service unavailable (injected)", step.name()))
                    } else {
                        self.execute(order_id, step, &meta)
                    };
                    match result {
                        Ok(()) => {
                            self.sagas
                                .execute(order_id, SagaCommand::Complete(step), meta.clone())
                                .map_err(to_box)?;
                            self.say(order_id, format!("{}: done", step.name()));
                            if faults.crash_after == Some(step) {
                                self.say(order_id, format!("*** process crashed after {} ***", step.name()));
                                return Ok(RunOutcome::Crashed);
                            }
                        }
                        Err(reason) => {
                            self.say(order_id, format!("{}: failed ({reason})", step.name()));
                            self.sagas
                                .execute(order_id, SagaCommand::Fail(step, reason), meta.clone())
                                .map_err(to_box)?;
                            let status = self.sagas.load(order_id)?.state.status;
                            if !status.is_terminal() {
                                self.say(order_id, format!("state {}", status.name()));
                            }
                        }
                    }
                }
            }
        }
    }

    /// A step's execute action. Errors are the failure reason.
    fn execute(&mut self, order_id: &str, step: Step, meta: &EventMetadata) -> Result<(), String> {
        let order = self.orders.load(order_id).map_err(|e| e.to_string())?.state;
        match step {
            Step::Payment => {
                let payment_id = format!("pay-{order_id}");
                if order.payment_id.as_deref() == Some(payment_id.as_str()) {
                    return Ok(()); // done before a crash
                }
                self.orders
                    .execute(order_id, OrderCommand::ProcessPayment { payment_id }, meta.clone())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Step::Inventory => {
                let items = order.items.iter().map(|i| (i.sku.clone(), i.quantity)).collect();
                self.reservations
                    .execute(order_id, ReservationCommand::Reserve(items), meta.clone())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Step::Shipping => {
                if order.status == Status::Shipped {
                    return Ok(());
                }
                self.orders
                    .execute(order_id, OrderCommand::ShipOrder, meta.clone())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }

    fn compensate(&mut self, order_id: &str, step: Step, meta: &EventMetadata) -> Result<(), BoxError> {
        match step {
            Step::Payment => {
                if self.orders.load(order_id)?.state.status == Status::Paid {
                    self.orders
                        .execute(order_id, OrderCommand::RefundPayment, meta.clone())
                        .map_err(to_box)?;
                }
                self.say(order_id, "payment: refund".into());
            }
            Step::Inventory => {
                self.reservations
                    .execute(order_id, ReservationCommand::Release, meta.clone())
                    .map_err(to_box)?;
                self.say(order_id, "inventory: release".into());
            }
            // Shipping is the last step: when it completes the saga is done,
            // so it is never compensated.
            Step::Shipping => {}
        }
        Ok(())
    }

    fn ensure_cancelled(&mut self, order_id: &str, meta: &EventMetadata) -> Result<(), BoxError> {
        if self.orders.load(order_id)?.state.status != Status::Cancelled {
            let reason = "saga did not complete".to_string();
            self.orders
                .execute(order_id, OrderCommand::CancelOrder { reason }, meta.clone())
                .map_err(to_box)?;
            self.say(order_id, "order cancelled".into());
        }
        Ok(())
    }
}
