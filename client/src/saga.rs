//! Sagas for the steps outside mercato: a small orchestrator that runs a
//! saga's steps as closures, records each in mercato before and after it
//! runs, compensates newest first when a step fails, and after a crash
//! resumes every unfinished saga from what mercato holds
//! ([`Orchestrator::recover_sagas`]).
//!
//! What the steps must promise, as Seata's TCC and saga modes ask too:
//! - an action is idempotent by (saga id, step): after a crash between an
//!   action and its record, it runs again;
//! - a compensation is idempotent, succeeds for an action that never ran,
//!   and fences a late action out (a refund that arrives before its charge
//!   makes the charge fail), since a step whose action timed out or whose
//!   record is missing has an unknown outcome and is compensated anyway.
//!
//! A step that needs mercato itself can lean on its built-in compensation:
//! a `Deferred` order that is never paid expires and returns its stock.

use std::collections::HashMap;
use std::time::Duration;

use mercato_protocol as wire;

use crate::client::{CallResult, Client};
use crate::error::ClientError;

/// What a step's action or compensation is given.
pub struct StepCtx<'a> {
    pub saga: u128,
    pub step: u16,
    /// The saga's input.
    pub payload: &'a [u8],
    /// What each earlier step's action returned, in order.
    pub results: &'a [Vec<u8>],
}

impl StepCtx<'_> {
    /// A key unique to this saga and step: the idempotency key to give
    /// the service the step calls.
    pub fn key(&self) -> String {
        format!("{:032x}-{}", self.saga, self.step)
    }
}

type Action = Box<dyn Fn(&StepCtx) -> Result<Vec<u8>, String> + Send + Sync>;
/// Given the action's result, if it was recorded.
type Compensation = Box<dyn Fn(&StepCtx, Option<&[u8]>) -> Result<(), String> + Send + Sync>;

struct StepDef {
    name: Vec<u8>,
    action: Action,
    compensate: Compensation,
}

/// A kind of saga: its name and its steps, in order.
pub struct SagaDef {
    name: Vec<u8>,
    steps: Vec<StepDef>,
}

impl SagaDef {
    pub fn new(name: &[u8]) -> Self {
        SagaDef {
            name: name.to_vec(),
            steps: Vec::new(),
        }
    }

    /// Adds a step: `action` returns what `compensate` will need (at most
    /// `SAGA_DATA_BYTES_MAX` bytes), or why it failed.
    pub fn step(
        mut self,
        name: &[u8],
        action: impl Fn(&StepCtx) -> Result<Vec<u8>, String> + Send + Sync + 'static,
        compensate: impl Fn(&StepCtx, Option<&[u8]>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.steps.push(StepDef {
            name: name.to_vec(),
            action: Box::new(action),
            compensate: Box::new(compensate),
        });
        self
    }
}

/// How a saga ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SagaOutcome {
    Committed,
    Compensated,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaRunError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// mercato refused a record: a bug in the orchestrator or a saga id
    /// reused for another saga.
    #[error("mercato refused a saga record: {0:?}")]
    Rejected(wire::Reject),
    #[error("no saga of kind {0:?} is registered")]
    UnknownKind(String),
    /// A compensation kept failing; the saga stays `Compensating`, and
    /// `recover_sagas` goes on with it later.
    #[error("step {step}'s compensation failed {attempts} times: {why}")]
    CompensationFailed {
        step: u16,
        attempts: u32,
        why: String,
    },
}

/// Times a compensation is tried before a run gives up on it (it is
/// tried again by the next `recover_sagas`), and the pause between tries.
const COMPENSATION_ATTEMPTS_MAX: u32 = 5;
const COMPENSATION_PAUSE_MS: u64 = 20;

/// Runs sagas of the kinds registered with it.
pub struct Orchestrator<'a> {
    client: &'a Client,
    kinds: HashMap<Vec<u8>, SagaDef>,
}

fn ok<T>(r: CallResult<T>) -> Result<T, SagaRunError> {
    r?.map_err(SagaRunError::Rejected)
}

