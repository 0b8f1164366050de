//! Given / when / then tests for aggregate rules, without a store.
//!
//! *Given* the events that already happened, *when* a command arrives,
//! *then* these events are decided, or this error. Every event, given or
//! decided, is also sent through [`DomainEvent::encode`] and
//! [`DomainEvent::decode`], so a serde mapping that would not survive the
//! store fails the test too.
//!
//! The `then_*` methods panic with a readable message on a mismatch, like
//! `assert_eq!`: they are meant for `#[test]` functions.
//!
//! ```
//! # use eventfold::{Aggregate, DomainEvent};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # enum Ev { Opened, Closed }
//! # impl DomainEvent for Ev {
//! #     fn event_type(&self) -> &'static str { match self { Ev::Opened => "Opened", Ev::Closed => "Closed" } }
//! # }
//! # #[derive(Debug, thiserror::Error, PartialEq)]
//! # #[error("door is already closed")]
//! # struct AlreadyClosed;
//! # #[derive(Debug, Default, Serialize, Deserialize)]
//! # struct Door { open: bool }
//! # impl Aggregate for Door {
//! #     const CATEGORY: &'static str = "door";
//! #     type Event = Ev;
//! #     type Command = ();
//! #     type Error = AlreadyClosed;
//! #     fn apply(&mut self, e: &Ev) { self.open = matches!(e, Ev::Opened); }
//! #     fn handle(&self, _: ()) -> Result<Vec<Ev>, AlreadyClosed> {
//! #         if self.open { Ok(vec![Ev::Closed]) } else { Err(AlreadyClosed) }
//! #     }
//! # }
//! use eventfold::testing::AggregateTest;
//!
//! AggregateTest::<Door>::given([Ev::Opened]).when(()).then_events([Ev::Closed]);
//! AggregateTest::<Door>::given_no_events().when(()).then_error_is(&AlreadyClosed);
//! ```

use crate::aggregate::{Aggregate, DomainEvent};

/// The *given* step: an aggregate with past events applied.
#[derive(Debug)]
pub struct AggregateTest<A: Aggregate> {
    state: A,
}

/// The *then* step: what the command decided.
#[derive(Debug)]
pub struct Outcome<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

#[track_caller]
fn round_trip<E: DomainEvent>(event: &E) -> E {
    let ty = event.event_type();
    let bytes = event
        .encode()
        .unwrap_or_else(|e| panic!("event {event:?} does not encode as event type {ty:?}: {e}"));
    E::decode(ty, &bytes).unwrap_or_else(|e| {
        panic!(
            "event {event:?} encodes as {ty} {} but does not decode back: {e}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

impl<A: Aggregate> AggregateTest<A> {
    /// An aggregate that has seen `events`.
    #[track_caller]
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        for e in events {
            state.apply(&round_trip(&e));
        }
        AggregateTest { state }
    }

    /// An aggregate with no events yet.
    pub fn given_no_events() -> Self {
        AggregateTest { state: A::default() }
    }

    /// The state after the given events.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Hands the aggregate `command`.
    pub fn when(self, command: A::Command) -> Outcome<A> {
        let result = self.state.handle(command);
        Outcome { state: self.state, result }
    }
}

impl<A: Aggregate> Outcome<A> {
    /// Asserts that the command decided exactly `expected`, in order; returns
    /// the state after applying them.
    #[track_caller]
    pub fn then_events(self, expected: impl IntoIterator<Item = A::Event>) -> A
    where
        A::Event: PartialEq,
    {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        let events = match self.result {
            Ok(events) => events,
            Err(e) => panic!("expected events {expected:?}, but the command was rejected: {e}"),
        };
        assert_eq!(events, expected, "the command decided other events than expected");
        let mut state = self.state;
        for e in &events {
            let back = round_trip(e);
            assert_eq!(&back, e, "event does not survive encode/decode unchanged");
            state.apply(&back);
        }
        state
    }

    /// Asserts that the command decided no events (nothing to do).
    #[track_caller]
    pub fn then_nothing(self)
    where
        A::Event: PartialEq,
    {
        self.then_events([]);
    }

    /// Asserts that the command was rejected and returns the error.
    #[track_caller]
    pub fn then_error(self) -> A::Error {
        match self.result {
            Ok(events) => panic!("expected the command to be rejected, but it decided {events:?}"),
            Err(e) => e,
        }
    }

    /// Asserts that the command was rejected with `expected`.
    #[track_caller]
    pub fn then_error_is(self, expected: &A::Error)
    where
        A::Error: PartialEq,
    {
        let e = self.then_error();
        assert_eq!(&e, expected, "the command was rejected with another error");
    }

    /// Asserts that the command was rejected with an error whose message is `message`.
    #[track_caller]
    pub fn then_error_message(self, message: &str) {
        let e = self.then_error();
        assert_eq!(e.to_string(), message, "the command was rejected with another message");
    }

    /// The raw result, for assertions of your own.
    pub fn result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}
