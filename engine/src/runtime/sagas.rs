//! Sagas from an embedded caller: record a saga's progress, and find the
//! unfinished ones after a crash. The orchestrator that runs steps is the
//! client crate's; an embedded program drives these calls itself.

use super::handle::{CallResult, Handle};
use crate::command::{Command, Reply, SagaCommand, StepPhase};
use crate::saga::{SAGA_LIST_LIMIT_MAX, SagaView};

impl Handle {
    fn saga_call(&self, cmd: SagaCommand) -> CallResult<SagaView> {
        Ok(self.call(Command::Saga(cmd))?.map(|r| match r {
            Reply::Saga(v) => v,
            other => unreachable!("a saga call answers the saga, not {other:?}"),
        }))
    }

    pub fn saga_begin(&self, id: u128, name: &[u8], payload: &[u8]) -> CallResult<SagaView> {
        self.saga_call(SagaCommand::Begin {
            id,
            name: name.into(),
            payload: payload.into(),
        })
    }

    pub fn saga_step(&self, id: u128, step: u16, phase: StepPhase) -> CallResult<SagaView> {
        self.saga_call(SagaCommand::Step { id, step, phase })
    }

    pub fn saga_abort(&self, id: u128) -> CallResult<SagaView> {
        self.saga_call(SagaCommand::Abort { id })
    }

    pub fn saga_end(&self, id: u128) -> CallResult<SagaView> {
        self.saga_call(SagaCommand::End { id })
    }

    pub fn saga_get(&self, id: u128) -> CallResult<SagaView> {
        self.saga_call(SagaCommand::Get { id })
    }

    /// Every saga not yet ended, on every shard, by shard then id.
    pub fn sagas_unfinished(&self) -> CallResult<Vec<SagaView>> {
        let mut all = Vec::new();
        for shard in 0..self.shards() {
            let mut after = None;
            loop {
                let cmd = SagaCommand::List {
                    shard,
                    after,
                    limit: SAGA_LIST_LIMIT_MAX,
                    unfinished: true,
                };
                let (page, more) = match self.call(Command::Saga(cmd))? {
                    Ok(Reply::Sagas { sagas, more }) => (sagas, more),
                    Ok(other) => unreachable!("a list answers sagas, not {other:?}"),
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