impl<'a> Orchestrator<'a> {
    pub fn new(client: &'a Client) -> Self {
        Orchestrator {
            client,
            kinds: HashMap::new(),
        }
    }

    pub fn register(&mut self, def: SagaDef) {
        assert!(
            def.steps.len() <= wire::SAGA_STEPS_MAX,
            "a saga has at most {} steps",
            wire::SAGA_STEPS_MAX
        );
        self.kinds.insert(def.name.clone(), def);
    }

    /// Runs saga `id` of kind `name` with `payload` to its end. Running it
    /// again (after a crash, or twice) resumes it where mercato says it is.
    pub fn run(&self, id: u128, name: &[u8], payload: &[u8]) -> Result<SagaOutcome, SagaRunError> {
        let view = ok(self.client.saga_begin(id, name, payload))?;
        self.drive(view)
    }

    /// Finishes every saga mercato holds unfinished: what a crashed
    /// orchestrator left. Returns each one's outcome.
    pub fn recover_sagas(&self) -> Result<Vec<(u128, SagaOutcome)>, SagaRunError> {
        let mut done = Vec::new();
        for view in ok(self.client.sagas_unfinished())? {
            let id = view.id;
            done.push((id, self.drive(view)?));
        }
        Ok(done)
    }

    fn drive(&self, view: wire::SagaView) -> Result<SagaOutcome, SagaRunError> {
        let def = (self.kinds.get(&view.name))
            .ok_or_else(|| SagaRunError::UnknownKind(String::from_utf8_lossy(&view.name).into()))?;
        match view.state {
            wire::SagaState::Committed => Ok(SagaOutcome::Committed),
            wire::SagaState::Compensated => Ok(SagaOutcome::Compensated),
            wire::SagaState::Running => self.forward(def, view),
            wire::SagaState::Compensating => self.backward(def, view),
        }
    }

    fn forward(&self, def: &SagaDef, view: wire::SagaView) -> Result<SagaOutcome, SagaRunError> {
        let id = view.id;
        let mut results: Vec<Vec<u8>> = Vec::new();
        for (i, step) in def.steps.iter().enumerate() {
            let n = i as u16;
            match view.steps.get(i).map(|s| s.state) {
                Some(wire::StepState::Done) => {
                    results.push(view.steps[i].data.clone());
                    continue;
                }
                Some(wire::StepState::Failed | wire::StepState::Compensated) => {
                    return self.abort(def, id);
                }
                // Started and not recorded since: its outcome is unknown,
                // and its action is idempotent, so it runs again.
                Some(wire::StepState::Started) | None => {}
            }
            let started = wire::StepPhase::Started {
                name: step.name.clone(),
            };
            ok(self.client.saga_step(id, n, started))?;
            let ctx = StepCtx {
                saga: id,
                step: n,
                payload: &view.payload,
                results: &results,
            };
            match (step.action)(&ctx) {
                Ok(data) => {
                    let done = wire::StepPhase::Done { data: data.clone() };
                    ok(self.client.saga_step(id, n, done))?;
                    results.push(data);
                }
                Err(_) => {
                    ok(self.client.saga_step(id, n, wire::StepPhase::Failed))?;
                    return self.abort(def, id);
                }
            }
        }
        ok(self.client.saga_end(id))?;
        Ok(SagaOutcome::Committed)
    }

    fn abort(&self, def: &SagaDef, id: u128) -> Result<SagaOutcome, SagaRunError> {
        let view = ok(self.client.saga_abort(id))?;
        self.backward(def, view)
    }

