//! One connection to one shard: a writer any thread may use, and a reader
//! thread that hands each answer frame to the callers waiting for it.
//!
//! Concurrent callers are coalesced into batch frames: a caller queues its
//! requests, then takes the writer and sends everything queued so far in
//! one frame; callers that queued while another was writing find their
//! requests already sent, or go out together in the next frame. The reader
//! splits each frame's answers back among its callers.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use mercato_protocol::{self as wire, Body, ErrorCode, FrameDecoder, Kind, encode_frame};

use crate::error::ClientError;
use crate::tls::{Reader, TlsSettings, Writer};

/// What a waiting caller receives.
pub(crate) type Reply = Result<wire::Answers, ClientError>;

/// The callers of one frame, each with how many of its requests are theirs.
type Callers = Vec<(usize, SyncSender<Reply>)>;

pub(crate) struct ShardConn {
    pub shard: u16,
    writer: Mutex<Writer>,
    /// Requests queued by callers and not yet written.
    queued: Mutex<Vec<(Vec<wire::Request>, SyncSender<Reply>)>>,
    /// Requests one frame may carry (the server's `batch_len_max`).
    batch_len_max: usize,
    /// Bytes of requests one frame may carry, and of answers one may
    /// bring back (`Welcome`): callers are merged within both.
    frame_bytes_max: usize,
    answer_bytes_max: usize,
    /// Requests the server lets one connection have unanswered; past it,
    /// it closes the connection, so callers wait for room instead.
    in_flight_max: u32,
    waiting: Arc<Mutex<HashMap<u64, Callers>>>,
    next_id: AtomicU64,
    /// Requests sent and not yet answered, for the balancer.
    pub outstanding: Arc<AtomicU32>,
    /// The shard's load from its latest answer.
    pub load: Arc<AtomicU32>,
    pub alive: Arc<AtomicBool>,
    /// Lock notices this connection's session is sent.
    pub notices: Arc<Mutex<Notices>>,
    /// Where the batches of a change feed on this connection go.
    pub feed: Arc<Mutex<Option<SyncSender<wire::FeedBatch>>>>,
}

/// Notices kept for a caller who has not yet asked for them: a grant can
/// overtake the `LockQueued` answer it belongs to. Past this many, the
/// oldest are dropped.
const UNCLAIMED_NOTICES_MAX: usize = 1_024;

/// Where a connection's lock notices go.
#[derive(Default)]
pub(crate) struct Notices {
    /// Callers waiting for a queued acquire's outcome, by ticket.
    pub waiting: HashMap<u64, SyncSender<wire::Notice>>,
    /// Notices nobody waited for yet, oldest first.
    pub early: std::collections::VecDeque<wire::Notice>,
    /// Leases held through this connection: set when lost.
    pub held: HashMap<(Vec<u8>, u64), Arc<AtomicBool>>,
}

impl Notices {
    fn take(&mut self, n: wire::Notice) {
        let ticket = match &n {
            wire::Notice::LockGranted { ticket, .. }
            | wire::Notice::LockWaitEnded { ticket, .. } => Some(*ticket),
            wire::Notice::LockLost { name, token, .. } => {
                if let Some(flag) = self.held.remove(&(name.clone(), *token)) {
                    flag.store(true, Ordering::Release);
                    return;
                }
                None
            }
        };
        if let Some(tx) = ticket.and_then(|t| self.waiting.remove(&t)) {
            let _ = tx.send(n);
            return;
        }
        if self.early.len() >= UNCLAIMED_NOTICES_MAX {
            self.early.pop_front();
        }
        self.early.push_back(n);
    }

    /// Waits for `ticket`'s notice: at once if it came already.
    pub fn wait_for(&mut self, ticket: u64) -> Receiver<wire::Notice> {
        let (tx, rx) = sync_channel(1);
        let early = self.early.iter().position(|n| {
            matches!(n, wire::Notice::LockGranted { ticket: t, .. }
                | wire::Notice::LockWaitEnded { ticket: t, .. } if *t == ticket)
        });
        match early {
            Some(at) => {
                let _ = tx.send(self.early.remove(at).expect("found"));
            }
            None => {
                self.waiting.insert(ticket, tx);
            }
        }
        rx
    }

    /// Watches the lease `(name, token)`: the flag is set when it is lost.
    pub fn watch(&mut self, name: &[u8], token: u64) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        let lost_early = self.early.iter().position(|n| {
            matches!(n, wire::Notice::LockLost { name: n, token: t, .. } if n == name && *t == token)
        });
        if let Some(at) = lost_early {
            self.early.remove(at);
            flag.store(true, Ordering::Release);
        } else {
            self.held.insert((name.to_vec(), token), flag.clone());
        }
        flag
    }
}

