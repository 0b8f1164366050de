//! The bank service's HTTP API: commands on accounts, reads of their state
//! and history, and the whole log as server-sent events.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /accounts/{id}/open` `{"owner": "Ann"}` | opens the account |
//! | `POST /accounts/{id}/deposit` `{"amount": 1250}` | deposits (cents) |
//! | `POST /accounts/{id}/withdraw` `{"amount": 500}` | withdraws; refused beyond the balance |
//! | `GET /accounts/{id}` | the account's state and version |
//! | `GET /accounts/{id}/events` | the account's events, oldest first |
//! | `GET /events[?from=N]` | every event of the log as server-sent events, live |
//!
//! A refused command answers 4xx with `{"error": "...", "code": "..."}`;
//! only a failure of the store answers 5xx. Each server-sent event has the
//! event's global position as its `id`, so a client that lost its
//! connection resumes with `Last-Event-ID: N` (after position N) or
//! `?from=N` (from position N).

// Amounts are cents.
#![allow(clippy::inconsistent_digit_grouping)]

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventfold::{
    Aggregate, CommandError, DomainEvent, Error, EventMetadata, Filter, RecordedEvent, Repository, Store,
    SubscribeFrom,
};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountOpened { owner: String },
    MoneyDeposited { amount: u64 },
    MoneyWithdrawn { amount: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::AccountOpened { .. } => "AccountOpened",
            AccountEvent::MoneyDeposited { .. } => "MoneyDeposited",
            AccountEvent::MoneyWithdrawn { .. } => "MoneyWithdrawn",
        }
    }
}

/// An account's state; amounts are in cents.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub owner: Option<String>,
    pub balance: u64,
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Open { owner: String },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AccountError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("amounts must be positive")]
    ZeroAmount,
    #[error("insufficient funds: balance {balance}, withdrawal {amount}")]
    InsufficientFunds { balance: u64, amount: u64 },
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = AccountError;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::MoneyDeposited { amount } => self.balance = self.balance.saturating_add(*amount),
            AccountEvent::MoneyWithdrawn { amount } => self.balance = self.balance.saturating_sub(*amount),
        }
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { owner } if self.owner.is_none() => {
                Ok(vec![AccountEvent::AccountOpened { owner }])
            }
            AccountCommand::Open { .. } => Err(AccountError::AlreadyOpen),
            _ if self.owner.is_none() => Err(AccountError::NotOpen),
            AccountCommand::Deposit { amount: 0 } | AccountCommand::Withdraw { amount: 0 } => {
                Err(AccountError::ZeroAmount)
            }
            AccountCommand::Deposit { amount } => Ok(vec![AccountEvent::MoneyDeposited { amount }]),
            AccountCommand::Withdraw { amount } if amount > self.balance => {
                Err(AccountError::InsufficientFunds { balance: self.balance, amount })
            }
            AccountCommand::Withdraw { amount } => Ok(vec![AccountEvent::MoneyWithdrawn { amount }]),
        }
    }
}

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct App {
    store: Store,
    accounts: Repository<Account>,
}

/// The service's routes over `store`.
pub fn router(store: Store) -> Router {
    let app = App { accounts: Repository::new(store.clone()), store };
    Router::new()
        .route("/accounts/{id}/open", post(open))
        .route("/accounts/{id}/deposit", post(deposit))
        .route("/accounts/{id}/withdraw", post(withdraw))
        .route("/accounts/{id}", get(account))
        .route("/accounts/{id}/events", get(account_events))
        .route("/events", get(events))
        .with_state(app)
}

/// An error answer: a status and `{"error": message, "code": code}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message, "code": self.code }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            // Shutting down, or too much contention on one account: worth
            // retrying later.
            Error::Closed | Error::RetriesExhausted { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
            }
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
        }
    }
}

impl From<CommandError<AccountError>> for ApiError {
    fn from(e: CommandError<AccountError>) -> Self {
        let refusal = match e {
            CommandError::Store(e) => return e.into(),
            CommandError::Rejected(refusal) => refusal,
        };
        let (status, code) = match &refusal {
            AccountError::AlreadyOpen => (StatusCode::CONFLICT, "already_open"),
            AccountError::NotOpen => (StatusCode::NOT_FOUND, "not_open"),
            AccountError::ZeroAmount => (StatusCode::UNPROCESSABLE_ENTITY, "zero_amount"),
            AccountError::InsufficientFunds { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds")
            }
        };
        ApiError::new(status, code, refusal.to_string())
    }
}

