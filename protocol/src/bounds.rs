//! How many bytes a request or its answer can take on the wire, known
//! before anything runs.
//!
//! A server must not start work whose answer it cannot send: a batch of
//! 4,096 `ListOrders` at the largest page would ask a shard to build
//! gigabytes, and rkyv's 32-bit relative offsets cannot even address an
//! archive past 2 GiB. Both sides therefore compute the same upper bound
//! from the request alone: the server refuses a batch whose bound passes
//! `Welcome::answer_bytes_max` before it runs anything, and the client
//! never merges callers into a frame past that bound or past
//! `Welcome::frame_bytes_max`.
//!
//! The bounds are sums of the archived types' sizes, so they follow the
//! types if a field is added; a property test encodes random requests and
//! answers and checks each stays inside its bound.

use core::mem::size_of;

use crate::message::{
    Answer, ArchivedAnswer, ArchivedAnswers, ArchivedLine, ArchivedLineRequest, ArchivedLockHolder,
    ArchivedOrderView, ArchivedRequest, ArchivedRequests, FencedWrite, Request,
};

/// Lines in one order; the engine's limit, fixed by the protocol so that
/// an order's answer has a known size.
pub const ORDER_LINES_MAX: usize = 64;
/// The largest cache keyspace value: a quarter of the default frame, so a
/// few fit one batch.
pub const CACHE_VALUE_BYTES_MAX: usize = 256 << 10;
/// The longest cache keyspace key.
pub const CACHE_KEY_BYTES_MAX: usize = 1_024;
/// Bytes of orders one `ListOrders` page holds at most, however large its
/// `limit`: a page stops early, with `more` set, rather than pass it.
pub const LIST_PAGE_BYTES_MAX: usize = 64 << 10;
/// The longest text an `Info` answer carries in one field.
pub const INFO_TEXT_BYTES_MAX: usize = 1_024;
/// The most permits a semaphore has, and so holders `LockInspect` lists.
pub const LOCK_PERMITS_MAX: usize = 1_024;
/// The longest lock or semaphore name.
pub const LOCK_NAME_BYTES_MAX: usize = 256;
/// Shards a server may run (the engine's `SHARDS_MAX`): positions, one
/// per shard, are bounded by it.
pub const SHARDS_MAX: usize = 256;
/// Subscriptions a `SubscriptionList` answers at most (the first by name).
pub const SUBSCRIPTIONS_LISTED_MAX: usize = 64;
/// The longest subscription name.
pub const SUBSCRIPTION_NAME_BYTES_MAX: usize = 64;
/// SKUs and accounts a `FeedFilter` lists at most, each.
pub const FEED_FILTER_IDS_MAX: usize = 1_024;

/// The longest saga or step name.
pub const SAGA_NAME_BYTES_MAX: usize = 128;
/// The longest saga payload or step data.
pub const SAGA_DATA_BYTES_MAX: usize = 1_024;
/// Most steps of one saga.
pub const SAGA_STEPS_MAX: usize = 32;
/// Most sagas one `SagaList` answers.
pub const SAGA_LIST_LIMIT_MAX: u32 = 100;
/// Bytes of sagas (as [`saga_view_bytes`] counts them) one `SagaList` page
/// holds at most; a page stops early, with `more` set, rather than pass
/// it, and always holds at least one saga.
pub const SAGA_PAGE_BYTES_MAX: usize = 256 << 10;

/// A saga's view as an answer carries it.
pub fn saga_view_bytes(v: &crate::message::SagaView) -> usize {
    let steps = v.steps.iter().map(|s| (s.name.len(), s.data.len()));
    saga_view_bytes_of(v.name.len(), v.payload.len(), steps)
}

/// [`saga_view_bytes`] from the lengths alone: its name's, its payload's,
/// and each step's name's and data's.
pub fn saga_view_bytes_of(
    name: usize,
    payload: usize,
    steps: impl Iterator<Item = (usize, usize)>,
) -> usize {
    size_of::<crate::message::ArchivedSagaView>()
        + name
        + payload
        + 3 * BLOCK_SLACK_BYTES
        + steps
            .map(|(name, data)| {
                size_of::<crate::message::ArchivedStepView>() + name + data + 2 * BLOCK_SLACK_BYTES
            })
            .sum::<usize>()
}

