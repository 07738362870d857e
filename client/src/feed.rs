//! The change feed from a client: a subscription on a connection of its
//! own, whose batches the server pushes as changes commit. Batches come
//! in log order per shard, at least once; acknowledge a named
//! subscription's `next` positions once a batch is dealt with.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mercato_protocol as wire;

use crate::client::{CallResult, Client};
use crate::error::ClientError;
use crate::shard_conn::ShardConn;

/// Batches a stream holds before the connection stops being read, and
/// with it the server stops reading the feed for this subscriber.
const FEED_BATCHES_QUEUED_MAX: usize = 64;

/// A subscription's stream of batches.
pub struct FeedStream {
    conn: Arc<ShardConn>,
    rx: Receiver<wire::FeedBatch>,
    /// Batches taken off the queue while an acknowledgement waited for its
    /// answer, which the server sends behind them: handed out first.
    held: Mutex<VecDeque<wire::FeedBatch>>,
    /// Where the feed started, per shard.
    pub started: Vec<u64>,
}

fn answer(conn: &ShardConn, r: wire::Request) -> CallResult<wire::Reply> {
    let rx = conn.send(vec![r])?;
    let got = rx
        .recv()
        .map_err(|_| ClientError::Disconnected { shard: conn.shard })??;
    answer_of(got)
}

fn answer_of(got: wire::Answers) -> CallResult<wire::Reply> {
    match got.answers.into_iter().next() {
        Some(wire::Answer::Done(reply)) => Ok(Ok(reply)),
        Some(wire::Answer::Rejected(r)) => Ok(Err(r)),
        Some(wire::Answer::Failed { code }) => Err(ClientError::Failed {
            code: wire::ErrorCode::from_u16(code).unwrap_or(wire::ErrorCode::Internal),
        }),
        None => Err(ClientError::Protocol {
            what: "no answer to a request".into(),
        }),
    }
}

impl FeedStream {
    /// The next batch, waiting up to `wait`; `None` if none came. A batch
    /// with an `error` is the last: the subscription ended (it fell behind
    /// what the log keeps, say).
    pub fn next(&self, wait: Duration) -> Result<Option<wire::FeedBatch>, ClientError> {
        if let Some(b) = self.held.lock().unwrap().pop_front() {
            return Ok(Some(b));
        }
        match self.rx.recv_timeout(wait) {
            Ok(b) => Ok(Some(b)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(ClientError::Disconnected {
                shard: self.conn.shard,
            }),
        }
    }

    /// Saves a named subscription's positions: a batch's `next`, once it
    /// and those before it are dealt with.
    pub fn ack(&self, positions: &[u64]) -> CallResult<()> {
        let rx = self.conn.send(vec![wire::Request::FeedAck {
            positions: positions.to_vec(),
        }])?;
        // The answer comes behind the batches pushed before it; the
        // connection's reader blocks on a full queue, so keep taking them.
        // They are at most what the server had sent before it read the
        // acknowledgement: it stops reading the feed while 1 MiB waits.
        let got = loop {
            match rx.recv_timeout(Duration::from_millis(ACK_DRAIN_MS)) {
                Ok(got) => break got?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(ClientError::Disconnected {
                        shard: self.conn.shard,
                    });
                }
            }
            let mut held = self.held.lock().unwrap();
            while let Ok(b) = self.rx.try_recv() {
                held.push_back(b);
            }
        };
        Ok(answer_of(got)?.map(|_| ()))
    }
}

/// How long an acknowledgement waits for its answer before it takes the
/// feed batches queued ahead of it.
const ACK_DRAIN_MS: u64 = 5;

impl Drop for FeedStream {
    fn drop(&mut self) {
        self.conn.close();
    }
}

impl Client {
    /// Follows the change feed from `start`; with `name`, as a durable
    /// subscription (resumed from what it acknowledged). Its own
    /// connection carries it.
    pub fn subscribe(
        &self,
        name: Option<&str>,
        start: wire::FeedStart,
        filter: wire::FeedFilter,
    ) -> CallResult<FeedStream> {
        let conn = Arc::new(self.fresh_conn(0)?);
        let (tx, rx) = sync_channel(FEED_BATCHES_QUEUED_MAX);
        *conn.feed.lock().unwrap() = Some(tx);
        let r = answer(
            &conn,
            wire::Request::Subscribe {
                name: name.map(String::from),
                start,
                filter,
            },
        )?;
        match r {
            Ok(wire::Reply::Subscribed { positions }) => Ok(Ok(FeedStream {
                conn,
                rx,
                held: Mutex::new(VecDeque::new()),
                started: positions,
            })),
            Ok(other) => Err(ClientError::Protocol {
                what: format!("a subscription answered {other:?}"),
            }),
            Err(r) => Ok(Err(r)),
        }
    }

    /// The server's durable subscriptions.
    pub fn subscriptions(&self) -> CallResult<Vec<wire::SubscriptionInfo>> {
        match self.one_on(0, wire::Request::SubscriptionList)? {
            Ok(wire::Reply::Subscriptions(list)) => Ok(Ok(list)),
            Ok(other) => Err(ClientError::Protocol {
                what: format!("a subscription list answered {other:?}"),
            }),
            Err(r) => Ok(Err(r)),
        }
    }

    /// Forgets a durable subscription; whether it existed.
    pub fn drop_subscription(&self, name: &str) -> CallResult<bool> {
        match self.one_on(
            0,
            wire::Request::SubscriptionDrop {
                name: name.to_string(),
            },
        )? {
            Ok(wire::Reply::Deleted(existed)) => Ok(Ok(existed)),
            Ok(other) => Err(ClientError::Protocol {
                what: format!("a subscription drop answered {other:?}"),
            }),
            Err(r) => Ok(Err(r)),
        }
    }
}
