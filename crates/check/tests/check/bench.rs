//! Figures for BENCHMARKS.md (ignored by default; run with
//! `cargo test -p exclusion-check --test check -- --ignored bench --nocapture`).

use std::time::{Duration, Instant};

use super::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test]
#[ignore = "benchmark"]
async fn bench_warm_latency_and_cold_start() {
    const REQUESTS: usize = 500;
    const COLD_STARTS: usize = 5;
    let (p, d) = deployed(1).await;
    for _ in 0..20 {
        d.check(&fresh("A"), &fresh("3ASG")).await;
    }
    // Warm: every request a new worker (Query + conditional UpdateItem, the
    // heaviest path); then the same worker on other assignments (busy:
    // two Queries).
    for (label, same_worker) in [("new", false), ("busy", true)] {
        let worker = fresh("A");
        let mut times = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let w = if same_worker {
                worker.clone()
            } else {
                fresh("A")
            };
            let started = Instant::now();
            let r = d.check(&w, &fresh("3ASG")).await;
            times.push(started.elapsed());
            assert_eq!(r.status, 200);
        }
        times.sort();
        println!(
            "warm {label}: {REQUESTS} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&times, 0.50).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0,
            times.last().unwrap().as_secs_f64() * 1000.0
        );
    }
    // Cold: a new process per start; spawn → first poll (init), and spawn →
    // first answer (init + the first request, with its new connection).
    let env = env_of(&p);
    let mut init = Vec::new();
    let mut first = Vec::new();
    for _ in 0..COLD_STARTS {
        let cold = Deployed::start(1, &env).await;
        let spawned = cold.processes[0].spawned_at();
        let r = cold.check(&fresh("A"), &fresh("3ASG")).await;
        assert_eq!(r.status, 200);
        first.push(spawned.elapsed());
        init.push(cold.apis[0].first_poll().expect("polled") - spawned);
    }
    init.sort();
    first.sort();
    println!(
        "cold start ({COLD_STARTS} processes): init median {:.1} ms, spawn to first answer median {:.1} ms (max {:.1} ms)",
        percentile(&init, 0.5).as_secs_f64() * 1000.0,
        percentile(&first, 0.5).as_secs_f64() * 1000.0,
        first.last().unwrap().as_secs_f64() * 1000.0
    );
}
