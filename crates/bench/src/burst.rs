//! A burst of submissions through the whole local pipeline:
//! MTurk double → SQS (moto) → event-source loop (MaximumConcurrency C) →
//! the real handler binary (one process per instance) → DynamoDB Local and
//! back to the double, which throttles above R requests per second.
//!
//! Workers are skewed: every worker submits once, and the rest of the
//! submissions go to workers by a Zipf-like weight 1/rank^skew, so a few
//! workers do hundreds. Submissions are sent in a seeded random order, as
//! fast as the double can deliver them to the queue.
//!
//! Reported: time to drain against the floor R sets ((GetAssignment per
//! submission + one grant per worker) ÷ R), MTurk calls per submission,
//! first submission → grant per worker (p50/p95/p99), the handler's peak RSS
//! and CPU, Lambda duration (GB-s), and the dead-letter queue's count.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use futures::StreamExt;
use serde_json::json;
use testkit::event_source::{EventSource, Totals};
use testkit::mturk_double::{GrantStatus, MturkDouble, Outcome};
use testkit::runtime_api::{FunctionPool, PoolConfig};
use testkit::Stack;
use tokio::time::Instant;

use crate::common::{self, ms, percentile, print_result, Args, HandlerEnv};

/// The sender id MTurk's messages carry (moto cannot send as MTurk).
const MTURK_SENDER_ID: &str = "AIDAIXO4EZE6RHVSXIN4E";

/// Submissions per worker, largest first: one each, the rest by 1/rank^skew.
pub fn plan(submissions: usize, workers: usize, skew: f64) -> Vec<u32> {
    let extras = submissions - workers;
    let weights: Vec<f64> = (0..workers)
        .map(|i| 1.0 / ((i + 1) as f64).powf(skew))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut counts: Vec<u32> = weights
        .iter()
        .map(|w| 1 + (extras as f64 * w / total).floor() as u32)
        .collect();
    let mut left = submissions - counts.iter().map(|c| *c as usize).sum::<usize>();
    let mut i = 0;
    while left > 0 {
        counts[i % workers] += 1;
        left -= 1;
        i += 1;
    }
    counts
}

/// SplitMix64: a seeded, dependency-free shuffle.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn epoch_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn add(a: &mut Totals, b: Totals) {
    a.invocations += b.invocations;
    a.records += b.records;
    a.failed_records += b.failed_records;
    a.failed_invocations += b.failed_invocations;
    a.deleted += b.deleted;
}

