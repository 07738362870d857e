//! `--workload locks`: lock acquire and release pairs over many names, a
//! share of them contended, against the embedded engine, a `mercato
//! serve` (`tcp://`), or Redis (`redis://`) with the lock algorithm
//! redis-py's `Lock` uses: `SET name token NX PX ttl` to take it, and a
//! Lua script that deletes the key only if it still holds the token.
//!
//! Each thread owns `--lock-names` names that nobody else takes; with
//! `--contended-pct` percent of its acquires it tries one of `HOT_NAMES`
//! names all threads share instead, and is refused (`Busy`) when another
//! holds it. Every batch releases what the batch before it (with
//! `--pipeline P`, the batch P before it) took, then asks for new locks up
//! to `--batch` requests. A pair is a granted acquire whose release
//! succeeded. Acquires try and never wait.
//!
//! The embedded target also measures a contended hand-over: two threads
//! take turns on one lock through sessions, one waiting in the engine's
//! queue while the other holds it; the time from the holder's release call
//! to the waiter's grant is the engine's release, grant and notice, plus
//! the waiter's wake-up.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use mercato_client::{Client, ClientConfig, wire};
use mercato_engine::command::{LockCommand, LockWait};
use mercato_engine::workload::{Latency, Rng};
use mercato_engine::{Command, Handle, Reject, Reply};

use super::{Args, RunShared, run_for};

/// Names all threads share: the contended ones.
const HOT_NAMES: u64 = 16;
/// Every lease; longer than any run's batch takes, so none runs out.
const LEASE_MS: u64 = 30_000;

/// Deletes the lock only if it still holds the caller's token; redis-py's
/// `Lock.release` script, in effect.
const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// One thread's draws.
struct Names {
    thread: u64,
    rng: Rng,
    next: u64,
    contended_pct: u64,
    own: u64,
}

impl Names {
    fn new(args: &Args, run_id: u64, thread: usize) -> Names {
        Names {
            thread: thread as u64,
            rng: Rng::new(run_id ^ (0x10C5 + thread as u64)),
            next: 0,
            contended_pct: args.contended_pct,
            own: args.lock_names.max(1),
        }
    }

    fn name(&mut self) -> Vec<u8> {
        if self.rng.below(100) < self.contended_pct {
            return format!("hot-{}", self.rng.below(HOT_NAMES)).into_bytes();
        }
        self.next = (self.next + 1) % self.own;
        format!("lock-{}-{}", self.thread, self.next).into_bytes()
    }
}

/// One thread's figures.
#[derive(Default)]
struct Tally {
    pairs: u64,
    busy: u64,
    requests: u64,
    latency: Latency,
}

#[derive(Default)]
struct Totals {
    pairs: u64,
    busy: u64,
    requests: u64,
    latency: Latency,
    handoff: Option<Latency>,
}

impl Tally {
    fn add_to(self, t: &std::sync::Mutex<Totals>) {
        let mut t = t.lock().unwrap();
        t.pairs += self.pairs;
        t.busy += self.busy;
        t.requests += self.requests;
        t.latency.merge(&self.latency);
    }
}

/// What one answer in a batch was.
enum Seen {
    Granted(u64),
    Busy,
    Released,
    Failed(String),
}

/// A batch: the releases of what an earlier batch took, then acquires.
fn batch(names: &mut Names, held: &mut Vec<(Vec<u8>, u64)>, size: usize) -> Vec<Op> {
    let mut ops: Vec<Op> = held.drain(..).map(|(n, t)| Op::Release(n, t)).collect();
    while ops.len() < size.max(2) {
        ops.push(Op::Acquire(names.name()));
    }
    ops
}

enum Op {
    Acquire(Vec<u8>),
    Release(Vec<u8>, u64),
}

/// Folds a batch's answers into the tally; what it took goes to `held`.
fn settle(
    ops: Vec<Op>,
    seen: Vec<Seen>,
    held: &mut Vec<(Vec<u8>, u64)>,
    t: &mut Tally,
) -> Result<(), String> {
    t.requests += ops.len() as u64;
    for (op, s) in ops.into_iter().zip(seen) {
        match (op, s) {
            (Op::Acquire(name), Seen::Granted(token)) => held.push((name, token)),
            (Op::Acquire(_), Seen::Busy) => t.busy += 1,
            (Op::Release(..), Seen::Released) => t.pairs += 1,
            (_, Seen::Failed(why)) => return Err(why),
            (_, _) => return Err("an answer of the wrong kind".into()),
        }
    }
    Ok(())
}

