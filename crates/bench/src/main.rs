#![recursion_limit = "256"]
//! Benchmarks of the real handler binary against the local stack.
//!
//! ```text
//! cargo run --release -p bench -- cold-start [--runs 20]
//! cargo run --release -p bench -- per-record [--batches 200]
//! cargo run --release -p bench -- size
//! cargo run --release -p bench -- burst --submissions 2000 --workers 714 --concurrency 2 --rps 5
//! cargo run --release -p bench -- backfill --assignments 10000
//! cargo run -p bench -- wru [--rounds 3] [--baseline OTHER-BENCH]
//! ```
//!
//! Every subcommand but `wru` drives `target/release/exclusion-handler` (or
//! `--binary PATH`) as a child process through testkit's Runtime API; the
//! environment must point at the local stack (`eval "$(scripts/local-stack.sh env)"`).
//! Each prints a readable report and, last, one `RESULT {json}` line.

mod backfill;
mod burst;
mod cold_start;
mod common;
mod delay_proxy;
mod per_record;
mod size;
mod wru;

use std::process::ExitCode;

use common::Args;

const USAGE: &str = "\
Usage: bench <command> [options]

Commands:
  cold-start  [--runs 20] [--cargo-lambda PATH|none]
              spawn -> first response of a fresh handler process, with a Ping
              event (events/ping.json); also under `cargo lambda watch` if found
  per-record  [--batches 200] [--mturk-latency-ms 0] [--dynamodb-rtt-ms 0]
              handler CPU time per record at batch sizes 1 and 10 (MTurk double
              answering at once), idle/start-up CPU subtracted; with latency
              (the double's, and a loopback delay proxy in front of DynamoDB)
              the invocation wall times are the point
  size        the release binary's size and the [profile.release] it was built with
  burst       --submissions N --workers W --concurrency C --rps R
              [--time-limit SECS (3600)] [--handler-rps (R/C)] [--skew 0.7]
              [--submit-concurrency 8] [--seed 1] [--backoff-base SECS (30)]
              [--backoff-max SECS (900)] [--visibility SECS (360)] [--max-receive 8]
              [--keep-logs DIR] [--prefill yes|no (no)] [--stray-throttle SHARE (0)]
              [--timeout SECS (60)] [--pool-rate RPS] [--throttle-first N (0)]
              [--empty-bucket yes|no (no)]
              a burst of skewed submissions through the MTurk double, SQS, the
              event-source loop and the real handler, the double throttling above R/s;
              with --prefill yes every notification is queued before the first poll
              and the drain is timed from then (the handler and R alone);
              --stray-throttle: that share of calls throttled whatever the rate;
              --timeout: the function's (template.yaml: 60); --pool-rate: the pool's
              rate already in the ledger, as after an earlier spell of work;
              --throttle-first: the burst's first N calls throttled (2: each of two
              instances' first); --empty-bucket: the double's bucket empty as it begins

  backfill    [--assignments 10000] [--rps 50] [--concurrency 4] [--cli PATH]
              the release `mturk-exclusion exclude --hit` over one HIT with that many
              assignments on the MTurk double: time and MTurk calls, then a second run
  wru         [--rounds 3] [--label NAME] [--baseline OTHER-BENCH-BINARY]
              DynamoDB read/write request units per step of a submission and of the
              check, per request and per index, as DynamoDB Local reports them (the
              library's path in this process, not the handler binary); with
              --baseline, another build's figures side by side

Common options:
  --binary PATH   the handler binary (default: <target>/release/exclusion-handler)
  --repo PATH     the repository root (default: found from this crate)
";

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return if argv.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let command = argv.remove(0);
    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match command.as_str() {
            "cold-start" => cold_start::run(&args).await,
            "per-record" => per_record::run(&args).await,
            "size" => size::run(&args).await,
            "burst" => burst::run(&args).await,
            "backfill" => backfill::run(&args).await,
            "wru" => wru::run(&args).await,
            other => Err(anyhow::anyhow!("unknown command {other:?}")),
        }
    });
    match result.and_then(|()| args.check_all_used()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
