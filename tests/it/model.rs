//! Property test: random requests (every kind of expected version, several
//! streams at once, resent requests, reused ids, requests too large for the
//! map) and reopens, checked against a simple in-memory model after every
//! step. Requests go one at a time and in rounds that the writer takes as one
//! batch (see `fuzz/src/model.rs`, shared with the `model` fuzz target).

use proptest::prelude::*;

use crate::fuzz_corpus::model::{Exp, Harness, Ids, PartSpec, ReqSpec};

#[derive(Debug, Clone)]
enum Op {
    One(ReqSpec),
    Round(Vec<ReqSpec>),
    Check,
    Reopen,
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        1 => Just(Exp::Any),
        1 => Just(Exp::NoStream),
        1 => Just(Exp::StreamExists),
        4 => Just(Exp::Right),
        1 => (1u64..3).prop_map(Exp::Wrong),
        1 => Just(Exp::Max),
    ]
}

fn part() -> impl Strategy<Value = PartSpec> {
    (0u8..4, exp(), 0u8..3, any::<bool>(), prop::bool::weighted(0.04)).prop_map(
        |(stream, exp, n, v4, big)| PartSpec { stream, exp, n, ids: if v4 { Ids::V4 } else { Ids::V7 }, big },
    )
}

fn request() -> impl Strategy<Value = ReqSpec> {
    prop_oneof![
        6 => proptest::collection::vec(part(), 1..3).prop_map(ReqSpec::New),
        2 => any::<usize>().prop_map(ReqSpec::Resend),
        1 => (0u8..4).prop_map(ReqSpec::ReuseId),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => request().prop_map(Op::One),
        4 => proptest::collection::vec(request(), 2..8).prop_map(Op::Round),
        1 => Just(Op::Check),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Every outcome and every read agrees with the model, whether requests
    /// reach the writer alone or many to a batch.
    #[test]
    fn store_agrees_with_model(ops in proptest::collection::vec(op(), 1..30)) {
        let mut h = Harness::new();
        for op in ops {
            match op {
                Op::One(spec) => h.one(&spec),
                Op::Round(specs) => h.round(&specs),
                Op::Check => h.check(),
                Op::Reopen => h.reopen(),
            }
        }
        h.finish();
    }
}