/// The most bytes one saga's view can take.
pub const SAGA_VIEW_BYTES_MAX: usize = size_of::<crate::message::ArchivedSagaView>()
    + SAGA_NAME_BYTES_MAX
    + SAGA_DATA_BYTES_MAX
    + 3 * BLOCK_SLACK_BYTES
    + SAGA_STEPS_MAX
        * (size_of::<crate::message::ArchivedStepView>()
            + SAGA_NAME_BYTES_MAX
            + SAGA_DATA_BYTES_MAX
            + 2 * BLOCK_SLACK_BYTES);

const _: () = assert!(SAGA_VIEW_BYTES_MAX <= SAGA_PAGE_BYTES_MAX);

/// The longest `Hello::client` name.
pub const HELLO_CLIENT_BYTES_MAX: usize = 64;
/// The longest auth token a `Hello` may carry.
pub const AUTH_TOKEN_BYTES_MAX: usize = 1_024;
/// The largest frame a server reads before the handshake: a `Hello` with
/// the longest token and name fits many times over, and nobody can make an
/// unauthenticated server reserve a full frame's buffer.
pub const HELLO_FRAME_BYTES_MAX: usize = 4_096;

/// Padding one out-of-line block (a vector's items, a string's bytes) may
/// need to reach its alignment, plus its relative pointer's room: the
/// largest alignment in these archives is 16 (`u128`).
const BLOCK_SLACK_BYTES: usize = 16;

/// An order's view as an answer carries it, with `lines` lines.
pub const fn order_view_bytes(lines: usize) -> usize {
    size_of::<ArchivedOrderView>() + lines * size_of::<ArchivedLine>() + BLOCK_SLACK_BYTES
}

/// The most bytes `r`'s answer adds to an `Answers` body.
pub fn answer_bytes_max(r: &Request) -> usize {
    let out_of_line = match r {
        Request::PlaceOrder { lines, .. } => {
            lines.len().min(ORDER_LINES_MAX) * size_of::<ArchivedLine>() + BLOCK_SLACK_BYTES
        }
        Request::Pay { .. }
        | Request::Cancel { .. }
        | Request::Refund { .. }
        | Request::GetOrder { .. } => {
            ORDER_LINES_MAX * size_of::<ArchivedLine>() + BLOCK_SLACK_BYTES
        }
        Request::ListOrders { limit, .. } => {
            (*limit as usize)
                .saturating_mul(order_view_bytes(ORDER_LINES_MAX))
                .min(LIST_PAGE_BYTES_MAX)
                + BLOCK_SLACK_BYTES
        }
        Request::CacheGet { .. } => CACHE_VALUE_BYTES_MAX + BLOCK_SLACK_BYTES,
        // Three texts and the shards, each its own block.
        // Out of line itself; three texts and the shards, each its own block.
        Request::Info => {
            size_of::<crate::message::ArchivedServerInfo>()
                + 3 * INFO_TEXT_BYTES_MAX
                + SHARDS_MAX * size_of::<crate::message::ArchivedShardInfo>()
                + 5 * BLOCK_SLACK_BYTES
        }
        Request::LockInspect { .. } => {
            LOCK_PERMITS_MAX * size_of::<ArchivedLockHolder>() + BLOCK_SLACK_BYTES
        }
        Request::Fenced { write, .. } => match &**write {
            FencedWrite::PlaceOrder { lines, .. } => {
                lines.len().min(ORDER_LINES_MAX) * size_of::<ArchivedLine>() + BLOCK_SLACK_BYTES
            }
            FencedWrite::Pay { .. } | FencedWrite::Cancel { .. } | FencedWrite::Refund { .. } => {
                ORDER_LINES_MAX * size_of::<ArchivedLine>() + BLOCK_SLACK_BYTES
            }
            _ => 0,
        },
        Request::LockAcquire { .. }
        | Request::LockRenew { .. }
        | Request::LockRelease { .. }
        | Request::LockCancel { .. } => 0,
        Request::SagaBegin { .. }
        | Request::SagaStep { .. }
        | Request::SagaAbort { .. }
        | Request::SagaEnd { .. }
        | Request::SagaGet { .. } => SAGA_VIEW_BYTES_MAX,
        Request::Subscribe { .. } => SHARDS_MAX * 8 + BLOCK_SLACK_BYTES,
        Request::SubscriptionList => {
            SUBSCRIPTIONS_LISTED_MAX
                * (size_of::<crate::message::ArchivedSubscriptionInfo>()
                    + SUBSCRIPTION_NAME_BYTES_MAX
                    + SHARDS_MAX * 8
                    + 2 * BLOCK_SLACK_BYTES)
                + BLOCK_SLACK_BYTES
        }
        Request::FeedAck { .. } | Request::Unsubscribe | Request::SubscriptionDrop { .. } => 0,
        Request::SagaList { limit, .. } => {
            (*limit as usize)
                .saturating_mul(SAGA_VIEW_BYTES_MAX)
                .min(SAGA_PAGE_BYTES_MAX)
                + BLOCK_SLACK_BYTES
        }
        Request::PutSku { .. }
        | Request::Restock { .. }
        | Request::Deposit { .. }
        | Request::Withdraw { .. }
        | Request::GetSku { .. }
        | Request::GetAccount { .. }
        | Request::CacheSet { .. }
        | Request::CacheDel { .. }
        | Request::CacheStats => 0,
    };
    size_of::<ArchivedAnswer>() + out_of_line
}