#[derive(Debug, Deserialize)]
pub struct OpenBody {
    pub owner: String,
}

#[derive(Debug, Deserialize)]
pub struct AmountBody {
    pub amount: u64,
}

/// An account as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountView {
    pub id: String,
    pub owner: Option<String>,
    pub balance: u64,
    pub version: u64,
}

async fn open(
    State(app): State<App>,
    Path(id): Path<String>,
    Json(body): Json<OpenBody>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let view = execute(&app, id, AccountCommand::Open { owner: body.owner }).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn deposit(
    State(app): State<App>,
    Path(id): Path<String>,
    Json(body): Json<AmountBody>,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(execute(&app, id, AccountCommand::Deposit { amount: body.amount }).await?))
}

async fn withdraw(
    State(app): State<App>,
    Path(id): Path<String>,
    Json(body): Json<AmountBody>,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(execute(&app, id, AccountCommand::Withdraw { amount: body.amount }).await?))
}

/// Runs a command on account `id` as a task: the turn for the account,
/// the append and any retry are awaited, so no worker thread is blocked.
async fn execute(app: &App, id: String, command: AccountCommand) -> Result<AccountView, ApiError> {
    let executed = app.accounts.execute_async(&id, command, EventMetadata::new()).await?;
    Ok(AccountView {
        id,
        owner: executed.state.owner,
        balance: executed.state.balance,
        version: executed.version,
    })
}

async fn account(State(app): State<App>, Path(id): Path<String>) -> Result<Json<AccountView>, ApiError> {
    // A load reads LMDB without waiting for the writer: cheap enough to do
    // on the async worker.
    let loaded = app.accounts.load(&id)?;
    if loaded.version == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_open", "the account is not open"));
    }
    Ok(Json(AccountView {
        id,
        owner: loaded.state.owner,
        balance: loaded.state.balance,
        version: loaded.version,
    }))
}

/// One stored event as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventView {
    pub position: u64,
    pub stream_id: String,
    pub version: u64,
    pub event_id: String,
    pub event_type: String,
    pub recorded_at: u64,
    pub data: Value,
}

impl From<&RecordedEvent> for EventView {
    fn from(e: &RecordedEvent) -> Self {
        // Payloads not written as JSON are shown as null.
        let data = serde_json::from_slice(&e.payload).unwrap_or(Value::Null);
        EventView {
            position: e.position,
            stream_id: e.stream_id.clone(),
            version: e.version,
            event_id: e.event_id.to_string(),
            event_type: e.event_type.clone(),
            recorded_at: e.recorded_at,
            data,
        }
    }
}

async fn account_events(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let history = app.accounts.history(&id)?;
    if history.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_open", "the account is not open"));
    }
    Ok(Json(history.iter().map(|e| EventView::from(&e.recorded)).collect()))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// The first position to send (inclusive).
    pub from: Option<u64>,
}

/// The log as server-sent events, from the start (or `?from=N`, or after
/// the `Last-Event-ID` a reconnecting client sends), then live: the
/// subscription's stream wakes on each commit, so an idle connection costs
/// no thread and no polling.
async fn events(
    State(app): State<App>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::trim);
    let from = match (last_event_id, query.from) {
        (Some(id), _) => match id.parse::<u64>() {
            Ok(p) => SubscribeFrom::AfterPosition(p),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_last_event_id",
                    "Last-Event-ID must be a position",
                ));
            }
        },
        (None, Some(p)) => SubscribeFrom::AtPosition(p),
        (None, None) => SubscribeFrom::Start,
    };
    let stream = app.store.subscribe(from, Filter::new())?.into_stream();
    // A failed read ends the stream after an `error` event; the client
    // reconnects with its Last-Event-ID. The store closing ends it quietly.
    let events = stream.scan(false, |failed, item| {
        let event = match item {
            _ if *failed => None,
            Ok(e) => Some(
                Event::default()
                    .id(e.position.to_string())
                    .event(e.event_type.as_str())
                    .json_data(EventView::from(&e))
                    .unwrap_or_else(|err| Event::default().event("error").data(err.to_string())),
            ),
            Err(err) => {
                *failed = true;
                Some(Event::default().event("error").data(err.to_string()))
            }
        };
        std::future::ready(event.map(Ok))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
