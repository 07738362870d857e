//! The shard's side of sagas (`saga/`): record and read their progress.

use super::{Output, Shard};
use crate::command::{Outcome, Reply, SagaCommand, StepPhase};
use crate::error::Reject;
use crate::record::Record;
use crate::saga::SagaError;
use crate::types::TimestampMs;

impl Shard {
    pub(super) fn saga_command(
        &mut self,
        cmd: SagaCommand,
        now: TimestampMs,
        out: &mut Output,
    ) -> Outcome {
        let mut records = Vec::new();
        let sagas = &mut self.state.sagas;
        let r = match cmd {
            SagaCommand::Begin { id, name, payload } => sagas
                .begin(id, &name, &payload, now, &mut records)
                .map(Reply::Saga),
            SagaCommand::Step { id, step, phase } => match phase {
                StepPhase::Started { name } => sagas.step_started(id, step, &name, &mut records),
                StepPhase::Done { data } => sagas.step_done(id, step, &data, &mut records),
                StepPhase::Failed => sagas.step_failed(id, step, &mut records),
                StepPhase::Compensated => sagas.step_compensated(id, step, &mut records),
            }
            .map(Reply::Saga),
            SagaCommand::Abort { id } => sagas.abort(id, &mut records).map(Reply::Saga),
            SagaCommand::End { id } => sagas.end(id, now, &mut records).map(Reply::Saga),
            SagaCommand::Get { id } => sagas.get(id).map(Reply::Saga),
            SagaCommand::List { shard, .. } if shard != self.id => {
                Err(SagaError::NoSuchShard { shard })
            }
            SagaCommand::List {
                after,
                limit,
                unfinished,
                ..
            } => sagas
                .list(after, limit, unfinished)
                .map(|(sagas, more)| Reply::Sagas { sagas, more }),
        };
        for record in records {
            self.log(Record::Saga(record), out);
        }
        r.map_err(Reject::Saga)
    }

    /// Sagas this shard keeps that have not ended.
    pub fn unfinished_sagas(&self) -> usize {
        self.state.sagas.unfinished()
    }
}

impl From<SagaError> for Reject {
    fn from(e: SagaError) -> Reject {
        Reject::Saga(e)
    }
}
