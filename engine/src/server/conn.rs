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

/// Bounds on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    pub frame_bytes_max: usize,
    pub batch_len_max: usize,
    /// Requests sent and not yet answered.
    pub in_flight_max: usize,
    /// Answer bytes waiting for a slow reader; past it the server disconnects.
    pub out_bytes_max: usize,
}

/// What the event loop must do for a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Run these requests; hand the answers to [`Conn::answer`] with this id.
    Batch {
        request_id: u64,
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

pub struct Conn {
    phase: Phase,
    limits: ConnLimits,
    decoder: FrameDecoder,
    auth_token: Option<String>,
    welcome: wire::Welcome,
    inbuf: BytesMut,
    outbuf: BytesMut,
    /// Batches in the order they arrived, with their answers once known:
    /// answers leave in that order whichever shard finished first.
    pending: VecDeque<(u64, usize, Option<wire::Answers>)>,
    in_flight: usize,
}

impl Conn {
    pub fn new(limits: ConnLimits, auth_token: Option<String>, welcome: wire::Welcome) -> Self {
        Conn {
            phase: Phase::AwaitHello,
            limits,
            decoder: FrameDecoder {
                frame_bytes_max: limits.frame_bytes_max,
            },
            auth_token,
            welcome,
            inbuf: BytesMut::new(),
            outbuf: BytesMut::new(),
            pending: VecDeque::new(),
            in_flight: 0,
        }
    }

    /// Bytes read from the socket. Returns the batches to run; after a
    /// protocol error, an error frame is queued and nothing more is read.
    pub fn receive(&mut self, data: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        if self.phase == Phase::Closing {
            return events;
        }
        self.inbuf.extend_from_slice(data);
        loop {
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
        if self.auth_token.is_some() && hello.auth_token != self.auth_token {
            return self.fail(
                id,
                ErrorCode::AuthFailed,
                "missing or wrong auth token".into(),
            );
        }
        encode_frame(&mut self.outbuf, Kind::Welcome, id, &self.welcome.to_body());
        self.phase = Phase::Ready;
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
        if self.in_flight + n > self.limits.in_flight_max {
            let max = self.limits.in_flight_max;
            self.fail(
                id,
                ErrorCode::TooManyInFlight,
                format!("{} unanswered plus {n}; at most {max}", self.in_flight),
            );
            return None;
        }
        self.in_flight += n;
        self.pending.push_back((id, n, None));
        Some(Event::Batch {
            request_id: id,
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
    }

    /// The answers to batch `request_id`. They are written out once every
    /// earlier batch on this connection has been answered too.
    pub fn answer(&mut self, request_id: u64, answers: wire::Answers) {
        if let Some(slot) = self
            .pending
            .iter_mut()
            .find(|(id, _, a)| *id == request_id && a.is_none())
        {
            slot.2 = Some(answers);
        }
        while self.pending.front().is_some_and(|(_, _, a)| a.is_some()) {
            let (id, n, answers) = self.pending.pop_front().expect("a front");
            self.in_flight -= n;
            if self.phase != Phase::Closing {
                let answers = answers.expect("answered");
                encode_frame(&mut self.outbuf, Kind::Answers, id, &answers.to_body());
            }
        }
    }

    /// Bytes to write to the socket; advance past what was written.
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.outbuf
    }

    /// The connection should close once its output is written.
    pub fn closing(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// A reader this slow is cut off rather than allowed to grow memory.
    pub fn over_output_limit(&self) -> bool {
        self.outbuf.len() > self.limits.out_bytes_max
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
        out_bytes_max: 1 << 16,
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
        }
    }

    fn frame(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_frame(&mut b, kind, id, body);
        b.to_vec()
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
        let mut c = Conn::new(LIMITS, token.map(String::from), welcome());
        assert!(c.receive(&hello(token)).is_empty());
        let w = written(&mut c);
        assert_eq!(w.len(), 1);
        assert_eq!(wire::Welcome::from_body(&w[0].body).unwrap(), welcome());
        c
    }

    #[test]
    fn a_handshake_then_batches_answered_in_order() {
        let mut c = ready(Some("tok"));
        let mut events = c.receive(&batch(1, 2));
        events.extend(c.receive(&batch(2, 3)));
        assert_eq!(events.len(), 2);
        assert_eq!(c.in_flight(), 5);
        let answers = |load| wire::Answers {
            load,
            answers: vec![],
        };
        // The second batch finishes first; nothing may leave before the first.
        c.answer(2, answers(2));
        assert!(written(&mut c).is_empty());
        c.answer(1, answers(1));
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
            events.extend(c.receive(&[b]));
        }
        assert!(
            matches!(&events[..], [Event::Batch { request_id: 7, requests }] if requests.len() == 3)
        );
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
            let mut c = Conn::new(LIMITS, token.map(String::from), welcome());
            assert!(c.receive(&bytes).is_empty());
            let w = written(&mut c);
            assert_eq!(error_code(w.last().unwrap()), code as u16, "{code:?}");
            assert!(c.closing());
            // Nothing more is read once closing.
            assert!(c.receive(&hello(token)).is_empty());
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
            assert!(c.receive(&bytes).is_empty(), "{code:?}");
            assert_eq!(error_code(&written(&mut c)[0]), code as u16, "{code:?}");
            assert!(c.closing());
        }
    }

    #[test]
    fn too_many_unanswered_requests_close_the_connection() {
        let mut c = ready(None);
        assert_eq!(c.receive(&batch(1, 8)).len(), 1);
        assert!(c.receive(&batch(2, 5)).is_empty());
        assert_eq!(
            error_code(&written(&mut c)[0]),
            ErrorCode::TooManyInFlight as u16
        );
    }

    #[test]
    fn a_slow_reader_is_noticed() {
        let mut c = Conn::new(
            ConnLimits {
                out_bytes_max: 100,
                ..LIMITS
            },
            None,
            welcome(),
        );
        c.receive(&hello(None));
        c.receive(&batch(1, 8));
        let many = wire::Answers {
            load: 0,
            answers: (0..8).map(|_| wire::Answer::Failed { code: 100 }).collect(),
        };
        c.answer(1, many);
        assert!(c.over_output_limit());
    }
}