impl ShardConn {
    /// Connect and shake hands; returns the connection and the server's Welcome.
    pub(crate) fn open(
        addr: SocketAddr,
        token: Option<&str>,
        connect_timeout: Duration,
        tls: Option<&TlsSettings>,
    ) -> Result<(ShardConn, wire::Welcome), ClientError> {
        let connect = |source| ClientError::Connect { addr, source };
        let stream = TcpStream::connect_timeout(&addr, connect_timeout).map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        // Bounds the handshake, TLS's included, and the wait for Welcome.
        stream
            .set_read_timeout(Some(connect_timeout))
            .map_err(connect)?;
        let sock = stream.try_clone().map_err(connect)?;
        let (mut writer, mut reader) = match tls {
            None => (
                Writer::Plain(stream.try_clone().map_err(connect)?),
                Reader::Plain(stream.try_clone().map_err(connect)?),
            ),
            Some(settings) => {
                crate::tls::handshake(stream.try_clone().map_err(connect)?, settings)?
            }
        };
        let hello = wire::Hello {
            version: wire::VERSION,
            auth_token: token.map(String::from),
            client: "mercato-client".into(),
        };
        let mut out = BytesMut::new();
        encode_frame(&mut out, Kind::Hello, 0, &hello.to_body());
        writer.write_all(&out).map_err(connect)?;
        let mut buf = BytesMut::new();
        // A Welcome is small; until it comes, the default limit is plenty.
        let first = read_frame(&mut reader, &mut buf, FrameDecoder::default()).map_err(connect)?;
        let welcome = match first.kind {
            Kind::Welcome => {
                wire::Welcome::from_body(&first.body).map_err(|e| ClientError::Protocol {
                    what: e.to_string(),
                })?
            }
            Kind::Error => return Err(refused(&first.body)),
            k => {
                return Err(ClientError::Protocol {
                    what: format!("a {k:?} frame instead of Welcome"),
                });
            }
        };
        sock.set_read_timeout(None).map_err(connect)?;
        let conn = ShardConn {
            shard: welcome.shard,
            writer: Mutex::new(writer),
            queued: Mutex::default(),
            batch_len_max: welcome.batch_len_max.max(1) as usize,
            frame_bytes_max: welcome.frame_bytes_max as usize,
            answer_bytes_max: welcome.answer_bytes_max as usize,
            in_flight_max: welcome.in_flight_max.max(1),
            waiting: Arc::default(),
            next_id: AtomicU64::new(1),
            outstanding: Arc::default(),
            load: Arc::default(),
            alive: Arc::new(AtomicBool::new(true)),
            notices: Arc::default(),
            feed: Arc::default(),
        };
        // Answers may be as large as the server said they may.
        let decoder = FrameDecoder {
            frame_bytes_max: (welcome.answer_bytes_max as usize).max(wire::FRAME_BYTES_MAX_DEFAULT),
        };
        conn.spawn_reader(reader, buf, decoder);
        Ok((conn, welcome))
    }