fn acquire_cmd(name: Vec<u8>) -> Command {
    Command::Lock(LockCommand::Acquire {
        name: name.into(),
        owner: 0,
        permits: 1,
        ttl_ms: LEASE_MS,
        wait: LockWait::Try,
        session: None,
        bind: false,
    })
}

fn seen_engine(a: Result<Result<Reply, Reject>, mercato_engine::EngineError>) -> Seen {
    match a {
        Ok(Ok(Reply::LockGranted { token, .. })) => Seen::Granted(token),
        Ok(Ok(Reply::Done)) => Seen::Released,
        Ok(Err(Reject::Lock(mercato_engine::lock::LockError::Busy { .. }))) => Seen::Busy,
        other => Seen::Failed(format!("{other:?}")),
    }
}

fn seen_wire(a: wire::Answer) -> Seen {
    match a {
        wire::Answer::Done(wire::Reply::LockGranted { token, .. }) => Seen::Granted(token),
        wire::Answer::Done(wire::Reply::Done) => Seen::Released,
        wire::Answer::Rejected(wire::Reject::Lock(wire::LockReject::Busy { .. })) => Seen::Busy,
        other => Seen::Failed(format!("{other:?}")),
    }
}

fn to_command(op: &Op) -> Command {
    match op {
        Op::Acquire(name) => acquire_cmd(name.clone()),
        Op::Release(name, token) => Command::Lock(LockCommand::Release {
            name: name.clone().into(),
            token: *token,
        }),
    }
}

fn to_request(op: &Op) -> wire::Request {
    match op {
        Op::Acquire(name) => wire::Request::LockAcquire {
            name: name.clone(),
            owner: 0,
            permits: 1,
            ttl_ms: LEASE_MS,
            wait: wire::LockWait::Try,
            bind: false,
        },
        Op::Release(name, token) => wire::Request::LockRelease {
            name: name.clone(),
            token: *token,
        },
    }
}

/// One thread's load: batches of releases and acquires, `--pipeline` of
/// them in flight, through `submit` (which sends a batch) and `answers`
/// (which waits for its answers).
fn drive<T>(
    args: &Args,
    run: &RunShared,
    thread: usize,
    submit: impl Fn(&[Op]) -> Result<T, String>,
    answers: impl Fn(T) -> Result<Vec<Seen>, String>,
) -> Tally {
    let mut names = Names::new(args, run.run_id, thread);
    let mut tally = Tally::default();
    let mut held = Vec::new();
    let mut in_flight = VecDeque::new();
    loop {
        while !run.stopping() && in_flight.len() < args.pipeline.max(1) {
            let ops = batch(&mut names, &mut held, args.batch);
            match submit(&ops) {
                Ok(ticket) => in_flight.push_back((Instant::now(), ops, ticket)),
                Err(e) => {
                    run.fail(e);
                    break;
                }
            }
        }
        let Some((at, ops, ticket)) = in_flight.pop_front() else {
            break;
        };
        let seen = match answers(ticket) {
            Ok(seen) => seen,
            Err(e) => {
                run.fail(e);
                break;
            }
        };
        tally.latency.record_batch(at, ops.len() as u64);
        if let Err(e) = settle(ops, seen, &mut held, &mut tally) {
            run.fail(e);
            break;
        }
    }
    tally
}

/// The embedded target, after the engine is open.
pub fn run_embedded(args: &Args, h: &Handle) -> i32 {
    let handoff = handoffs(h, args.handoffs);
    let run = RunShared::new();
    let totals = std::sync::Mutex::new(Totals::default());
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let (run, totals, h) = (&run, &totals, h.clone());
            s.spawn(move || {
                let submit = |ops: &[Op]| {
                    let cmds = ops.iter().map(to_command).collect();
                    h.submit_ticket(cmds).map_err(|e| e.to_string())
                };
                let answers = |t: mercato_engine::runtime::Ticket| {
                    Ok(t.wait().into_iter().map(seen_engine).collect())
                };
                drive(args, run, t, submit, answers).add_to(totals);
            });
        }
        run_for(args, &run.stop);
    });
    let mut totals = totals.into_inner().unwrap();
    totals.handoff = Some(handoff);
    finish(args, run, totals)
}