    fn backward(&self, def: &SagaDef, view: wire::SagaView) -> Result<SagaOutcome, SagaRunError> {
        let id = view.id;
        let results: Vec<Vec<u8>> = view.steps.iter().map(|s| s.data.clone()).collect();
        for (i, recorded) in view.steps.iter().enumerate().rev() {
            if recorded.state == wire::StepState::Compensated {
                continue;
            }
            let n = i as u16;
            let step = def.steps.get(i).ok_or_else(|| {
                SagaRunError::UnknownKind(format!(
                    "{} with a step {i}",
                    String::from_utf8_lossy(&view.name)
                ))
            })?;
            let ctx = StepCtx {
                saga: id,
                step: n,
                payload: &view.payload,
                results: &results[..i],
            };
            let data = (recorded.state == wire::StepState::Done).then_some(&recorded.data[..]);
            let mut attempts = 0;
            loop {
                attempts += 1;
                match (step.compensate)(&ctx, data) {
                    Ok(()) => break,
                    Err(why) if attempts >= COMPENSATION_ATTEMPTS_MAX => {
                        return Err(SagaRunError::CompensationFailed {
                            step: n,
                            attempts,
                            why,
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(COMPENSATION_PAUSE_MS)),
                }
            }
            ok(self.client.saga_step(id, n, wire::StepPhase::Compensated))?;
        }
        ok(self.client.saga_end(id))?;
        Ok(SagaOutcome::Compensated)
    }
}

fn saga_of(r: CallResult<wire::Reply>) -> CallResult<wire::SagaView> {
    match r? {
        Ok(wire::Reply::Saga(v)) => Ok(Ok(v)),
        Ok(other) => Err(ClientError::Protocol {
            what: format!("a saga call answered {other:?}"),
        }),
        Err(r) => Ok(Err(r)),
    }
}

impl Client {
    pub fn saga_begin(&self, id: u128, name: &[u8], payload: &[u8]) -> CallResult<wire::SagaView> {
        saga_of(self.one(wire::Request::SagaBegin {
            id,
            name: name.to_vec(),
            payload: payload.to_vec(),
        }))
    }

    pub fn saga_step(
        &self,
        id: u128,
        step: u16,
        phase: wire::StepPhase,
    ) -> CallResult<wire::SagaView> {
        saga_of(self.one(wire::Request::SagaStep { id, step, phase }))
    }

    pub fn saga_abort(&self, id: u128) -> CallResult<wire::SagaView> {
        saga_of(self.one(wire::Request::SagaAbort { id }))
    }

    pub fn saga_end(&self, id: u128) -> CallResult<wire::SagaView> {
        saga_of(self.one(wire::Request::SagaEnd { id }))
    }

    pub fn saga_get(&self, id: u128) -> CallResult<wire::SagaView> {
        saga_of(self.one(wire::Request::SagaGet { id }))
    }

    /// A page of `shard`'s sagas by id, after `after`; and whether more follow.
    pub fn saga_list(
        &self,
        shard: u16,
        after: Option<u128>,
        limit: u32,
        unfinished: bool,
    ) -> CallResult<(Vec<wire::SagaView>, bool)> {
        let r = self.one(wire::Request::SagaList {
            shard,
            after,
            limit,
            unfinished,
        })?;
        match r {
            Ok(wire::Reply::Sagas { sagas, more }) => Ok(Ok((sagas, more))),
            Ok(other) => Err(ClientError::Protocol {
                what: format!("a saga list answered {other:?}"),
            }),
            Err(r) => Ok(Err(r)),
        }
    }

    /// Every saga not ended, on every shard.
    pub fn sagas_unfinished(&self) -> CallResult<Vec<wire::SagaView>> {
        self.sagas_where(true)
    }

    /// Every saga the server remembers (finished ones up to its limit).
    pub fn sagas_all(&self) -> CallResult<Vec<wire::SagaView>> {
        self.sagas_where(false)
    }

    fn sagas_where(&self, unfinished: bool) -> CallResult<Vec<wire::SagaView>> {
        let mut all = Vec::new();
        for shard in 0..self.shards() {
            let mut after = None;
            loop {
                let (page, more) =
                    match self.saga_list(shard, after, wire::SAGA_LIST_LIMIT_MAX, unfinished)? {
                        Ok(p) => p,
                        Err(r) => return Ok(Err(r)),
                    };
                after = page.last().map(|v| v.id);
                all.extend(page);
                if !more {
                    break;
                }
            }
        }
        Ok(Ok(all))
    }
}