/// What an `Answers` body takes beyond its answers.
pub const ANSWERS_BASE_BYTES: usize = size_of::<ArchivedAnswers>() + BLOCK_SLACK_BYTES;

/// The most bytes the `Answers` body to `requests` can take.
pub fn answers_bytes_max<'a>(requests: impl IntoIterator<Item = &'a Request>) -> usize {
    requests
        .into_iter()
        .fold(ANSWERS_BASE_BYTES, |sum, r| sum + answer_bytes_max(r))
}

/// The most bytes `r` adds to a `Requests` body.
pub fn request_bytes_max(r: &Request) -> usize {
    let out_of_line = match r {
        Request::PlaceOrder { lines, .. } => {
            lines.len() * size_of::<ArchivedLineRequest>() + BLOCK_SLACK_BYTES
        }
        Request::CacheSet { key, value, .. } => key.len() + value.len() + 2 * BLOCK_SLACK_BYTES,
        Request::CacheGet { key } | Request::CacheDel { key } => key.len() + BLOCK_SLACK_BYTES,
        Request::LockAcquire { name, .. }
        | Request::LockRenew { name, .. }
        | Request::LockRelease { name, .. }
        | Request::LockInspect { name }
        | Request::LockCancel { name, .. } => name.len() + BLOCK_SLACK_BYTES,
        Request::Subscribe {
            name,
            start,
            filter,
        } => {
            let at = match start {
                crate::message::FeedStart::At(v) => v.len() * 8,
                _ => 0,
            };
            name.as_ref().map_or(0, String::len)
                + at
                + (filter.skus.len() + filter.accounts.len()) * 8
                + 4 * BLOCK_SLACK_BYTES
        }
        Request::FeedAck { positions } => positions.len() * 8 + BLOCK_SLACK_BYTES,
        Request::SubscriptionDrop { name } => name.len() + BLOCK_SLACK_BYTES,
        Request::SagaBegin { name, payload, .. } => {
            name.len() + payload.len() + 2 * BLOCK_SLACK_BYTES
        }
        Request::SagaStep {
            phase:
                crate::message::StepPhase::Started { name: b }
                | crate::message::StepPhase::Done { data: b },
            ..
        } => b.len() + BLOCK_SLACK_BYTES,
        Request::Fenced { lock, write, .. } => {
            let inner = size_of::<crate::message::ArchivedFencedWrite>()
                + BLOCK_SLACK_BYTES
                + match &**write {
                    FencedWrite::PlaceOrder { lines, .. } => {
                        lines.len() * size_of::<ArchivedLineRequest>() + BLOCK_SLACK_BYTES
                    }
                    FencedWrite::CacheSet { key, value, .. } => {
                        key.len() + value.len() + 2 * BLOCK_SLACK_BYTES
                    }
                    _ => 0,
                };
            lock.len() + BLOCK_SLACK_BYTES + inner
        }
        _ => 0,
    };
    size_of::<ArchivedRequest>() + out_of_line
}