/// Two threads take turns on one lock, `--handoffs` grants in all: each
/// holds it until the other waits in the engine's queue (or has had all
/// its turns), then releases it.
fn handoffs(h: &Handle, turns: u64) -> Latency {
    let name: &[u8] = b"handoff";
    let released_at = AtomicU64::new(0);
    let finished = [AtomicBool::new(false), AtomicBool::new(false)];
    let epoch = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2usize)
            .map(|me| {
                let (h, released_at, finished) = (h.clone(), &released_at, &finished);
                s.spawn(move || {
                    let session = h.session();
                    let mut lat = Latency::default();
                    let mine = turns / 2 + (turns % 2) * (1 - me as u64);
                    for turn in 0..mine {
                        let lease = session
                            .acquire(name, 1, LEASE_MS, LockWait::Forever, false)
                            .expect("the engine is up")
                            .expect("granted");
                        let since = released_at.load(Ordering::Acquire);
                        // The first grant waited for nobody's release.
                        if since > 0 {
                            let now = epoch.elapsed().as_nanos() as u64;
                            let _ = lat.hist.record((now.saturating_sub(since) / 1_000).max(1));
                        }
                        while !finished[1 - me].load(Ordering::Acquire)
                            && h.lock_inspect(name).unwrap().unwrap().waiters == 0
                        {
                            std::hint::spin_loop();
                        }
                        if turn + 1 == mine {
                            finished[me].store(true, Ordering::Release);
                        }
                        released_at.store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
                        h.lock_release(name, lease.token).unwrap().unwrap();
                    }
                    finished[me].store(true, Ordering::Release);
                    lat
                })
            })
            .collect();
        let mut all = Latency::default();
        for w in workers {
            all.merge(&w.join().unwrap());
        }
        all
    })
}

/// The tcp:// target.
pub fn run_tcp(args: &Args, addr: SocketAddr) -> i32 {
    let config = ClientConfig {
        timeout_ms: 60_000,
        ..ClientConfig::default()
    };
    let clients: Vec<Client> = match (0..args.connections.max(1))
        .map(|_| Client::connect(addr, config.clone()))
        .collect::<Result<_, _>>()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mercato-load: {e}");
            return 2;
        }
    };
    let run = RunShared::new();
    let totals = std::sync::Mutex::new(Totals::default());
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let (client, run, totals) = (&clients[t % clients.len()], &run, &totals);
            s.spawn(move || {
                let submit = |ops: &[Op]| {
                    let reqs = ops.iter().map(to_request).collect();
                    client.submit_ticket(reqs).map_err(|e| e.to_string())
                };
                let answers = |t: mercato_client::Ticket| match t.wait() {
                    Ok(a) => Ok(a.into_iter().map(seen_wire).collect()),
                    Err(e) => Err(e.to_string()),
                };
                drive(args, run, t, submit, answers).add_to(totals);
            });
        }
        run_for(args, &run.stop);
    });
    finish(args, run, totals.into_inner().unwrap())
}