    fn spawn_reader(&self, mut stream: Reader, mut buf: BytesMut, decoder: FrameDecoder) {
        let waiting = self.waiting.clone();
        let alive = self.alive.clone();
        let outstanding = self.outstanding.clone();
        let load = self.load.clone();
        let notices = self.notices.clone();
        let feed = self.feed.clone();
        let shard = self.shard;
        std::thread::spawn(move || {
            loop {
                let Ok(frame) = read_frame(&mut stream, &mut buf, decoder) else {
                    break;
                };
                if frame.kind == Kind::Feed {
                    let Ok(batch) = wire::FeedBatch::from_body(&frame.body) else {
                        break;
                    };
                    // Blocks while the consumer is behind: the socket fills
                    // and the server stops reading the feed for it.
                    let tx = feed.lock().unwrap().clone();
                    if let Some(tx) = tx {
                        let _ = tx.send(batch);
                    }
                    continue;
                }
                if frame.kind == Kind::Notice {
                    match wire::Notice::from_body(&frame.body) {
                        Ok(n) => {
                            notices.lock().unwrap().take(n);
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                let reply = match frame.kind {
                    Kind::Answers => {
                        wire::Answers::from_body(&frame.body).map_err(|e| ClientError::Protocol {
                            what: e.to_string(),
                        })
                    }
                    Kind::Error => Err(refused(&frame.body)),
                    k => Err(ClientError::Protocol {
                        what: format!("unexpected {k:?} frame"),
                    }),
                };
                if let Ok(a) = &reply {
                    load.store(a.load, Ordering::Relaxed);
                    outstanding.fetch_sub(a.answers.len() as u32, Ordering::Relaxed);
                }
                let fatal = reply.is_err();
                let callers = waiting.lock().unwrap().remove(&frame.request_id);
                if let Some(callers) = callers {
                    split(reply, callers);
                }
                if fatal {
                    break;
                }
            }
            alive.store(false, Ordering::Release);
            // The feed's receiver sees the end.
            feed.lock().unwrap().take();
            {
                // The session ended with the connection: its waits are
                // gone, and so are its bound leases (and any lease's
                // notices); every lease held through it counts as lost.
                let mut n = notices.lock().unwrap();
                n.waiting.clear();
                for (_, flag) in n.held.drain() {
                    flag.store(true, Ordering::Release);
                }
            }
            for (_, callers) in waiting.lock().unwrap().drain() {
                for (_, tx) in callers {
                    let _ = tx.send(Err(ClientError::Disconnected { shard }));
                }
            }
        });
    }

    /// Send a batch; the receiver gets its answers (or why not).
    pub(crate) fn send(
        &self,
        requests: Vec<wire::Request>,
    ) -> Result<Receiver<Reply>, ClientError> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(ClientError::Disconnected { shard: self.shard });
        }
        let (tx, rx) = sync_channel(1);
        let n = requests.len() as u32;
        // Take room for these requests under the server's in-flight limit,
        // waiting while earlier ones are answered.
        loop {
            let now = self.outstanding.load(Ordering::Acquire);
            let fits = now == 0 || now + n <= self.in_flight_max;
            if fits
                && self
                    .outstanding
                    .compare_exchange(now, now + n, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                break;
            }
            if !self.alive.load(Ordering::Acquire) {
                return Err(ClientError::Disconnected { shard: self.shard });
            }
            if !fits {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        self.queued.lock().unwrap().push((requests, tx));
        // Whoever holds the writer next sends everything queued, ours
        // included unless an earlier holder already did.
        let mut writer = self.writer.lock().unwrap();
        let queued = std::mem::take(&mut *self.queued.lock().unwrap());
        // Merged by count, request bytes and answer bytes, each within what
        // the server announced; a caller's own requests were checked to fit.
        let mut frames: Vec<(Vec<wire::Request>, Callers, usize, usize)> = Vec::new();
        for (reqs, tx) in queued {
            let req_bytes: usize = reqs.iter().map(wire::request_bytes_max).sum();
            let ans_bytes: usize = reqs.iter().map(wire::answer_bytes_max).sum();
            let fits = frames.last().is_some_and(|(batch, _, rb, ab)| {
                batch.len() + reqs.len() <= self.batch_len_max
                    && wire::REQUESTS_BASE_BYTES + rb + req_bytes <= self.frame_bytes_max
                    && wire::ANSWERS_BASE_BYTES + ab + ans_bytes <= self.answer_bytes_max
            });
            if !fits {
                frames.push((Vec::new(), Vec::new(), 0, 0));
            }
            let (batch, callers, rb, ab) = frames.last_mut().expect("a frame");
            callers.push((reqs.len(), tx));
            batch.extend(reqs);
            *rb += req_bytes;
            *ab += ans_bytes;
        }
        for (batch, callers, _, _) in frames {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let body = wire::Requests { requests: batch }.to_body();
            let mut out = BytesMut::with_capacity(wire::HEADER_BYTES + body.len());
            encode_frame(&mut out, Kind::Requests, id, &body);
            self.waiting.lock().unwrap().insert(id, callers);
            if writer.write_all(&out).is_err() {
                self.alive.store(false, Ordering::Release);
                if let Some(callers) = self.waiting.lock().unwrap().remove(&id) {
                    for (_, tx) in callers {
                        let _ = tx.send(Err(ClientError::Disconnected { shard: self.shard }));
                    }
                }
            }
        }
        Ok(rx)
    }

    pub(crate) fn close(&self) {
        self.alive.store(false, Ordering::Release);
        self.writer.lock().unwrap().shutdown();
    }
}

pub(crate) fn refused(body: &[u8]) -> ClientError {
    match wire::ErrorBody::from_body(body) {
        Ok(e) => ClientError::Refused {
            code: ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::Internal),
            message: e.message,
        },
        Err(e) => ClientError::Protocol {
            what: e.to_string(),
        },
    }
}

fn read_frame(
    stream: &mut impl Read,
    buf: &mut BytesMut,
    d: FrameDecoder,
) -> std::io::Result<wire::Frame> {
    let mut chunk = [0u8; 64 << 10];
    loop {
        match d.decode(buf) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Hand each caller of a frame its share of the answers, in order.
fn split(reply: Reply, callers: Callers) {
    let expected: usize = callers.iter().map(|(n, _)| n).sum();
    // One answer per request, or the frame cannot be shared out.
    let reply = reply.and_then(|a| {
        if a.answers.len() == expected {
            Ok(a)
        } else {
            Err(ClientError::Protocol {
                what: format!("{} answers to {expected} requests", a.answers.len()),
            })
        }
    });
    match reply {
        Ok(a) => {
            let mut answers = a.answers.into_iter();
            for (n, tx) in callers {
                let part = wire::Answers {
                    load: a.load,
                    answers: answers.by_ref().take(n).collect(),
                };
                let _ = tx.send(Ok(part));
            }
        }
        Err(e) => {
            let text = e.to_string();
            for (_, tx) in callers {
                let _ = tx.send(Err(ClientError::Protocol { what: text.clone() }));
            }
        }
    }
}