/// What a `Requests` body takes beyond its requests.
pub const REQUESTS_BASE_BYTES: usize = size_of::<ArchivedRequests>() + BLOCK_SLACK_BYTES;

/// The most bytes the `Requests` body holding `requests` can take.
pub fn requests_bytes_max<'a>(requests: impl IntoIterator<Item = &'a Request>) -> usize {
    requests
        .into_iter()
        .fold(REQUESTS_BASE_BYTES, |sum, r| sum + request_bytes_max(r))
}

/// The bytes `a` actually adds to an `Answers` body, at most; for a server
/// that checks an answer it built against what was reserved for it.
pub fn answer_bytes(a: &Answer) -> usize {
    use crate::message::Reply;
    let out_of_line = match a {
        Answer::Done(Reply::Order(o)) => {
            o.lines.len() * size_of::<ArchivedLine>() + BLOCK_SLACK_BYTES
        }
        Answer::Done(Reply::Orders { orders, .. }) => {
            orders
                .iter()
                .map(|o| order_view_bytes(o.lines.len()))
                .sum::<usize>()
                + BLOCK_SLACK_BYTES
        }
        Answer::Done(Reply::Value(Some(v))) => v.len() + BLOCK_SLACK_BYTES,
        Answer::Done(Reply::Info(i)) => {
            size_of::<crate::message::ArchivedServerInfo>()
                + BLOCK_SLACK_BYTES
                + i.snapshot_error.len()
                + i.version.len()
                + i.durability.len()
                + i.shard_states.len() * size_of::<crate::message::ArchivedShardInfo>()
                + 4 * BLOCK_SLACK_BYTES
        }
        Answer::Done(Reply::LockInfo(i)) => {
            i.holders.len() * size_of::<ArchivedLockHolder>() + BLOCK_SLACK_BYTES
        }
        Answer::Done(Reply::Saga(v)) => saga_view_bytes(v),
        Answer::Done(Reply::Subscribed { positions }) => positions.len() * 8 + BLOCK_SLACK_BYTES,
        Answer::Done(Reply::Subscriptions(list)) => {
            list.iter()
                .map(|s| {
                    size_of::<crate::message::ArchivedSubscriptionInfo>()
                        + s.name.len()
                        + s.positions.len() * 8
                        + 2 * BLOCK_SLACK_BYTES
                })
                .sum::<usize>()
                + BLOCK_SLACK_BYTES
        }
        Answer::Done(Reply::Sagas { sagas, .. }) => {
            sagas.iter().map(saga_view_bytes).sum::<usize>() + BLOCK_SLACK_BYTES
        }
        _ => 0,
    };
    size_of::<ArchivedAnswer>() + out_of_line
}

