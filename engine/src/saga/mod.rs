//! Sagas for the steps outside mercato (issue 26): the durable record of a
//! saga's progress, as a pure table in the shard's style. The orchestrator
//! that runs the steps lives in the client (`mercato-client`'s `saga`);
//! mercato keeps what it needs to resume after the orchestrator crashes.
//!
//! A saga has an id (u128, the caller's), a name (which kind of saga, so a
//! recovering orchestrator knows what to run) and a payload (its input).
//! Its steps are numbered from 0 and started in order. Each step is
//! `Started` before its action runs and `Done` (with the data its
//! compensation needs) or `Failed` after. A saga ends `Committed` once
//! every step is done, or is aborted (`Compensating`) and ends
//! `Compensated` once every step it started is compensated, newest first.
//!
//! What Seata's TCC and saga modes expect of the steps holds here too: a
//! step's action and compensation are idempotent by (saga id, step), and a
//! compensation must succeed for a step whose action never ran (the
//! outcome of a `Started` or `Failed` step is unknown, so it is
//! compensated too) and must fence a late action out.
//!
//! Every call is idempotent: repeating what was already recorded answers
//! the saga as it stands and changes nothing, so an orchestrator that
//! crashed between a step and its record simply records again.

mod table;

pub use table::{
    SAGA_DATA_BYTES_MAX, SAGA_LIST_LIMIT_MAX, SAGA_NAME_BYTES_MAX, SAGA_STEPS_MAX,
    SAGAS_FINISHED_MAX, SagaError, SagaRecord, SagaState, SagaView, Sagas, StepState, StepView,
};
