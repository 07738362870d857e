use super::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Begin(u8),
    Start(u8, u16),
    Done(u8, u16),
    Fail(u8, u16),
    Abort(u8),
    Compensate(u8, u16),
    End(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u8..3;
    let step = 0u16..4;
    prop_oneof![
        1 => id.clone().prop_map(Op::Begin),
        4 => (id.clone(), step.clone()).prop_map(|(i, s)| Op::Start(i, s)),
        4 => (id.clone(), step.clone()).prop_map(|(i, s)| Op::Done(i, s)),
        1 => (id.clone(), step.clone()).prop_map(|(i, s)| Op::Fail(i, s)),
        1 => id.clone().prop_map(Op::Abort),
        3 => (id.clone(), step).prop_map(|(i, s)| Op::Compensate(i, s)),
        2 => id.prop_map(Op::End),
    ]
}

fn run(s: &mut Sagas, op: &Op, out: &mut Vec<SagaRecord>) -> Result<SagaView, SagaError> {
    match *op {
        Op::Begin(i) => s.begin(u128::from(i), b"checkout", &[i], 5, out),
        Op::Start(i, st) => s.step_started(u128::from(i), st, &[b's', st as u8], out),
        Op::Done(i, st) => s.step_done(u128::from(i), st, &[st as u8; 3], out),
        Op::Fail(i, st) => s.step_failed(u128::from(i), st, out),
        Op::Abort(i) => s.abort(u128::from(i), out),
        Op::Compensate(i, st) => s.step_compensated(u128::from(i), st, out),
        Op::End(i) => s.end(u128::from(i), 9, out),
    }
}

proptest! {
    /// Random calls: a refused call records nothing and changes nothing;
    /// an accepted one repeated records nothing more (idempotent); a saga
    /// ends committed only with every step done and compensated only with
    /// every step compensated, newest first; and the records, or the
    /// image, rebuild the same table.
    #[test]
    fn sagas_record_only_what_may_happen(ops in prop::collection::vec(op(), 1..200)) {
        let mut s = Sagas::default();
        let mut replayed = Sagas::default();
        for op in &ops {
            let before = s.clone();
            let mut out = Vec::new();
            match run(&mut s, op, &mut out) {
                Err(_) => {
                    prop_assert!(out.is_empty());
                    prop_assert_eq!(&s, &before);
                }
                Ok(view) => {
                    let mut again = Vec::new();
                    let second = run(&mut s, op, &mut again);
                    prop_assert!(again.is_empty(), "{:?} repeated recorded {:?}", op, again);
                    prop_assert_eq!(second, Ok(view.clone()));
                    match view.state {
                        SagaState::Committed => prop_assert!(view.steps.iter().all(|st| st.state == StepState::Done)),
                        SagaState::Compensated => prop_assert!(view.steps.iter().all(|st| st.state == StepState::Compensated)),
                        _ => {}
                    }
                    if let Op::Compensate(_, st) = op {
                        prop_assert!(view.steps[usize::from(*st)..].iter().all(|x| x.state == StepState::Compensated));
                    }
                }
            }
            for r in &out {
                replayed.apply(r);
            }
            prop_assert_eq!(&replayed, &s);
            let mut imaged = Sagas::default();
            for r in s.image() {
                imaged.apply(&r);
            }
            prop_assert_eq!(&imaged, &s);
        }
    }
}

#[test]
fn bad_input_is_refused() {
    let mut s = Sagas::default();
    let mut out = Vec::new();
    let long = vec![b'x'; SAGA_NAME_BYTES_MAX + 1];
    let big = vec![0; SAGA_DATA_BYTES_MAX + 1];
    assert_eq!(
        s.begin(1, &long, b"", 0, &mut out),
        Err(SagaError::InvalidName { len: long.len() })
    );
    assert_eq!(
        s.begin(1, b"n", &big, 0, &mut out),
        Err(SagaError::DataTooLarge { len: big.len() })
    );
    assert_eq!(s.get(1), Err(SagaError::Unknown));
    assert!(s.begin(1, b"n", b"p", 0, &mut out).is_ok());
    assert_eq!(
        s.begin(1, b"n", b"q", 0, &mut out),
        Err(SagaError::Conflict)
    );
    assert_eq!(
        s.step_started(1, 1, b"a", &mut out),
        Err(SagaError::OutOfOrder { step: 1, next: 0 })
    );
    for step in 0..SAGA_STEPS_MAX as u16 {
        s.step_started(1, step, b"a", &mut out).unwrap();
        s.step_done(1, step, b"", &mut out).unwrap();
    }
    assert_eq!(
        s.step_started(1, SAGA_STEPS_MAX as u16, b"a", &mut out),
        Err(SagaError::TooManySteps)
    );
    assert_eq!(
        s.step_compensated(1, 0, &mut out),
        Err(SagaError::WrongState {
            state: SagaState::Running
        })
    );
    assert_eq!(
        s.list(None, 0, false),
        Err(SagaError::InvalidLimit {
            limit: 0,
            max: SAGA_LIST_LIMIT_MAX
        })
    );
}