// A single request's answer must always fit the smallest answer budget a
// server may be given, so that no lone request is ever refused.
const _: () = assert!(LIST_PAGE_BYTES_MAX >= order_view_bytes(ORDER_LINES_MAX));
const _: () = assert!(HELLO_FRAME_BYTES_MAX > AUTH_TOKEN_BYTES_MAX + HELLO_CLIENT_BYTES_MAX + 256);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;
    use crate::message::*;
    use proptest::prelude::*;

    fn order(lines: usize) -> OrderView {
        OrderView {
            id: u128::MAX,
            account: u64::MAX,
            lines: (0..lines)
                .map(|i| Line {
                    sku: i as u64,
                    qty: 1,
                    unit_price: u64::MAX,
                })
                .collect(),
            total: u64::MAX,
            state: OrderState::Refunded,
            created_at: 1,
            expires_at: 2,
            restocked: true,
        }
    }

    fn line_requests(n: usize) -> Vec<LineRequest> {
        (0..n)
            .map(|i| LineRequest {
                sku: i as u64,
                qty: 3,
                expected_unit_price: Some(9),
            })
            .collect()
    }

    /// A saga with `steps` steps, every name and blob as long as allowed.
    fn saga(steps: usize) -> SagaView {
        SagaView {
            id: u128::MAX,
            name: vec![b'n'; SAGA_NAME_BYTES_MAX],
            payload: vec![1; SAGA_DATA_BYTES_MAX],
            state: SagaState::Compensating,
            steps: (0..steps)
                .map(|_| StepView {
                    name: vec![b's'; SAGA_NAME_BYTES_MAX],
                    state: StepState::Done,
                    data: vec![2; SAGA_DATA_BYTES_MAX],
                })
                .collect(),
            began_at: u64::MAX,
            ended_at: u64::MAX,
        }
    }

    /// Lock, saga and fenced requests, and the largest answers they get.
    fn coordination() -> impl Strategy<Value = (Request, Answer)> {
        prop_oneof![
            (1usize..=LOCK_NAME_BYTES_MAX, 0usize..=LOCK_PERMITS_MAX).prop_map(|(n, h)| (
                Request::LockInspect {
                    name: vec![b'l'; n]
                },
                Answer::Done(Reply::LockInfo(LockInfo {
                    permits: h as u32,
                    holders: (0..h)
                        .map(|i| LockHolder {
                            token: i as u64,
                            owner: u64::MAX,
                            expires_at: u64::MAX,
                            remaining_ms: u64::MAX,
                        })
                        .collect(),
                    last_token: u64::MAX,
                    waiters: u32::MAX,
                }))
            )),
            (1usize..=LOCK_NAME_BYTES_MAX).prop_map(|n| (
                Request::LockAcquire {
                    name: vec![b'l'; n],
                    owner: 1,
                    permits: 3,
                    ttl_ms: 10,
                    wait: LockWait::Ms(5),
                    bind: true,
                },
                Answer::Done(Reply::LockGranted {
                    token: u64::MAX,
                    expires_at: u64::MAX
                })
            )),
            (0usize..=SAGA_STEPS_MAX).prop_map(|n| (
                Request::SagaStep {
                    id: 1,
                    step: 2,
                    phase: StepPhase::Done {
                        data: vec![3; SAGA_DATA_BYTES_MAX]
                    },
                },
                Answer::Done(Reply::Saga(saga(n)))
            )),
            (1u32..=SAGA_LIST_LIMIT_MAX).prop_map(|limit| {
                let n = (limit as usize)
                    .min(SAGA_PAGE_BYTES_MAX / saga_view_bytes(&saga(SAGA_STEPS_MAX)));
                (
                    Request::SagaList {
                        shard: 1,
                        after: Some(u128::MAX),
                        limit,
                        unfinished: true,
                    },
                    Answer::Done(Reply::Sagas {
                        sagas: (0..n).map(|_| saga(SAGA_STEPS_MAX)).collect(),
                        more: true,
                    }),
                )
            }),
            (0usize..=ORDER_LINES_MAX, 1usize..=LOCK_NAME_BYTES_MAX).prop_map(|(n, l)| (
                Request::Fenced {
                    lock: vec![b'l'; l],
                    token: 9,
                    write: Box::new(FencedWrite::PlaceOrder {
                        id: 1,
                        account: 2,
                        lines: line_requests(n),
                        payment: Payment::Immediate,
                    }),
                },
                Answer::Done(Reply::Order(order(n)))
            )),
            Just((
                Request::Fenced {
                    lock: vec![b'l'; 3],
                    token: 9,
                    write: Box::new(FencedWrite::Refund {
                        account: 2,
                        order: 4,
                        restock: true
                    }),
                },
                Answer::Done(Reply::Order(order(ORDER_LINES_MAX)))
            )),
        ]
    }

    /// A request, and the largest answer it may get.
    fn request_and_answer() -> impl Strategy<Value = (Request, Answer)> {
        prop_oneof![
            coordination(),
            (0usize..=ORDER_LINES_MAX).prop_map(|n| (
                Request::PlaceOrder {
                    id: u128::MAX,
                    account: 1,
                    lines: line_requests(n),
                    payment: Payment::Deferred { ttl_ms: 5 },
                },
                Answer::Done(Reply::Order(order(n)))
            )),
            Just((
                Request::Pay {
                    account: 1,
                    order: 2
                },
                Answer::Done(Reply::Order(order(ORDER_LINES_MAX)))
            )),
            (1u32..=1_000).prop_map(|limit| {
                // As many of the largest orders as the page allows.
                let n =
                    (limit as usize).min(LIST_PAGE_BYTES_MAX / order_view_bytes(ORDER_LINES_MAX));
                (
                    Request::ListOrders {
                        account: 1,
                        after: Some(3),
                        limit,
                    },
                    Answer::Done(Reply::Orders {
                        orders: (0..n).map(|_| order(ORDER_LINES_MAX)).collect(),
                        more: true,
                    }),
                )
            }),
            (0usize..=CACHE_KEY_BYTES_MAX, 0usize..=CACHE_VALUE_BYTES_MAX).prop_map(|(k, v)| (
                Request::CacheGet { key: vec![7; k] },
                Answer::Done(Reply::Value(Some(vec![1; v])))
            )),
            (0usize..=CACHE_KEY_BYTES_MAX, 0usize..=4096).prop_map(|(k, v)| (
                Request::CacheSet {
                    key: vec![7; k],
                    value: vec![1; v],
                    ttl_ms: 1
                },
                Answer::Done(Reply::Stored)
            )),
            Just((
                Request::CacheStats,
                Answer::Done(Reply::CacheStats(CacheStats {
                    hits: 1,
                    misses: 1,
                    inserts: 1,
                    evictions: 1,
                    expirations: 1,
                    entries: 1,
                    bytes: 1,
                    budget_bytes: 1,
                    policy: 1
                }))
            )),
            (
                0usize..=INFO_TEXT_BYTES_MAX,
                0usize..=INFO_TEXT_BYTES_MAX,
                0usize..=SHARDS_MAX
            )
                .prop_map(|(n, v, shards)| (
                    Request::Info,
                    Answer::Done(Reply::Info(Box::new(ServerInfo {
                        shards: shards as u16,
                        connections: 9,
                        snapshot_failures: 3,
                        snapshot_error: "e".repeat(n),
                        failed_logs: 1,
                        version: "v".repeat(v),
                        uptime_ms: u64::MAX,
                        durability: "d".repeat(INFO_TEXT_BYTES_MAX - v),
                        rss_bytes: u64::MAX,
                        shard_states: vec![
                            crate::message::ShardInfo {
                                committed_lsn: u64::MAX,
                                skus: 1,
                                accounts: 2,
                                orders: 3,
                                checkpoint_lsn: u64::MAX,
                                checkpoint_age_ms: Some(u64::MAX),
                            };
                            shards
                        ],
                    })))
                )),
            Just((
                Request::GetSku { sku: 1 },
                Answer::Rejected(Reject::PerUserLimit {
                    sku: 1,
                    limit: 1,
                    already: 1,
                    requested: 1
                })
            )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn encoded_bodies_stay_inside_their_bounds(
            pairs in proptest::collection::vec(request_and_answer(), 0..24)
        ) {
            let (requests, answers): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
            for (r, a) in requests.iter().zip(&answers) {
                prop_assert!(answer_bytes(a) <= answer_bytes_max(r), "{r:?}");
            }
            let bound = answers_bytes_max(&requests);
            let body = Answers { load: 7, answers: answers.clone() }.to_body();
            prop_assert!(body.len() <= bound, "{} > {}", body.len(), bound);
            let actual = ANSWERS_BASE_BYTES + answers.iter().map(answer_bytes).sum::<usize>();
            prop_assert!(body.len() <= actual, "{} > {}", body.len(), actual);
            let bound = requests_bytes_max(&requests);
            let body = Requests { requests }.to_body();
            prop_assert!(body.len() <= bound, "{} > {}", body.len(), bound);
        }
    }

    #[test]
    fn a_hello_with_the_longest_token_and_name_fits_the_handshake_frame() {
        let h = Hello {
            version: crate::VERSION,
            auth_token: Some("t".repeat(AUTH_TOKEN_BYTES_MAX)),
            client: "c".repeat(HELLO_CLIENT_BYTES_MAX),
        };
        assert!(h.to_body().len() <= HELLO_FRAME_BYTES_MAX);
    }
}
