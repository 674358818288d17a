//! Handler CPU time per record, at batch sizes 1 and 10.
//!
//! One fresh process per batch size. After its init (its first poll of the
//! Runtime API) the process's CPU time is read, then again after one idle
//! second; both are subtracted. Then `--batches` batches, each record a new
//! submission by a new worker (the full path: today 3 DynamoDB requests,
//! GetAssignment and the grant; `--binary` may name an older handler that
//! makes more), with the MTurk double answering at once and the handler's
//! rate limit raised out of the way (MTURK_MAX_RPS=1000).
//!
//! With `--mturk-latency-ms` the double holds each answer that long, and with
//! `--dynamodb-rtt-ms` the handler reaches DynamoDB Local through a loopback
//! delay proxy ([`crate::delay_proxy`]) adding that round trip to every
//! request: then the invocation wall times, per record and per batch of 10,
//! are the measurement (issue 11's latency); the CPU figures still print.

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use testkit::mturk_double::{AssignmentStatus, MturkDouble};
use testkit::runtime_api::{FunctionProcess, Invocation, RuntimeApi};
use testkit::Stack;
use tokio::time::Instant;

use crate::common::{
    self, ms, print_result, sqs_record, submitted_document, Args, HandlerEnv, Summary,
};
use crate::delay_proxy::{socket_of, DelayProxy};

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let batches: usize = args.number("batches", 200)?;
    // Latency (0: none, the CPU measurement): MTurk's answers held this long
    // by the double; DynamoDB reached through a loopback proxy adding this
    // round trip to every request.
    let mturk_latency_ms: u64 = args.number("mturk-latency-ms", 0)?;
    let dynamodb_rtt_ms: u64 = args.number("dynamodb-rtt-ms", 0)?;
    let repo = common::repo(args)?;
    let binary = common::binary(args, &repo)?;
    let stack = Stack::from_env().await?;
    let table = stack.ledger_table().await?;
    let double = MturkDouble::start(None).await?;
    double.set_record_bodies(false);
    double.set_latency(Duration::from_millis(mturk_latency_ms));
    let mut extra = vec![("MTURK_START_RPS".to_owned(), "1000".to_owned())];
    let _proxy = if dynamodb_rtt_ms > 0 {
        let direct = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap_or_default();
        let proxy =
            DelayProxy::start(socket_of(&direct)?, Duration::from_millis(dynamodb_rtt_ms)).await?;
        extra.push(("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), proxy.endpoint()));
        Some(proxy)
    } else {
        None
    };
    let qualification = double.create_qualification_type("Per-record benchmark");
    let hit_type = double.new_hit_type_id();
    let env = HandlerEnv {
        table: &table,
        qualification: &qualification,
        mturk_endpoint: &double.endpoint(),
        mturk_max_rps: Some(1000.0),
        queue_url: None,
        // CPU per record, not the limiter: start at the ceiling.
        extra,
    }
    .build()?;
    let queue_arn = "arn:aws:sqs:us-east-1:123456789012:bench-per-record";

    let mut results = Vec::new();
    for size in [1usize, 10] {
        let api = RuntimeApi::start().await?;
        let process = FunctionProcess::spawn(&binary, &api, &env)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while api.first_poll().is_none() {
            if Instant::now() > deadline {
                bail!("the handler did not start:\n{}", process.log_text());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start_up = process.cpu_time().context("no CPU reading")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = process.cpu_time().context("no CPU reading")?;
        let idle = before.saturating_sub(start_up);

        let grants_before = double.call_count("AssociateQualificationWithWorker");
        let mut durations = Vec::with_capacity(batches);
        let mut hit = double.create_hit(&hit_type);
        for b in 0..batches {
            if b % 50 == 0 {
                hit = double.create_hit(&hit_type);
            }
            let records: Vec<Value> = (0..size)
                .map(|i| {
                    let worker = format!("A{size}B{b:06}R{i:02}");
                    let a = double.add_assignment(&hit, &worker, AssignmentStatus::Submitted);
                    let doc = format!("doc-{size}-{b}-{i}");
                    sqs_record(
                        &format!("m-{size}-{b}-{i}"),
                        &submitted_document(&doc, &hit_type, &hit, &a),
                        queue_arn,
                    )
                })
                .collect();
            let started = Instant::now();
            let answer = api
                .invoke(json!({ "Records": records }), Duration::from_secs(30))
                .await;
            durations.push(started.elapsed());
            match answer {
                Ok(Invocation::Response(v))
                    if v["batchItemFailures"].as_array().is_some_and(Vec::is_empty) => {}
                other => bail!("batch {b} of {size}: {other:?}\n{}", process.log_text()),
            }
        }
        let after = process.cpu_time().context("no CPU reading")?;
        let rss = process.peak_rss_kib();
        process.kill();
        let records = (batches * size) as u32;
        let grants = double.call_count("AssociateQualificationWithWorker") - grants_before;
        if grants != records as usize {
            bail!("{grants} grants for {records} records");
        }
        let work = after.saturating_sub(before);
        let per_record = work / records;
        let summary = Summary::of(&durations).context("no batches")?;
        println!("batch size {size}: {batches} batches, {records} records");
        if mturk_latency_ms > 0 || dynamodb_rtt_ms > 0 {
            println!(
                "  MTurk latency {mturk_latency_ms} ms, DynamoDB round trip +{dynamodb_rtt_ms} ms; \
                 wall time per record {:.1} ms (invocation mean / batch size)",
                summary.mean_ms / size as f64
            );
        }
        println!(
            "  start-up CPU {:.0} ms, idle CPU over 1 s {:.0} ms (subtracted)",
            ms(start_up),
            ms(idle)
        );
        println!(
            "  CPU for the batches {:.0} ms -> {:.3} ms per record, {:.3} ms per batch",
            ms(work),
            ms(per_record),
            ms(work / batches as u32)
        );
        println!("  invocation wall time: {summary}");
        println!("  peak RSS {} KiB", rss.unwrap_or(0));
        results.push(json!({
            "batch_size": size,
            "batches": batches,
            "records": records,
            "start_up_cpu_ms": ms(start_up),
            "idle_cpu_ms_per_s": ms(idle),
            "batches_cpu_ms": ms(work),
            "cpu_ms_per_record": ms(per_record),
            "cpu_ms_per_batch": ms(work / batches as u32),
            "invocation_ms": summary,
            "peak_rss_kib": rss,
        }));
    }
    println!(
        "(CPU from /proc/<pid>/stat utime+stime at {} ticks/s: 10 ms resolution per reading)",
        testkit::runtime_api::clock_ticks_per_second()
    );
    print_result(
        "per-record",
        json!({
            "binary": binary.display().to_string(),
            "mturk_latency_ms": mturk_latency_ms,
            "dynamodb_rtt_ms": dynamodb_rtt_ms,
            "results": results,
        }),
    );
    Ok(())
}
