//! One client connection's protocol state, without the socket: bytes in,
//! batches to run out; answers in, bytes to write out. The event loop owns
//! the socket and does the I/O; everything that decides (framing, the
//! handshake, authentication, limits, answer order) is here, where a test
//! can drive it byte by byte.

use std::collections::VecDeque;

use bytes::BytesMut;
use mercato_protocol::{
    self as wire, Body, ErrorBody, ErrorCode, FrameDecoder, Kind, encode_frame,
};

/// What may wait in a connection's output beyond its answer budget: one
/// answer frame's header past the budget (a batch alone may use all of
/// it), the `Welcome`, an error frame.
const OUTPUT_SLACK_BYTES: usize = 64 << 10;

/// Bounds on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    pub frame_bytes_max: usize,
    pub batch_len_max: usize,
    /// Requests sent and not yet answered; an empty batch counts as one.
    pub in_flight_max: usize,
    /// Answer bytes one connection may have reserved for its running
    /// batches plus waiting to be written (`Welcome::answer_bytes_max`).
    /// A batch whose bound passes it alone is refused; one that fits once
    /// earlier answers are read waits, and the connection is not read
    /// meanwhile, so a client that does not read stops being read.
    pub answer_bytes_max: usize,
    /// A connection that has not sent its `Hello` this long after it was
    /// accepted is closed, so silent sockets cannot hold the slots.
    pub handshake_timeout_ms: u64,
    /// A connection with nothing running, nothing to write and nothing read
    /// for this long is closed; 0 never closes one for idleness.
    pub idle_timeout_ms: u64,
}

/// What the event loop must do for a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Run these requests; hand the answers to [`Conn::answer`] with this
    /// `seq`, the connection's own number for the batch: a client may use
    /// one request id for two batches, and answers must not swap.
    Batch {
        seq: u64,
        requests: Vec<wire::Request>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    Ready,
    /// An error frame is queued; write it out, then close.
    Closing,
}

/// A batch accepted and not yet written out.
struct Pending {
    seq: u64,
    request_id: u64,
    /// What it counts against `in_flight_max`.
    counted: usize,
    /// Answer bytes reserved for it.
    reserved_bytes: usize,
    answers: Option<wire::Answers>,
}

pub struct Conn {
    phase: Phase,
    limits: ConnLimits,
    decoder: FrameDecoder,
    /// The tokens the server accepts; none lets every connection in as
    /// `admin`.
    tokens: std::sync::Arc<crate::access::Tokens>,
    /// What this connection's token allows, once its `Hello` is in.
    role: crate::access::Role,
    welcome: wire::Welcome,
    inbuf: BytesMut,
    outbuf: BytesMut,
    /// Batches in the order they arrived, with their answers once known:
    /// answers leave in that order whichever shard finished first.
    pending: VecDeque<Pending>,
    in_flight: usize,
    /// Answer bytes reserved by `pending`.
    reserved_bytes: usize,
    /// A batch read while its answers had no room: it runs once earlier
    /// answers are written, and nothing more is read until then.
    parked: Option<(u64, wire::Requests, usize)>,
    next_seq: u64,
    accepted_ms: u64,
    last_active_ms: u64,
    /// When output last left for the socket, or last began to wait.
    last_written_ms: u64,
    /// The connection is a lock session: its silence is not idleness.
    session: bool,
}

/// What a connection's deadlines came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    Met,
    /// An error frame is queued: write it, then close.
    Closing,
    /// Its client has read nothing for a whole idle timeout while answers
    /// wait for it: close now, since nothing more will be read.
    Abandon,
}

impl Conn {
    /// A connection accepted at `now_ms` (any monotonic clock in
    /// milliseconds, the same one later calls pass).
    pub fn new(
        limits: ConnLimits,
        tokens: std::sync::Arc<crate::access::Tokens>,
        welcome: wire::Welcome,
        now_ms: u64,
    ) -> Self {
        Conn {
            phase: Phase::AwaitHello,
            limits,
            // Nothing larger than a Hello is read before the handshake, so
            // an unauthenticated client cannot make the server reserve a
            // whole frame's buffer.
            decoder: FrameDecoder {
                frame_bytes_max: wire::HELLO_FRAME_BYTES_MAX.min(limits.frame_bytes_max),
            },
            tokens,
            role: crate::access::Role::Reader,
            welcome,
            inbuf: BytesMut::new(),
            outbuf: BytesMut::new(),
            pending: VecDeque::new(),
            in_flight: 0,
            reserved_bytes: 0,
            parked: None,
            next_seq: 0,
            accepted_ms: now_ms,
            last_active_ms: now_ms,
            last_written_ms: now_ms,
            session: false,
        }
    }

