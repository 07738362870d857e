//! `--target tcp://HOST:PORT`: the same workloads against a running
//! `mercato serve`, through the client crate. The protocol has no audit, so
//! the JSON's `invariants_ok` is `null`; run `mercato audit DIR` on the
//! server's data directory for that.
//!
//! `--ack-log` records each order as the server acknowledges it. If the
//! server goes away mid-run (the crash test kills it), every thread stops
//! at its first failed batch, the figures so far are printed, and the run
//! exits 1 with the reason on one line: what was acknowledged is in the
//! log, ready for `--verify-acks`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use mercato_client::{Client, ClientConfig, wire};
use mercato_engine::Command;
use mercato_engine::server::convert;

use super::{
    Args, Counts, FUNDS, Gen, HOT_SKU, Pacer, RunShared, STOCK_PER_SKU, Workload, append_acks,
    feed, open_ack_log, run_for,
};

/// Requests per setup batch.
const SETUP_BATCH: u64 = 1_024;

fn setup(c: &Client, args: &Args, accounts: u64, skus: u64) -> Result<(), String> {
    let send = |reqs: Vec<wire::Request>| -> Result<(), String> {
        for a in c.submit(reqs).map_err(|e| e.to_string())? {
            if !matches!(a, wire::Answer::Done(_)) {
                return Err(format!("loading failed: {a:?}"));
            }
        }
        Ok(())
    };
    let stocked =
        |sku| matches!(c.get_sku(sku), Ok(Ok(v)) if v.available + v.reserved + v.sold > 0);
    let catalog: Vec<(u64, u32)> = match args.workload {
        Workload::FlashSale => vec![(HOT_SKU, 1)],
        _ => (0..skus).map(|s| (s, 0)).collect(),
    };
    let restock = !stocked(catalog[0].0);
    for chunk in catalog.chunks(SETUP_BATCH as usize / 2) {
        let mut reqs = Vec::new();
        for &(sku, limit) in chunk {
            reqs.push(wire::Request::PutSku {
                sku,
                price: 100 + sku % 9_900,
                per_user_limit: limit,
            });
            if restock {
                reqs.push(wire::Request::Restock {
                    sku,
                    qty: STOCK_PER_SKU,
                });
            }
        }
        send(reqs)?;
    }
    let mut a = 0;
    while a < accounts {
        let end = (a + SETUP_BATCH).min(accounts);
        send(
            (a..end)
                .map(|account| wire::Request::Deposit {
                    account,
                    amount: FUNDS,
                })
                .collect(),
        )?;
        a = end;
    }
    Ok(())
}

pub fn run(args: &Args, addr: SocketAddr, accounts: u64, skus: u64) -> i32 {
    let tls = match &args.tls_ca {
        None => None,
        Some(ca) => match mercato_client::TlsSettings::from_files(ca, &addr.ip().to_string(), None)
        {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("mercato-load: {e}");
                return 2;
            }
        },
    };
    let config = ClientConfig {
        timeout_ms: 60_000,
        read_balance: args.read_balance,
        tls,
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
    if let Err(e) = setup(&clients[0], args, accounts, skus) {
        eprintln!("mercato-load: setup failed: {e}");
        return 2;
    }
    let acks = args.ack_log.as_deref().map(open_ack_log);
    let subscriber = match args
        .subscribe
        .then(|| feed::subscribe(addr, config.clone()))
        .transpose()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mercato-load: --subscribe: {e}");
            return 2;
        }
    };
    // The subscriber's client outlives the scope; its stream moves in.
    let (_feed_client, stream) = subscriber.unzip();
    let run = RunShared::new();
    std::thread::scope(|s| {
        let follower = stream.map(|stream| {
            let stop = &run.stop;
            s.spawn(move || feed::follow(&stream, stop))
        });
        for t in 0..args.threads {
            let (client, run, acks) = (&clients[t % clients.len()], &run, acks.as_ref());
            s.spawn(move || {
                let mut g = Gen::new(args, accounts, skus, run.run_id, t);
                let mut c = Counts::default();
                let mut in_flight = VecDeque::new();
                let mut pacer = Pacer::new(args);
                loop {
                    let stopping = run.stopping();
                    while !stopping && in_flight.len() < args.pipeline.max(1) {
                        pacer.wait();
                        let batch: Vec<Command> = (0..args.batch).map(|_| g.next()).collect();
                        let placing: Vec<bool> = batch
                            .iter()
                            .map(|c| matches!(c, Command::PlaceOrder(_)))
                            .collect();
                        let reqs = batch.into_iter().map(convert::request).collect();
                        match client.submit_ticket(reqs) {
                            Ok(ticket) => in_flight.push_back((Instant::now(), placing, ticket)),
                            Err(e) => {
                                run.fail(e);
                                break;
                            }
                        }
                    }
                    let Some((at, placing, ticket)) = in_flight.pop_front() else {
                        break;
                    };
                    let answers = match ticket.wait() {
                        Ok(a) => a,
                        Err(e) => {
                            // Batches still in flight are dropped unread:
                            // nothing in them was acknowledged.
                            run.fail(e);
                            break;
                        }
                    };
                    if let Some(acks) = acks {
                        append_acks(
                            acks,
                            answers.iter().filter_map(|a| match a {
                                wire::Answer::Done(wire::Reply::Order(o)) => {
                                    Some((o.account, o.id, format!("{:?}", o.state)))
                                }
                                _ => None,
                            }),
                        );
                    }
                    c.latency.record_batch(at, answers.len() as u64);
                    c.requests += answers.len() as u64;
                    for (answer, placed) in answers.into_iter().zip(placing) {
                        match answer {
                            wire::Answer::Done(wire::Reply::Order(o)) if placed => {
                                let reserved = o.state == wire::OrderState::Reserved;
                                c.placed(&mut g, reserved.then_some((o.account, o.id)));
                            }
                            wire::Answer::Rejected(_) | wire::Answer::Failed { .. } if placed => {
                                c.rejected += 1
                            }
                            _ => {}
                        }
                    }
                }
                c.add_to(&run.total);
            });
        }
        run_for(args, &run.stop);
        if let Some(f) = follower {
            *run.ended.lock().unwrap() = Some(Instant::now());
            match f.join().expect("the feed thread") {
                Ok(figures) => run.total.lock().unwrap().feed = Some(figures),
                Err(e) => run.fail(format!("--subscribe: {e}")),
            }
        }
    });
    run.finish(
        args,
        clients[0].shards(),
        "not available over tcp; run `mercato audit DIR` on the server's data directory",
    )
}