async fn subscribe(
    stack: &Stack,
    double: &MturkDouble,
    hit_type: &str,
    queue_url: &str,
) -> anyhow::Result<()> {
    use aws_sdk_mturk::types::{EventType, NotificationSpecification, NotificationTransport};
    let conf = aws_sdk_mturk::config::Builder::from(&stack.sdk)
        .endpoint_url(double.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    aws_sdk_mturk::Client::from_conf(conf)
        .update_notification_settings()
        .hit_type_id(hit_type)
        .notification(
            NotificationSpecification::builder()
                .destination(queue_url)
                .transport(NotificationTransport::Sqs)
                .version("2014-08-15")
                .event_types(EventType::AssignmentSubmitted)
                .build()?,
        )
        .active(true)
        .send()
        .await
        .context("subscribing the HIT type")?;
    Ok(())
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let submissions: usize = args.required("submissions")?;
    let workers: usize = args.required("workers")?;
    let concurrency: usize = args.required("concurrency")?;
    let rps: f64 = args.required("rps")?;
    let time_limit = Duration::from_secs(args.number("time-limit", 3600u64)?);
    // `--handler-rps default` leaves MTURK_MAX_RPS unset: the handler is not
    // told R and adapts below its default ceiling. Without the flag the
    // handler gets R / C, what a lab had to set before the limit adapted.
    let handler_rps: Option<f64> = match args.get("handler-rps") {
        Some("default") => None,
        Some(_) => Some(args.number("handler-rps", 0.0)?),
        None => Some(rps / concurrency.max(1) as f64),
    };
    let label = args.get("label").unwrap_or("").to_owned();
    let skew: f64 = args.number("skew", 0.7)?;
    let submit_concurrency: usize = args.number("submit-concurrency", 8)?;
    let seed: u64 = args.number("seed", 1)?;
    let backoff_base: u64 = args.number("backoff-base", 30)?;
    let backoff_max: u64 = args.number("backoff-max", 900)?;
    let visibility: u32 = args.number("visibility", 360)?;
    let max_receive: u32 = args.number("max-receive", 8)?;
    let keep_logs = args.get("keep-logs").map(PathBuf::from);
    // A share of calls the double throttles whatever the rate (another
    // script of the lab, MTurk itself), on top of its account limit.
    let stray: f64 = args.number("stray-throttle", 0.0)?;
    // The two ways a start goes wrong: MTurk throttles the first N calls
    // (with two instances, each one's first for N = 2), or its bucket is
    // empty when the burst begins (another script of the lab spent it).
    let throttle_first: usize = args.number("throttle-first", 0usize)?;
    let empty_bucket = match args.get("empty-bucket") {
        None | Some("no") => false,
        Some("yes") => true,
        Some(other) => bail!("--empty-bucket takes yes or no, not {other:?}"),
    };
    // The function's timeout (template.yaml: 60 s); the stray case
    // used 20 s.
    let timeout_secs: u64 = args.number("timeout", 60u64)?;
    // The pool's rate already in the ledger before the burst (as after an
    // earlier spell of work): calls/s and how many instances reported it.
    let pool_rate: Option<f64> = match args.get("pool-rate") {
        None => None,
        Some(_) => Some(args.number("pool-rate", 0.0)?),
    };
    // Every notification queued before the first poll: the drain then
    // measures the handler and the rate alone, not how fast the local SQS
    // takes 2,000 sends (minutes on a loaded machine, longer than R = 20's floor).
    let prefill = match args.get("prefill") {
        None | Some("no") => false,
        Some("yes") => true,
        Some(other) => bail!("--prefill takes yes or no, not {other:?}"),
    };
    if workers == 0 || submissions < workers {
        bail!("need 1 <= --workers <= --submissions");
    }
    if !(1..=1000).contains(&concurrency)
        || !rps.is_finite()
        || rps <= 0.0
        || handler_rps.is_some_and(|r| !r.is_finite() || r <= 0.0)
    {
        bail!("need 1 <= --concurrency <= 1000 and positive rates");
    }
    let repo = common::repo(args)?;
    let binary = common::binary(args, &repo)?;
    if let Some(dir) = &keep_logs {
        std::fs::create_dir_all(dir)?;
    }

    // ----- set-up -----
    let stack = Stack::from_env().await?;
    let table = stack.ledger_table().await?;
    let queues = stack.queues(visibility, max_receive).await?;
    let double = MturkDouble::start(Some(stack.sqs.clone())).await?;
    double.set_record_bodies(false);
    let qualification = double.create_qualification_type("Burst benchmark");
    let hit_type = double.new_hit_type_id();
    subscribe(&stack, &double, &hit_type, &queues.url).await?;

    let counts = plan(submissions, workers, skew);
    let ids: Arc<Vec<String>> = Arc::new((0..workers).map(|i| format!("A{i:08}BW")).collect());
    let hits: Arc<Vec<String>> = Arc::new(
        (0..counts[0])
            .map(|_| double.create_hit(&hit_type))
            .collect(),
    );
    let mut order: Vec<(u32, u32)> = counts
        .iter()
        .enumerate()
        .flat_map(|(w, n)| (0..*n).map(move |k| (w as u32, k)))
        .collect();
    Rng(seed).shuffle(&mut order);
    let singles = counts.iter().filter(|c| **c == 1).count();
    let top: Vec<u32> = counts.iter().take(5).copied().collect();
    let floor = Duration::from_secs_f64((submissions + workers) as f64 / rps);
    println!(
        "burst: {submissions} submissions by {workers} workers (top workers {top:?}, {singles} submit once; skew {skew}), \
         MaximumConcurrency {concurrency}, double throttles above {rps}/s, handler MTURK_MAX_RPS {}",
        handler_rps.map_or("unset (the default ceiling)".to_owned(), |r| r.to_string())
    );
    println!(
        "floor: ({submissions} GetAssignment + {workers} grants) / {rps}/s = {:.0} s; time limit {} s",
        floor.as_secs_f64(),
        time_limit.as_secs()
    );

    let env = HandlerEnv {
        table: &table,
        qualification: &qualification,
        mturk_endpoint: &double.endpoint(),
        mturk_max_rps: handler_rps,
        queue_url: Some(&queues.url),
        extra: vec![
            ("RETRY_BACKOFF_BASE_SECS".into(), backoff_base.to_string()),
            ("RETRY_BACKOFF_MAX_SECS".into(), backoff_max.to_string()),
            // As template.yaml passes it (handlers before it ignore it).
            ("MAX_CONCURRENCY".into(), concurrency.to_string()),
        ],
    }
    .build()?;
    let mut config = PoolConfig::new(&binary, env, concurrency);
    config.timeout = Duration::from_secs(timeout_secs); // template.yaml's Timeout: 60
    config.log_dir = keep_logs.clone();
    let pool = FunctionPool::new(config);
    let mut source = EventSource::new(&queues.url, &queues.arn);
    source.batch_size = 10; // template.yaml's BatchSize
    source.max_concurrency = concurrency;
    source.sender_id_override = Some(MTURK_SENDER_ID.to_owned());

    double.clear_calls();
    double.throttle_above(Some(rps));
    if stray > 0.0 {
        double.fail_fraction(None, stray, testkit::mturk_double::Fault::Throttle, seed);
    }
    if let Some(rate) = pool_rate {
        let ledger = mturk_exclusion::ledger::Ledger::new(stack.dynamodb.clone(), &table);
        let now = time::OffsetDateTime::now_utc();
        for i in 0..concurrency {
            ledger
                .record_pool_rate(&format!("bench{i}"), rate / concurrency as f64, now)
                .await?;
        }
    }

    // ----- the burst -----
    let first_submit: Arc<Vec<AtomicU64>> =
        Arc::new((0..workers).map(|_| AtomicU64::new(u64::MAX)).collect());
    let submitted = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let started_at = SystemTime::now();
    let producer = {
        let (double, ids, hits) = (double.clone(), ids.clone(), hits.clone());
        let (first_submit, submitted) = (first_submit.clone(), submitted.clone());
        tokio::spawn(async move {
            let errors: Vec<String> = futures::stream::iter(order)
                .map(|(w, k)| {
                    let (double, ids, hits) = (&double, &ids, &hits);
                    let (first_submit, submitted) = (&first_submit, &submitted);
                    async move {
                        let at = SystemTime::now();
                        let result = double
                            .submit_assignment(&hits[k as usize], &ids[w as usize])
                            .await;
                        first_submit[w as usize].fetch_min(epoch_nanos(at), Ordering::Relaxed);
                        submitted.fetch_add(1, Ordering::Relaxed);
                        match result {
                            Ok(s)
                                if matches!(
                                    s.delivery,
                                    Some(testkit::mturk_double::DeliveryOutcome::Sent { .. })
                                ) =>
                            {
                                None
                            }
                            Ok(s) => Some(format!("not delivered: {:?}", s.delivery)),
                            Err(e) => Some(e.to_string()),
                        }
                    }
                })
                .buffer_unordered(submit_concurrency.max(1))
                .filter_map(|e| async move { e })
                .collect()
                .await;
            (errors, Instant::now())
        })
    };
    let monitor = {
        let (double, submitted) = (double.clone(), submitted.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!(
                    "  [{:>5.0} s] submitted {}, GetAssignment {}, grants {}",
                    started.elapsed().as_secs_f64(),
                    submitted.load(Ordering::Relaxed),
                    double.call_count("GetAssignment"),
                    double.call_count("AssociateQualificationWithWorker"),
                );
            }
        })
    };
    // Let the first notifications (with --prefill all) reach the queue
    // before the pollers look.
    while (prefill || submitted.load(Ordering::Relaxed) == 0) && !producer.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Drain time and the time limit run from here: the start, or with
    // --prefill the moment the queue held the whole burst.
    let submitting_started = started;
    let started = if prefill { Instant::now() } else { started };
    if throttle_first > 0 {
        double.throttle_first(throttle_first);
    }
    if empty_bucket {
        double.empty_bucket();
    }
    let mut totals = Totals::default();
    let mut drained = false;
    while let Some(remaining) = time_limit.checked_sub(started.elapsed()) {
        let (t, d) = source.drain(&stack, pool.invoker(), remaining).await;
        add(&mut totals, t);
        if !d {
            break;
        }
        if producer.is_finished() {
            drained = true;
            break;
        }
        // The queue ran dry while submissions were still coming: go on.
    }
    let drain_time = started.elapsed();
    monitor.abort();
    let (errors, produced_at) = if producer.is_finished() {
        producer.await?
    } else {
        producer.abort();
        (
            vec!["time limit reached while submitting".to_owned()],
            Instant::now(),
        )
    };
    let report = pool.report();
    pool.shutdown();

    // ----- results -----
    let calls = double.calls();
    let count = |op: &str| calls.iter().filter(|c| c.operation == op).count();
    let throttled = |op: Option<&str>| {
        calls
            .iter()
            .filter(|c| op.is_none_or(|o| c.operation == o))
            .filter(|c| c.outcome == Outcome::Fault("Throttle".into()))
            .count()
    };
    let gets = count("GetAssignment");
    let grants = count("AssociateQualificationWithWorker");
    let mut latencies = Vec::with_capacity(workers);
    let mut not_granted = 0usize;
    let mut last_grant = Duration::ZERO;
    for (w, id) in ids.iter().enumerate() {
        match double.qualification(&qualification, id) {
            Some(g) if g.status == GrantStatus::Granted => {
                let first = first_submit[w].load(Ordering::Relaxed);
                let granted = epoch_nanos(g.grant_time);
                latencies.push(Duration::from_nanos(granted.saturating_sub(first)));
                last_grant =
                    last_grant.max(g.grant_time.duration_since(started_at).unwrap_or_default());
            }
            _ => not_granted += 1,
        }
    }
    latencies.sort();
    let ours: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let strangers = double
        .workers_with(&qualification)
        .iter()
        .filter(|(w, _)| !ours.contains(w.as_str()))
        .count();
    let dlq = stack.queue_depth(&queues.dlq_url).await?;
    let left = stack.queue_depth(&queues.url).await?;
    let lat = |p| percentile(&latencies, p).map(ms);
    let gb_s = report.invocation_time.as_secs_f64() * 128.0 / 1024.0;

    println!("results:");
    println!(
        "  drained: {drained}; time to drain {:.1} s = {:.2} x the floor of {:.0} s; last grant at {:.1} s; submitting took {:.1} s",
        drain_time.as_secs_f64(),
        drain_time.as_secs_f64() / floor.as_secs_f64(),
        floor.as_secs_f64(),
        last_grant.as_secs_f64(),
        (produced_at - submitting_started).as_secs_f64()
    );
    println!(
        "  MTurk calls: {} total = {:.3} per submission (GetAssignment {gets}, AssociateQualificationWithWorker {grants}, \
         throttled {} of them = {:.1} %)",
        calls.len(),
        calls.len() as f64 / submissions as f64,
        throttled(None),
        100.0 * throttled(None) as f64 / calls.len().max(1) as f64
    );
    let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1} s", v / 1000.0));
    println!(
        "  first submission -> grant, per worker: p50 {}, p95 {}, p99 {}, max {}; not granted {not_granted}; \
         granted without submitting {strangers}",
        show(lat(50.0)),
        show(lat(95.0)),
        show(lat(99.0)),
        show(latencies.last().map(|d| ms(*d)))
    );
    println!(
        "  handler: {} cold starts, {} invocations ({} failed whole, {} lost), peak RSS {} KiB, CPU {:.1} s, \
         invocation time {:.1} s = {gb_s:.2} GB-s at 128 MB, longest invocation {:.1} s",
        report.cold_starts,
        report.invocations,
        totals.failed_invocations,
        report.lost_invocations,
        report.peak_rss_kib.unwrap_or(0),
        report.cpu_time.as_secs_f64(),
        report.invocation_time.as_secs_f64(),
        report.longest_invocation.as_secs_f64()
    );
    println!(
        "  event source: {} records received, {} failed, {} deleted; DLQ {dlq}; left in queue {left}; submit errors {}",
        totals.records,
        totals.failed_records,
        totals.deleted,
        errors.len()
    );
    for e in errors.iter().take(5) {
        println!("    submit error: {e}");
    }
    print_result(
        "burst",
        json!({
            "label": label,
            "binary": binary.display().to_string(),
            "submissions": submissions,
            "workers": workers,
            "skew": skew,
            "top_worker_counts": top,
            "single_submission_workers": singles,
            "max_concurrency": concurrency,
            "double_rps": rps,
            "handler_mturk_max_rps": handler_rps,
            "retry_backoff_secs": [backoff_base, backoff_max],
            "visibility_secs": visibility,
            "max_receive_count": max_receive,
            "stray_throttle": stray,
            "throttle_first": throttle_first,
            "empty_bucket": empty_bucket,
            "timeout_s": timeout_secs,
            "pool_rate_seeded": pool_rate,
            "time_limit_s": time_limit.as_secs(),
            "prefill": prefill,
            "drained": drained,
            "drain_s": drain_time.as_secs_f64(),
            "floor_s": floor.as_secs_f64(),
            "drain_over_floor": drain_time.as_secs_f64() / floor.as_secs_f64(),
            "last_grant_s": last_grant.as_secs_f64(),
            "submitting_s": (produced_at - submitting_started).as_secs_f64(),
            "submit_errors": errors.len(),
            "mturk_calls": calls.len(),
            "mturk_calls_per_submission": calls.len() as f64 / submissions as f64,
            "get_assignment_calls": gets,
            "grant_calls": grants,
            "throttled_calls": throttled(None),
            "throttled_share": throttled(None) as f64 / calls.len().max(1) as f64,
            "throttled_get_assignment": throttled(Some("GetAssignment")),
            "throttled_grants": throttled(Some("AssociateQualificationWithWorker")),
            "latency_ms": {"p50": lat(50.0), "p95": lat(95.0), "p99": lat(99.0), "max": latencies.last().map(|d| ms(*d))},
            "workers_not_granted": not_granted,
            "granted_without_submitting": strangers,
            "dlq": dlq,
            "left_in_queue": left,
            "event_source": {
                "invocations": totals.invocations,
                "records": totals.records,
                "failed_records": totals.failed_records,
                "failed_invocations": totals.failed_invocations,
                "deleted": totals.deleted,
            },
            "handler": {
                "cold_starts": report.cold_starts,
                "invocations": report.invocations,
                "function_errors": report.function_errors,
                "lost_invocations": report.lost_invocations,
                "peak_rss_kib": report.peak_rss_kib,
                "cpu_s": report.cpu_time.as_secs_f64(),
                "invocation_s": report.invocation_time.as_secs_f64(),
                "gb_s_at_128mb": gb_s,
                "longest_invocation_s": report.longest_invocation.as_secs_f64(),
            },
        }),
    );
    if !drained {
        bail!("the queue did not drain within the time limit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_skewed_and_adds_up() {
        let counts = plan(70_000, 25_000, 0.7);
        assert_eq!(counts.iter().map(|c| *c as usize).sum::<usize>(), 70_000);
        assert!(counts.iter().all(|c| *c >= 1));
        assert!(counts[0] >= 300, "{:?}", &counts[..5]);
        assert!(counts.windows(2).all(|w| w[0] >= w[1]));
        let hundreds = counts.iter().filter(|c| **c >= 100).count();
        assert!((2..=50).contains(&hundreds), "{hundreds}");
    }
}
