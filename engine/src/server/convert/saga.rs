//! Saga requests, views and refusals between the wire and the engine.

use mercato_protocol as wire;

use crate::command::{Command, SagaCommand, StepPhase};
use crate::saga::{SagaError, SagaState, SagaView, StepState};

pub(super) fn command(r: wire::Request) -> Option<Command> {
    use wire::Request as W;
    Some(Command::Saga(match r {
        W::SagaBegin { id, name, payload } => SagaCommand::Begin {
            id,
            name: name.into(),
            payload: payload.into(),
        },
        W::SagaStep { id, step, phase } => SagaCommand::Step {
            id,
            step,
            phase: match phase {
                wire::StepPhase::Started { name } => StepPhase::Started { name: name.into() },
                wire::StepPhase::Done { data } => StepPhase::Done { data: data.into() },
                wire::StepPhase::Failed => StepPhase::Failed,
                wire::StepPhase::Compensated => StepPhase::Compensated,
            },
        },
        W::SagaAbort { id } => SagaCommand::Abort { id },
        W::SagaEnd { id } => SagaCommand::End { id },
        W::SagaGet { id } => SagaCommand::Get { id },
        W::SagaList {
            shard,
            after,
            limit,
            unfinished,
        } => SagaCommand::List {
            shard,
            after,
            limit,
            unfinished,
        },
        _ => return None,
    }))
}

pub(super) fn request(c: SagaCommand) -> wire::Request {
    use wire::Request as W;
    match c {
        SagaCommand::Begin { id, name, payload } => W::SagaBegin {
            id,
            name: name.into(),
            payload: payload.into(),
        },
        SagaCommand::Step { id, step, phase } => W::SagaStep {
            id,
            step,
            phase: match phase {
                StepPhase::Started { name } => wire::StepPhase::Started { name: name.into() },
                StepPhase::Done { data } => wire::StepPhase::Done { data: data.into() },
                StepPhase::Failed => wire::StepPhase::Failed,
                StepPhase::Compensated => wire::StepPhase::Compensated,
            },
        },
        SagaCommand::Abort { id } => W::SagaAbort { id },
        SagaCommand::End { id } => W::SagaEnd { id },
        SagaCommand::Get { id } => W::SagaGet { id },
        SagaCommand::List {
            shard,
            after,
            limit,
            unfinished,
        } => W::SagaList {
            shard,
            after,
            limit,
            unfinished,
        },
    }
}

fn saga_state(s: SagaState) -> wire::SagaState {
    match s {
        SagaState::Running => wire::SagaState::Running,
        SagaState::Compensating => wire::SagaState::Compensating,
        SagaState::Committed => wire::SagaState::Committed,
        SagaState::Compensated => wire::SagaState::Compensated,
    }
}

fn step_state(s: StepState) -> wire::StepState {
    match s {
        StepState::Started => wire::StepState::Started,
        StepState::Done => wire::StepState::Done,
        StepState::Failed => wire::StepState::Failed,
        StepState::Compensated => wire::StepState::Compensated,
    }
}

pub(super) fn view(v: SagaView) -> wire::SagaView {
    wire::SagaView {
        id: v.id,
        name: v.name.into(),
        payload: v.payload.into(),
        state: saga_state(v.state),
        steps: (v.steps.into_iter())
            .map(|s| wire::StepView {
                name: s.name.into(),
                state: step_state(s.state),
                data: s.data.into(),
            })
            .collect(),
        began_at: v.began_at,
        ended_at: v.ended_at,
    }
}

pub(super) fn reject(e: SagaError) -> wire::SagaReject {
    use wire::SagaReject as W;
    match e {
        SagaError::InvalidName { len } => W::InvalidName { len: len as u64 },
        SagaError::DataTooLarge { len } => W::DataTooLarge { len: len as u64 },
        SagaError::Unknown => W::Unknown,
        SagaError::Conflict => W::Conflict,
        SagaError::TooManySteps => W::TooManySteps,
        SagaError::OutOfOrder { step, next } => W::OutOfOrder { step, next },
        SagaError::StepMismatch { step } => W::StepMismatch { step },
        SagaError::WrongState { state } => W::WrongState {
            state: saga_state(state),
        },
        SagaError::WrongStepState { step, state } => W::WrongStepState {
            step,
            state: step_state(state),
        },
        SagaError::NotReady => W::NotReady,
        SagaError::InvalidLimit { limit, max } => W::InvalidLimit { limit, max },
        SagaError::NoSuchShard { shard } => W::NoSuchShard { shard },
    }
}