/// The redis:// target: one connection per thread, each batch one
/// pipeline. Tokens are unique per acquire, as redis-py's are.
pub fn run_redis(args: &Args, url: &str) -> i32 {
    let client = match redis::Client::open(url) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mercato-load: target {url:?}: {e}");
            return 2;
        }
    };
    let sha = match client.get_connection().and_then(|mut con| {
        redis::cmd("FLUSHALL").query::<()>(&mut con)?;
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(RELEASE_LUA)
            .query::<String>(&mut con)
    }) {
        Ok(sha) => sha,
        Err(e) => {
            eprintln!("mercato-load: setup failed: {e}");
            return 2;
        }
    };
    let run = RunShared::new();
    let totals = std::sync::Mutex::new(Totals::default());
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let (run, totals, sha) = (&run, &totals, &sha);
            let mut con = match client.get_connection() {
                Ok(c) => c,
                Err(e) => {
                    run.fail(e);
                    break;
                }
            };
            s.spawn(move || {
                let mut names = Names::new(args, run.run_id, t);
                let mut tally = Tally::default();
                let mut held = Vec::new();
                let mut token = (t as u64) << 48;
                while !run.stopping() {
                    let ops = batch(&mut names, &mut held, args.batch);
                    let mut pipe = redis::pipe();
                    for op in &ops {
                        match op {
                            Op::Acquire(name) => {
                                token += 1;
                                pipe.cmd("SET")
                                    .arg(name.as_slice())
                                    .arg(token)
                                    .arg("NX")
                                    .arg("PX")
                                    .arg(LEASE_MS);
                            }
                            Op::Release(name, token) => {
                                pipe.cmd("EVALSHA")
                                    .arg(sha)
                                    .arg(1)
                                    .arg(name.as_slice())
                                    .arg(*token);
                            }
                        }
                    }
                    let at = Instant::now();
                    let answers: Vec<redis::Value> = match pipe.query(&mut con) {
                        Ok(a) => a,
                        Err(e) => {
                            run.fail(e);
                            break;
                        }
                    };
                    // A granted SET answers OK; the token is the one sent.
                    let mut sent =
                        token - ops.iter().filter(|o| matches!(o, Op::Acquire(_))).count() as u64;
                    let seen = ops
                        .iter()
                        .zip(answers)
                        .map(|(op, a)| match (op, a) {
                            (Op::Acquire(_), redis::Value::Okay) => {
                                sent += 1;
                                Seen::Granted(sent)
                            }
                            (Op::Acquire(_), redis::Value::Nil) => {
                                sent += 1;
                                Seen::Busy
                            }
                            (Op::Release(..), redis::Value::Int(1)) => Seen::Released,
                            (_, other) => Seen::Failed(format!("{other:?}")),
                        })
                        .collect();
                    tally.latency.record_batch(at, ops.len() as u64);
                    if let Err(e) = settle(ops, seen, &mut held, &mut tally) {
                        run.fail(e);
                        break;
                    }
                }
                tally.add_to(totals);
            });
        }
        run_for(args, &run.stop);
    });
    finish(args, run, totals.into_inner().unwrap())
}

fn finish(args: &Args, run: RunShared, t: Totals) -> i32 {
    let secs = run.started.elapsed().as_secs_f64();
    let (p50, p99, p999) = (t.latency.p(0.5), t.latency.p(0.99), t.latency.p(0.999));
    let handoff = t
        .handoff
        .as_ref()
        .map(|h| (h.p(0.5), h.p(0.99), h.p(0.999)));
    if args.json {
        let handoff = handoff.map_or("null".to_string(), |(a, b, c)| {
            format!("{{\"p50_us\":{a},\"p99_us\":{b},\"p999_us\":{c}}}")
        });
        println!(
            "{{\"workload\":\"locks\",\"target\":\"{}\",\"threads\":{},\"batch\":{},\"pipeline\":{},\"contended_pct\":{},\"seconds\":{secs:.3},\
             \"pairs\":{},\"pairs_per_sec\":{:.0},\"busy\":{},\"requests_per_sec\":{:.0},\"p50_us\":{p50},\"p99_us\":{p99},\"p999_us\":{p999},\"handoff\":{handoff}}}",
            args.target,
            args.threads,
            args.batch,
            args.pipeline,
            args.contended_pct,
            t.pairs,
            t.pairs as f64 / secs,
            t.busy,
            t.requests as f64 / secs,
        );
    } else {
        println!(
            "workload locks, target {}, {} threads, batch {}, pipeline {}, {}% contended",
            args.target, args.threads, args.batch, args.pipeline, args.contended_pct
        );
        println!(
            "  {secs:.2} s: {} acquire+release pairs, {} acquires busy, {} requests",
            t.pairs, t.busy, t.requests
        );
        println!(
            "  {:.0} pairs/s, {:.0} requests/s",
            t.pairs as f64 / secs,
            t.requests as f64 / secs
        );
        println!(
            "  latency per request: p50 {p50} us, p99 {p99} us, p99.9 {p999} us (each waits for its batch)"
        );
        if let Some((a, b, c)) = handoff {
            println!(
                "  contended hand-over, release call to the waiter's grant: p50 {a} us, p99 {b} us, p99.9 {c} us"
            );
        }
    }
    match run.failure.into_inner().unwrap() {
        Some(reason) => {
            eprintln!("mercato-load: stopped early: {reason}");
            1
        }
        None => 0,
    }
}
