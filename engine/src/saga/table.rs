//! A shard's sagas: each one's name, payload, state and steps, changed only
//! by `SagaRecord`s.

use std::collections::VecDeque;

use thiserror::Error;

use crate::hash::IdMap;
use crate::types::TimestampMs;

/// Longest saga or step name, in bytes.
pub const SAGA_NAME_BYTES_MAX: usize = mercato_protocol::SAGA_NAME_BYTES_MAX;
/// Longest payload or step data, in bytes.
pub const SAGA_DATA_BYTES_MAX: usize = mercato_protocol::SAGA_DATA_BYTES_MAX;
/// Most steps of one saga.
pub const SAGA_STEPS_MAX: usize = mercato_protocol::SAGA_STEPS_MAX;
/// Finished sagas a shard remembers, for `saga show` and for idempotent
/// repeats; the oldest finished are forgotten past it. Unfinished sagas
/// are never forgotten.
pub const SAGAS_FINISHED_MAX: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SagaState {
    Running,
    /// Aborted: its steps are being compensated, newest first.
    Compensating,
    Committed,
    Compensated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepState {
    /// Its action may have run: the outcome is unknown.
    Started,
    Done,
    /// Its action said it failed (its outcome may still be unknown: a
    /// timeout is a failure); it is compensated like any other.
    Failed,
    Compensated,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepView {
    pub name: Box<[u8]>,
    pub state: StepState,
    /// What the step's `Done` recorded: what its compensation needs.
    pub data: Box<[u8]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaView {
    pub id: u128,
    pub name: Box<[u8]>,
    pub payload: Box<[u8]>,
    pub state: SagaState,
    pub steps: Vec<StepView>,
    pub began_at: TimestampMs,
    /// 0 until it ends.
    pub ended_at: TimestampMs,
}

/// A saga call refused. Nothing changed.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum SagaError {
    #[error("names are 1 to {SAGA_NAME_BYTES_MAX} bytes, this one is {len}")]
    InvalidName { len: usize },
    #[error("payloads and step data are at most {SAGA_DATA_BYTES_MAX} bytes, this is {len}")]
    DataTooLarge { len: usize },
    #[error("no such saga")]
    Unknown,
    #[error("the saga was begun with another name or payload")]
    Conflict,
    #[error("a saga has at most {SAGA_STEPS_MAX} steps")]
    TooManySteps,
    #[error("step {step} is not next: the next step is {next}")]
    OutOfOrder { step: u16, next: u16 },
    #[error("step {step} was started under another name")]
    StepMismatch { step: u16 },
    #[error("the saga is {state:?}, which does not allow this")]
    WrongState { state: SagaState },
    #[error("step {step} is {state:?}, which does not allow this")]
    WrongStepState { step: u16, state: StepState },
    #[error("the saga's steps are not all done (or compensated) yet")]
    NotReady,
    #[error("list limit {limit} is outside 1..={max}")]
    InvalidLimit { limit: u32, max: u32 },
    #[error("there is no shard {shard}")]
    NoSuchShard { shard: u16 },
}

/// The durable changes; nothing else changes a saga.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SagaRecord {
    Begun {
        id: u128,
        name: Box<[u8]>,
        payload: Box<[u8]>,
        at: TimestampMs,
    },
    StepStarted {
        id: u128,
        step: u16,
        name: Box<[u8]>,
    },
    StepDone {
        id: u128,
        step: u16,
        data: Box<[u8]>,
    },
    StepFailed {
        id: u128,
        step: u16,
    },
    Aborted {
        id: u128,
    },
    StepCompensated {
        id: u128,
        step: u16,
    },
    Ended {
        id: u128,
        committed: bool,
        at: TimestampMs,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Saga {
    name: Box<[u8]>,
    payload: Box<[u8]>,
    state: SagaState,
    steps: Vec<StepView>,
    began_at: TimestampMs,
    ended_at: TimestampMs,
}

/// A shard's sagas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sagas {
    sagas: IdMap<u128, Saga>,
    /// Finished sagas, in the order they ended.
    finished: VecDeque<u128>,
}

/// Sagas listed per call at most.
pub const SAGA_LIST_LIMIT_MAX: u32 = mercato_protocol::SAGA_LIST_LIMIT_MAX;

fn check_name(name: &[u8]) -> Result<(), SagaError> {
    if name.is_empty() || name.len() > SAGA_NAME_BYTES_MAX {
        return Err(SagaError::InvalidName { len: name.len() });
    }
    Ok(())
}

fn check_data(data: &[u8]) -> Result<(), SagaError> {
    if data.len() > SAGA_DATA_BYTES_MAX {
        return Err(SagaError::DataTooLarge { len: data.len() });
    }
    Ok(())
}

impl Sagas {
    pub fn apply(&mut self, r: &SagaRecord) {
        match r {
            SagaRecord::Begun {
                id,
                name,
                payload,
                at,
            } => {
                self.sagas.insert(
                    *id,
                    Saga {
                        name: name.clone(),
                        payload: payload.clone(),
                        state: SagaState::Running,
                        steps: Vec::new(),
                        began_at: *at,
                        ended_at: 0,
                    },
                );
            }
            SagaRecord::StepStarted { id, step, name } => {
                let s = self.sagas.get_mut(id).expect("a begun saga");
                debug_assert_eq!(usize::from(*step), s.steps.len());
                s.steps.push(StepView {
                    name: name.clone(),
                    state: StepState::Started,
                    data: Box::default(),
                });
            }
            SagaRecord::StepDone { id, step, data } => {
                let s = self.sagas.get_mut(id).expect("a begun saga");
                let st = &mut s.steps[usize::from(*step)];
                st.state = StepState::Done;
                st.data = data.clone();
            }
            SagaRecord::StepFailed { id, step } => {
                let s = self.sagas.get_mut(id).expect("a begun saga");
                s.steps[usize::from(*step)].state = StepState::Failed;
            }
            SagaRecord::Aborted { id } => {
                self.sagas.get_mut(id).expect("a begun saga").state = SagaState::Compensating;
            }
            SagaRecord::StepCompensated { id, step } => {
                let s = self.sagas.get_mut(id).expect("a begun saga");
                s.steps[usize::from(*step)].state = StepState::Compensated;
            }
            SagaRecord::Ended { id, committed, at } => {
                let s = self.sagas.get_mut(id).expect("a begun saga");
                s.state = if *committed {
                    SagaState::Committed
                } else {
                    SagaState::Compensated
                };
                s.ended_at = *at;
                self.finished.push_back(*id);
                while self.finished.len() > SAGAS_FINISHED_MAX {
                    let old = self.finished.pop_front().expect("over the limit");
                    self.sagas.remove(&old);
                }
            }
        }
    }

    fn commit(&mut self, r: SagaRecord, out: &mut Vec<SagaRecord>) {
        self.apply(&r);
        out.push(r);
    }

    fn view(&self, id: u128) -> Result<SagaView, SagaError> {
        let s = self.sagas.get(&id).ok_or(SagaError::Unknown)?;
        Ok(SagaView {
            id,
            name: s.name.clone(),
            payload: s.payload.clone(),
            state: s.state,
            steps: s.steps.clone(),
            began_at: s.began_at,
            ended_at: s.ended_at,
        })
    }

    fn running(&self, id: u128) -> Result<&Saga, SagaError> {
        let s = self.sagas.get(&id).ok_or(SagaError::Unknown)?;
        if s.state != SagaState::Running {
            return Err(SagaError::WrongState { state: s.state });
        }
        Ok(s)
    }

    fn step_of(s: &Saga, step: u16) -> Result<&StepView, SagaError> {
        s.steps.get(usize::from(step)).ok_or(SagaError::OutOfOrder {
            step,
            next: s.steps.len() as u16,
        })
    }

    pub fn begin(
        &mut self,
        id: u128,
        name: &[u8],
        payload: &[u8],
        now: TimestampMs,
        out: &mut Vec<SagaRecord>,
    ) -> Result<SagaView, SagaError> {
        check_name(name)?;
        check_data(payload)?;
        if let Some(s) = self.sagas.get(&id) {
            if *s.name != *name || *s.payload != *payload {
                return Err(SagaError::Conflict);
            }
            return self.view(id);
        }
        let r = SagaRecord::Begun {
            id,
            name: name.into(),
            payload: payload.into(),
            at: now,
        };
        self.commit(r, out);
        self.view(id)
    }

    pub fn step_started(
        &mut self,
        id: u128,
        step: u16,
        name: &[u8],
        out: &mut Vec<SagaRecord>,
    ) -> Result<SagaView, SagaError> {
        check_name(name)?;
        let s = self.running(id)?;
        let next = s.steps.len();
        match usize::from(step) {
            i if i < next => {
                if *s.steps[i].name != *name {
                    return Err(SagaError::StepMismatch { step });
                }
                return self.view(id);
            }
            i if i > next => {
                return Err(SagaError::OutOfOrder {
                    step,
                    next: next as u16,
                });
            }
            _ if next >= SAGA_STEPS_MAX => return Err(SagaError::TooManySteps),
            _ => {}
        }
        if let Some(prev) = s.steps.last()
            && prev.state != StepState::Done
        {
            return Err(SagaError::WrongStepState {
                step: step - 1,
                state: prev.state,
            });
        }
        let r = SagaRecord::StepStarted {
            id,
            step,
            name: name.into(),
        };
        self.commit(r, out);
        self.view(id)
    }

    pub fn step_done(
        &mut self,
        id: u128,
        step: u16,
        data: &[u8],
        out: &mut Vec<SagaRecord>,
    ) -> Result<SagaView, SagaError> {
        check_data(data)?;
        let s = self.running(id)?;
        match Self::step_of(s, step)?.state {
            StepState::Started => {}
            // Recorded before (the first data stays).
            StepState::Done => return self.view(id),
            state => return Err(SagaError::WrongStepState { step, state }),
        }
        let r = SagaRecord::StepDone {
            id,
            step,
            data: data.into(),
        };
        self.commit(r, out);
        self.view(id)
    }

    pub fn step_failed(
        &mut self,
        id: u128,
        step: u16,
        out: &mut Vec<SagaRecord>,
    ) -> Result<SagaView, SagaError> {
        let s = self.running(id)?;
        match Self::step_of(s, step)?.state {
            StepState::Started => {}
            StepState::Failed => return self.view(id),
            state => return Err(SagaError::WrongStepState { step, state }),
        }
        self.commit(SagaRecord::StepFailed { id, step }, out);
        self.view(id)
    }

    /// From here on the saga can only be compensated.
    pub fn abort(&mut self, id: u128, out: &mut Vec<SagaRecord>) -> Result<SagaView, SagaError> {
        let s = self.sagas.get(&id).ok_or(SagaError::Unknown)?;
        match s.state {
            SagaState::Running => {}
            SagaState::Compensating => return self.view(id),
            state => return Err(SagaError::WrongState { state }),
        }
        self.commit(SagaRecord::Aborted { id }, out);
        self.view(id)
    }

    /// Step `step`'s compensation ran; every later step's did before.
    pub fn step_compensated(
        &mut self,
        id: u128,
        step: u16,
        out: &mut Vec<SagaRecord>,
    ) -> Result<SagaView, SagaError> {
        let s = self.sagas.get(&id).ok_or(SagaError::Unknown)?;
        if s.state != SagaState::Compensating {
            return Err(SagaError::WrongState { state: s.state });
        }
        if Self::step_of(s, step)?.state == StepState::Compensated {
            return self.view(id);
        }
        let later = s.steps[usize::from(step) + 1..].iter().enumerate();
        for (i, later) in later {
            if later.state != StepState::Compensated {
                return Err(SagaError::WrongStepState {
                    step: step + 1 + i as u16,
                    state: later.state,
                });
            }
        }
        self.commit(SagaRecord::StepCompensated { id, step }, out);
        self.view(id)
    }

    /// Ends a running saga whose steps are all done as committed, or an
    /// aborted one whose steps are all compensated as compensated.
    pub fn end(
        &mut self,
        id: u128,
        now: TimestampMs,
        out: &mut Vec<SagaRecord>,
    ) -> Result<SagaView, SagaError> {
        let s = self.sagas.get(&id).ok_or(SagaError::Unknown)?;
        let all = |state| s.steps.iter().all(|st| st.state == state);
        let committed = match s.state {
            SagaState::Running if all(StepState::Done) => true,
            SagaState::Compensating if all(StepState::Compensated) => false,
            SagaState::Running | SagaState::Compensating => return Err(SagaError::NotReady),
            SagaState::Committed | SagaState::Compensated => return self.view(id),
        };
        self.commit(
            SagaRecord::Ended {
                id,
                committed,
                at: now,
            },
            out,
        );
        self.view(id)
    }

    pub fn get(&self, id: u128) -> Result<SagaView, SagaError> {
        self.view(id)
    }

    /// Sagas by id, from after `after`: all, or only those not ended.
    /// Returns the page and whether more follow it.
    pub fn list(
        &self,
        after: Option<u128>,
        limit: u32,
        unfinished: bool,
    ) -> Result<(Vec<SagaView>, bool), SagaError> {
        if limit == 0 || limit > SAGA_LIST_LIMIT_MAX {
            return Err(SagaError::InvalidLimit {
                limit,
                max: SAGA_LIST_LIMIT_MAX,
            });
        }
        let mut ids: Vec<u128> = (self.sagas.iter())
            .filter(|(id, s)| {
                after.is_none_or(|a| **id > a)
                    && (!unfinished
                        || matches!(s.state, SagaState::Running | SagaState::Compensating))
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut views = Vec::new();
        let mut page_bytes = 0;
        for &id in &ids {
            let v = self.view(id).expect("listed");
            let steps = v.steps.iter().map(|s| (s.name.len(), s.data.len()));
            let bytes = mercato_protocol::saga_view_bytes_of(v.name.len(), v.payload.len(), steps);
            // At least one a page, so paging always moves on.
            let full = views.len() == limit as usize
                || (!views.is_empty()
                    && page_bytes + bytes > mercato_protocol::SAGA_PAGE_BYTES_MAX);
            if full {
                break;
            }
            page_bytes += bytes;
            views.push(v);
        }
        let more = views.len() < ids.len();
        Ok((views, more))
    }

    /// Sagas not yet ended.
    pub fn unfinished(&self) -> usize {
        self.sagas.len() - self.finished.len()
    }

    pub fn len(&self) -> usize {
        self.sagas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sagas.is_empty()
    }

    /// The state as records that rebuild it: finished sagas in the order
    /// they ended, then the others by id.
    pub fn image(&self) -> Vec<SagaRecord> {
        let mut out = Vec::new();
        let mut open: Vec<u128> = (self.sagas.iter())
            .filter(|(_, s)| matches!(s.state, SagaState::Running | SagaState::Compensating))
            .map(|(id, _)| *id)
            .collect();
        open.sort_unstable();
        for &id in self.finished.iter().chain(open.iter()) {
            let s = &self.sagas[&id];
            out.push(SagaRecord::Begun {
                id,
                name: s.name.clone(),
                payload: s.payload.clone(),
                at: s.began_at,
            });
            for (i, st) in s.steps.iter().enumerate() {
                let step = i as u16;
                out.push(SagaRecord::StepStarted {
                    id,
                    step,
                    name: st.name.clone(),
                });
                match st.state {
                    StepState::Started => {}
                    StepState::Failed => out.push(SagaRecord::StepFailed { id, step }),
                    StepState::Done | StepState::Compensated => out.push(SagaRecord::StepDone {
                        id,
                        step,
                        data: st.data.clone(),
                    }),
                }
            }
            if matches!(s.state, SagaState::Compensating | SagaState::Compensated) {
                out.push(SagaRecord::Aborted { id });
                for (i, st) in s.steps.iter().enumerate().rev() {
                    if st.state == StepState::Compensated {
                        out.push(SagaRecord::StepCompensated { id, step: i as u16 });
                    }
                }
            }
            if matches!(s.state, SagaState::Committed | SagaState::Compensated) {
                out.push(SagaRecord::Ended {
                    id,
                    committed: s.state == SagaState::Committed,
                    at: s.ended_at,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