    /// Bytes read from the socket (none to go on after a wait). Returns the
    /// batches to run; after a protocol error, an error frame is queued and
    /// nothing more is read.
    pub fn receive(&mut self, data: &[u8], now_ms: u64) -> Vec<Event> {
        let mut events = Vec::new();
        if self.phase == Phase::Closing {
            return events;
        }
        if !data.is_empty() {
            self.last_active_ms = now_ms;
        }
        self.inbuf.extend_from_slice(data);
        if let Some((id, batch, bound)) = self.parked.take() {
            match self.admit_or_park(id, batch, bound) {
                Some(e) => events.push(e),
                None => return events,
            }
        }
        while self.parked.is_none() {
            let frame = match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let id = match e {
                        wire::FrameError::BadChecksum { request_id } => request_id,
                        _ => 0,
                    };
                    self.fail(id, ErrorCode::of_frame_error(&e), e.to_string());
                    break;
                }
            };
            match (self.phase, frame.kind) {
                (Phase::AwaitHello, Kind::Hello) => self.hello(frame.request_id, &frame.body),
                (Phase::Ready, Kind::Requests) => {
                    if let Some(e) = self.requests(frame.request_id, &frame.body) {
                        events.push(e);
                    }
                }
                (_, kind) => self.fail(
                    frame.request_id,
                    ErrorCode::UnexpectedFrame,
                    format!("a {kind:?} frame is not expected here"),
                ),
            }
            if self.phase == Phase::Closing {
                break;
            }
        }
        events
    }

    fn hello(&mut self, id: u64, body: &[u8]) {
        let hello = match wire::Hello::from_body(body) {
            Ok(h) => h,
            Err(e) => return self.fail(id, ErrorCode::BadBody, e.to_string()),
        };
        if hello.version != wire::VERSION {
            return self.fail(
                id,
                ErrorCode::UnsupportedVersion,
                format!(
                    "version {} is not spoken here; use {}",
                    hello.version,
                    wire::VERSION
                ),
            );
        }
        if hello.client.len() > wire::HELLO_CLIENT_BYTES_MAX {
            return self.fail(
                id,
                ErrorCode::BadBody,
                format!(
                    "a client name of {} bytes; at most {}",
                    hello.client.len(),
                    wire::HELLO_CLIENT_BYTES_MAX
                ),
            );
        }
        self.role = if self.tokens.is_empty() {
            crate::access::Role::Admin
        } else {
            match self.tokens.role_of(hello.auth_token.as_deref()) {
                Some(role) => role,
                None => {
                    return self.fail(
                        id,
                        ErrorCode::AuthFailed,
                        "missing or wrong auth token".into(),
                    );
                }
            }
        };
        encode_frame(&mut self.outbuf, Kind::Welcome, id, &self.welcome.to_body());
        self.decoder.frame_bytes_max = self.limits.frame_bytes_max;
        self.phase = Phase::Ready;
    }

    /// What this connection's token allows.
    pub fn role(&self) -> crate::access::Role {
        self.role
    }

    fn requests(&mut self, id: u64, body: &[u8]) -> Option<Event> {
        let batch = match wire::Requests::from_body(body) {
            Ok(b) => b,
            Err(e) => {
                self.fail(id, ErrorCode::BadBody, e.to_string());
                return None;
            }
        };
        let n = batch.requests.len();
        if n > self.limits.batch_len_max {
            let max = self.limits.batch_len_max;
            self.fail(
                id,
                ErrorCode::BatchTooLong,
                format!("{n} requests; at most {max}"),
            );
            return None;
        }
        // An empty batch still takes a slot until it is answered, so that
        // empty frames cannot pile up answers without bound.
        let counted = n.max(1);
        if self.in_flight + counted > self.limits.in_flight_max {
            let max = self.limits.in_flight_max;
            self.fail(
                id,
                ErrorCode::TooManyInFlight,
                format!(
                    "{} unanswered plus {counted}; at most {max}",
                    self.in_flight
                ),
            );
            return None;
        }
        // Before anything runs: could the answers pass the budget? The
        // frame's header is reserved too, so what waits in `outbuf` never
        // passes what was reserved.
        let body_bound = wire::answers_bytes_max(&batch.requests);
        let bound = body_bound + wire::HEADER_BYTES;
        if body_bound > self.limits.answer_bytes_max {
            let max = self.limits.answer_bytes_max;
            self.fail(
                id,
                ErrorCode::AnswerTooLarge,
                format!(
                    "these {n} requests may answer {body_bound} bytes; at most {max} (answer_bytes_max)"
                ),
            );
            return None;
        }
        self.admit_or_park(id, batch, bound)
    }

    /// Start a batch if its answers have room now; else park it, and
    /// read nothing more until it runs.
    fn admit_or_park(&mut self, id: u64, batch: wire::Requests, bound: usize) -> Option<Event> {
        if !self.fits(bound) {
            self.parked = Some((id, batch, bound));
            return None;
        }
        let counted = batch.requests.len().max(1);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight += counted;
        self.reserved_bytes += bound;
        self.pending.push_back(Pending {
            seq,
            request_id: id,
            counted,
            reserved_bytes: bound,
            answers: None,
        });
        Some(Event::Batch {
            seq,
            requests: batch.requests,
        })
    }

    fn fail(&mut self, id: u64, code: ErrorCode, message: String) {
        let body = ErrorBody {
            code: code as u16,
            message,
        };
        encode_frame(&mut self.outbuf, Kind::Error, id, &body.to_body());
        self.phase = Phase::Closing;
        self.parked = None;
    }

    /// The answers to batch `seq`. They are written out once every earlier
    /// batch on this connection has been answered too.
    pub fn answer(&mut self, seq: u64, answers: wire::Answers, now_ms: u64) {
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.seq == seq && p.answers.is_none())
        {
            p.answers = Some(answers);
            self.last_active_ms = now_ms;
        }
        if self.outbuf.is_empty() {
            // Output begins to wait now, not when it last moved.
            self.last_written_ms = now_ms;
        }
        while self.pending.front().is_some_and(|p| p.answers.is_some()) {
            let p = self.pending.pop_front().expect("a front");
            self.in_flight -= p.counted;
            self.reserved_bytes -= p.reserved_bytes;
            if self.phase == Phase::Closing {
                continue;
            }
            let answers = p.answers.expect("answered");
            match answers.try_to_body() {
                Ok(body) if body.len() <= p.reserved_bytes => {
                    encode_frame(&mut self.outbuf, Kind::Answers, p.request_id, &body);
                }
                // The bound was computed from the same types, so this is a
                // bug; the client hears of it instead of the server dying.
                Ok(body) => self.fail(
                    p.request_id,
                    ErrorCode::Internal,
                    format!(
                        "answers of {} bytes passed their bound of {}",
                        body.len(),
                        p.reserved_bytes
                    ),
                ),
                Err(e) => self.fail(p.request_id, ErrorCode::Internal, e.to_string()),
            }
        }
    }

    /// The connection asked for a lock: from now on it is never closed
    /// for idleness, since a client that waits in a lock's queue, or holds
    /// a lease bound to this connection, may say nothing for a long time,
    /// and closing it would end both. A client that stops reading is
    /// still cut off (`Deadline::Abandon`).
    pub fn hold_session(&mut self) {
        self.session = true;
    }

    /// A notice for the client, unasked (a lock granted to a waiting
    /// acquire, a lease lost): written at once, ahead of answers still
    /// waiting for earlier ones, since it answers nothing. Its bytes are
    /// not reserved: notices are small, a connection gets one per lock
    /// event it caused, and `over_output_limit` still bounds the buffer.
    pub fn notice(&mut self, notice: &wire::Notice) {
        if self.phase != Phase::Ready {
            return;
        }
        if self.outbuf.is_empty() {
            self.last_written_ms = self.last_active_ms;
        }
        encode_frame(&mut self.outbuf, Kind::Notice, 0, &notice.to_body());
    }

    /// A batch of the connection's change feed, unasked, written at once
    /// like a notice. The event loop stops reading the feed while the
    /// connection's output waits (`FEED_PAUSE_BYTES`), so a slow reader
    /// holds at most that much.
    pub fn push_feed(&mut self, batch: &wire::FeedBatch) {
        if self.phase != Phase::Ready {
            return;
        }
        if self.outbuf.is_empty() {
            self.last_written_ms = self.last_active_ms;
        }
        encode_frame(&mut self.outbuf, Kind::Feed, 0, &batch.to_body());
    }

    /// Close a connection whose deadline passed: no `Hello` in time, idle
    /// too long, or answers unread too long.
    pub fn check_timeouts(&mut self, now_ms: u64) -> Deadline {
        let l = self.limits;
        match self.phase {
            Phase::Closing => {}
            Phase::AwaitHello => {
                if now_ms.saturating_sub(self.accepted_ms) >= l.handshake_timeout_ms {
                    let ms = l.handshake_timeout_ms;
                    self.fail(
                        0,
                        ErrorCode::HandshakeTimeout,
                        format!("no Hello within {ms} ms (handshake_timeout_ms)"),
                    );
                }
            }
            Phase::Ready if l.idle_timeout_ms > 0 => {
                let waiting = !self.outbuf.is_empty();
                if waiting && now_ms.saturating_sub(self.last_written_ms) >= l.idle_timeout_ms {
                    self.phase = Phase::Closing;
                    self.parked = None;
                    return Deadline::Abandon;
                }
                let idle = !self.session
                    && self.pending.is_empty()
                    && self.parked.is_none()
                    && !waiting
                    && self.inbuf.is_empty();
                if idle && now_ms.saturating_sub(self.last_active_ms) >= l.idle_timeout_ms {
                    let ms = l.idle_timeout_ms;
                    self.fail(
                        0,
                        ErrorCode::IdleTimeout,
                        format!("idle for {ms} ms (idle_timeout_ms)"),
                    );
                }
            }
            Phase::Ready => {}
        }
        if self.closing() {
            Deadline::Closing
        } else {
            Deadline::Met
        }
    }

    /// Output left for the socket (or there was none to send) at `now_ms`.
    pub fn wrote(&mut self, now_ms: u64) {
        self.last_written_ms = now_ms;
    }

    /// Bytes to write to the socket; advance past what was written.
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.outbuf
    }

    /// Whether the event loop should read more from the socket: not while
    /// a batch waits for room, nor once closing.
    pub fn wants_input(&self) -> bool {
        self.phase != Phase::Closing && self.parked.is_none()
    }

    /// A batch waits for earlier answers to be written.
    pub fn parked(&self) -> bool {
        self.parked.is_some()
    }

    /// A batch waited for room and has it now: `receive(&[], ..)` runs it.
    pub fn parked_fits(&self) -> bool {
        self.parked
            .as_ref()
            .is_some_and(|(_, _, bound)| self.fits(*bound))
    }

    fn fits(&self, bound: usize) -> bool {
        let used = self.reserved_bytes + self.outbuf.len();
        used == 0 || used + bound <= self.limits.answer_bytes_max
    }

    /// The connection should close once its output is written.
    pub fn closing(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// A reader this slow is cut off rather than allowed to grow memory.
    /// Answers are reserved before they run, so this holds only if a bound
    /// is wrong; it stays as a last guard.
    pub fn over_output_limit(&self) -> bool {
        self.outbuf.len() > self.limits.answer_bytes_max + OUTPUT_SLACK_BYTES
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        frame_bytes_max: 4096,
        batch_len_max: 8,
        in_flight_max: 12,
        answer_bytes_max: 1 << 16,
        handshake_timeout_ms: 1_000,
        idle_timeout_ms: 5_000,
    };

    fn welcome() -> wire::Welcome {
        wire::Welcome {
            version: wire::VERSION,
            shards: 2,
            shard_hash: 1,
            shard: 0,
            ports: vec![7071, 7072],
            frame_bytes_max: 4096,
            batch_len_max: 8,
            in_flight_max: 12,
            order_lines_max: 64,
            answer_bytes_max: 1 << 16,
        }
    }

    fn frame(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_frame(&mut b, kind, id, body);
        b.to_vec()
    }

    fn tokens(admin: Option<&str>) -> std::sync::Arc<crate::access::Tokens> {
        std::sync::Arc::new(admin.map(crate::access::Tokens::admin).unwrap_or_default())
    }

    fn hello(token: Option<&str>) -> Vec<u8> {
        let h = wire::Hello {
            version: wire::VERSION,
            auth_token: token.map(String::from),
            client: "test".into(),
        };
        frame(Kind::Hello, 0, &h.to_body())
    }

    fn batch(id: u64, n: usize) -> Vec<u8> {
        let r = wire::Requests {
            requests: (0..n as u64)
                .map(|sku| wire::Request::GetSku { sku })
                .collect(),
        };
        frame(Kind::Requests, id, &r.to_body())
    }

    /// Every frame the server wrote, decoded.
    fn written(c: &mut Conn) -> Vec<wire::Frame> {
        let d = FrameDecoder::default();
        let mut out = Vec::new();
        while let Some(f) = d.decode(c.output()).unwrap() {
            out.push(f);
        }
        out
    }

    fn error_code(f: &wire::Frame) -> u16 {
        assert_eq!(f.kind, Kind::Error);
        ErrorBody::from_body(&f.body).unwrap().code
    }

    fn ready(token: Option<&str>) -> Conn {
        ready_with(LIMITS, token)
    }

    /// A connection past its handshake at time 0, with nothing to write.
    fn ready_with(limits: ConnLimits, token: Option<&str>) -> Conn {
        let mut c = Conn::new(limits, tokens(token), welcome(), 0);
        assert!(c.receive(&hello(token), 0).is_empty());
        let w = written(&mut c);
        assert_eq!(w.len(), 1);
        assert_eq!(wire::Welcome::from_body(&w[0].body).unwrap(), welcome());
        c
    }

    #[test]
    fn a_handshake_then_batches_answered_in_order() {
        let mut c = ready(Some("tok"));
        let mut events = c.receive(&batch(1, 2), 0);
        events.extend(c.receive(&batch(2, 3), 0));
        assert_eq!(events.len(), 2);
        assert_eq!(c.in_flight(), 5);
        let answers = |load| wire::Answers {
            load,
            answers: vec![],
        };
        // The second batch finishes first; nothing may leave before the first.
        c.answer(1, answers(2), 0);
        assert!(written(&mut c).is_empty());
        c.answer(0, answers(1), 0);
        let w = written(&mut c);
        let ids: Vec<u64> = w.iter().map(|f| f.request_id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(wire::Answers::from_body(&w[0].body).unwrap().load, 1);
        assert_eq!(c.in_flight(), 0);
        assert!(!c.closing());
    }

    #[test]
    fn bytes_one_at_a_time_make_the_same_batches() {
        let mut c = ready(None);
        let mut events = Vec::new();
        for b in batch(7, 3) {
            events.extend(c.receive(&[b], 0));
        }
        assert!(matches!(&events[..], [Event::Batch { seq: 0, requests }] if requests.len() == 3));
    }

    #[test]
    fn each_bad_input_gets_its_code_and_closes() {
        let cases: Vec<(Option<&str>, Vec<u8>, ErrorCode)> = vec![
            (
                None,
                b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                ErrorCode::BadMagic,
            ),
            (Some("tok"), hello(Some("nope")), ErrorCode::AuthFailed),
            (Some("tok"), hello(None), ErrorCode::AuthFailed),
            (None, batch(1, 1), ErrorCode::UnexpectedFrame),
            (
                None,
                frame(Kind::Hello, 0, b"not an archive"),
                ErrorCode::BadBody,
            ),
            (
                None,
                frame(Kind::Answers, 0, b""),
                ErrorCode::UnexpectedFrame,
            ),
        ];
        for (token, bytes, code) in cases {
            let mut c = Conn::new(LIMITS, tokens(token), welcome(), 0);
            assert!(c.receive(&bytes, 0).is_empty());
            let w = written(&mut c);
            assert_eq!(error_code(w.last().unwrap()), code as u16, "{code:?}");
            assert!(c.closing());
            // Nothing more is read once closing.
            assert!(c.receive(&hello(token), 0).is_empty());
        }
    }

    #[test]
    fn framing_errors_after_the_handshake_close_too() {
        let mut bad_sum = batch(3, 1);
        let last = bad_sum.len() - 1;
        bad_sum[last] ^= 1;
        let mut bad_version = batch(3, 1);
        bad_version[4] = 9;
        let mut bad_kind = batch(3, 1);
        bad_kind[6] = 99;
        let mut huge = batch(3, 1);
        huge[8..12].copy_from_slice(&(1u32 << 30).to_le_bytes());
        let cases = [
            (bad_sum, ErrorCode::BadChecksum),
            (bad_version, ErrorCode::UnsupportedVersion),
            (bad_kind, ErrorCode::UnknownKind),
            (huge, ErrorCode::FrameTooLarge),
            (batch(3, 9), ErrorCode::BatchTooLong),
            (
                frame(Kind::Requests, 3, b"\x01\x02\x03"),
                ErrorCode::BadBody,
            ),
            (hello(None), ErrorCode::UnexpectedFrame),
        ];
        for (bytes, code) in cases {
            let mut c = ready(None);
            assert!(c.receive(&bytes, 0).is_empty(), "{code:?}");
            assert_eq!(error_code(&written(&mut c)[0]), code as u16, "{code:?}");
            assert!(c.closing());
        }
    }

    #[test]
    fn too_many_unanswered_requests_close_the_connection() {
        let mut c = ready(None);
        assert_eq!(c.receive(&batch(1, 8), 0).len(), 1);
        assert!(c.receive(&batch(2, 5), 0).is_empty());
        assert_eq!(
            error_code(&written(&mut c)[0]),
            ErrorCode::TooManyInFlight as u16
        );
    }

    /// A batch of the given requests.
    fn batch_of(id: u64, requests: Vec<wire::Request>) -> Vec<u8> {
        frame(Kind::Requests, id, &wire::Requests { requests }.to_body())
    }

    fn list(limit: u32) -> wire::Request {
        wire::Request::ListOrders {
            account: 1,
            after: None,
            limit,
        }
    }

    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().map(|Event::Batch { seq, .. }| *seq).collect()
    }

    #[test]
    fn a_reused_request_id_cannot_swap_answers() {
        let mut c = ready(None);
        let mut events = c.receive(&batch(5, 1), 0);
        events.extend(c.receive(&batch(5, 2), 0));
        assert_eq!(seqs(&events), vec![0, 1]);
        let answers = |load, n| wire::Answers {
            load,
            answers: (0..n).map(|_| wire::Answer::Failed { code: 100 }).collect(),
        };
        // The second batch (two requests) finishes first, under the same id.
        c.answer(1, answers(2, 2), 0);
        c.answer(0, answers(1, 1), 0);
        let w = written(&mut c);
        let got: Vec<(u64, u32, usize)> = w
            .iter()
            .map(|f| {
                let a = wire::Answers::from_body(&f.body).unwrap();
                (f.request_id, a.load, a.answers.len())
            })
            .collect();
        assert_eq!(got, vec![(5, 1, 1), (5, 2, 2)]);
    }

    #[test]
    fn empty_batches_count_against_the_in_flight_limit() {
        let mut c = ready(None);
        for id in 0..12 {
            assert_eq!(c.receive(&batch(id, 0), 0).len(), 1, "batch {id}");
        }
        assert_eq!(c.in_flight(), 12);
        assert!(c.receive(&batch(12, 0), 0).is_empty());
        assert_eq!(
            error_code(&written(&mut c)[0]),
            ErrorCode::TooManyInFlight as u16
        );
    }

    #[test]
    fn a_long_client_name_is_refused() {
        let h = wire::Hello {
            version: wire::VERSION,
            auth_token: None,
            client: "x".repeat(wire::HELLO_CLIENT_BYTES_MAX + 1),
        };
        let mut c = Conn::new(LIMITS, tokens(None), welcome(), 0);
        assert!(
            c.receive(&frame(Kind::Hello, 0, &h.to_body()), 0)
                .is_empty()
        );
        assert_eq!(error_code(&written(&mut c)[0]), ErrorCode::BadBody as u16);
        assert!(c.closing());
    }

    #[test]
    fn before_the_handshake_only_a_hello_sized_frame_is_read() {
        let limits = ConnLimits {
            frame_bytes_max: 1 << 20,
            ..LIMITS
        };
        let mut c = Conn::new(limits, tokens(None), welcome(), 0);
        let mut big = frame(Kind::Hello, 0, &vec![0; wire::HELLO_FRAME_BYTES_MAX + 1]);
        big.truncate(wire::HEADER_BYTES);
        assert!(c.receive(&big, 0).is_empty());
        assert_eq!(
            error_code(&written(&mut c)[0]),
            ErrorCode::FrameTooLarge as u16
        );
        // After it, the connection's own limit applies.
        let mut c = ready_with(limits, None);
        let mut b = frame(Kind::Requests, 1, &[0; 8192]);
        b.truncate(wire::HEADER_BYTES);
        assert!(c.receive(&b, 0).is_empty());
        assert!(!c.closing());
    }

    #[test]
    fn answers_that_could_pass_the_budget_are_refused_before_they_run() {
        let mut c = ready(None);
        // Two pages of the largest size pass 64 KiB together.
        assert!(
            c.receive(&batch_of(3, vec![list(1_000), list(1_000)]), 0)
                .is_empty()
        );
        let w = written(&mut c);
        assert_eq!(error_code(&w[0]), ErrorCode::AnswerTooLarge as u16);
        let msg = ErrorBody::from_body(&w[0].body).unwrap().message;
        assert!(msg.contains("answer_bytes_max"), "{msg}");
        assert!(c.closing());
    }

    #[test]
    fn a_batch_that_fits_only_later_waits_for_earlier_answers_to_be_written() {
        let limits = ConnLimits {
            answer_bytes_max: 100 << 10,
            ..LIMITS
        };
        let mut c = ready_with(limits, None);
        let mut events = c.receive(&batch_of(1, vec![list(1_000)]), 0);
        // The second page has no room until the first is written.
        events.extend(c.receive(&batch_of(2, vec![list(1_000)]), 0));
        events.extend(c.receive(&batch(3, 1), 0));
        assert_eq!(seqs(&events), vec![0]);
        assert!(c.parked() && !c.wants_input());
        // A full page: as many of the largest orders as fit.
        let order = wire::OrderView {
            id: 1,
            account: 1,
            lines: (0..64)
                .map(|sku| wire::Line {
                    sku,
                    qty: 1,
                    unit_price: 1,
                })
                .collect(),
            total: 64,
            state: wire::OrderState::Paid,
            created_at: 0,
            expires_at: 0,
            restocked: false,
        };
        let n = wire::LIST_PAGE_BYTES_MAX / wire::order_view_bytes(64);
        let page = wire::Answers {
            load: 0,
            answers: vec![wire::Answer::Done(wire::Reply::Orders {
                orders: vec![order; n],
                more: true,
            })],
        };
        c.answer(0, page, 0);
        // Answered but unwritten: still no room.
        assert!(c.receive(&[], 0).is_empty());
        assert_eq!(written(&mut c).len(), 1);
        let events = c.receive(&[], 0);
        assert_eq!(seqs(&events), vec![1, 2]);
        assert!(!c.parked() && c.wants_input() && !c.closing());
    }

    #[test]
    fn silent_and_idle_connections_time_out() {
        let mut c = Conn::new(LIMITS, tokens(None), welcome(), 100);
        assert_eq!(c.check_timeouts(1_099), Deadline::Met);
        assert_eq!(c.check_timeouts(1_100), Deadline::Closing);
        assert_eq!(
            error_code(&written(&mut c)[0]),
            ErrorCode::HandshakeTimeout as u16
        );

        let mut c = Conn::new(LIMITS, tokens(None), welcome(), 0);
        c.receive(&hello(None), 10);
        written(&mut c);
        // Busy connections are not idle, however long their batch runs.
        assert_eq!(c.receive(&batch(1, 1), 20).len(), 1);
        assert_eq!(c.check_timeouts(60_000), Deadline::Met);
        let done = wire::Answers {
            load: 0,
            answers: vec![wire::Answer::Failed { code: 100 }],
        };
        c.answer(0, done, 60_000);
        written(&mut c);
        c.wrote(60_000);
        assert_eq!(c.check_timeouts(64_999), Deadline::Met);
        assert_eq!(c.check_timeouts(65_000), Deadline::Closing);
        assert_eq!(
            error_code(&written(&mut c)[0]),
            ErrorCode::IdleTimeout as u16
        );

        let never = ConnLimits {
            idle_timeout_ms: 0,
            ..LIMITS
        };
        let mut c = ready_with(never, None);
        assert_eq!(c.check_timeouts(u64::MAX), Deadline::Met);

        // A lock session stays, however long it says nothing.
        let mut c = ready(None);
        c.hold_session();
        assert_eq!(c.check_timeouts(u64::MAX / 2), Deadline::Met);

        // Answers nobody reads: abandoned after the idle timeout, counted
        // from the last time any of its output left.
        let mut c = Conn::new(LIMITS, tokens(None), welcome(), 0);
        // Its Welcome is never written: output waits.
        c.receive(&hello(None), 0);
        c.wrote(1_000);
        assert_eq!(c.check_timeouts(5_999), Deadline::Met);
        assert_eq!(c.check_timeouts(6_000), Deadline::Abandon);
        assert!(c.closing() && !c.wants_input());
    }
}
