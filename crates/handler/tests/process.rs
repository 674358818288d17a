//! The real `exclusion-handler` binary, run as Lambda runs a custom runtime:
//! a child process polling a local Runtime API (testkit::runtime_api), fed
//! by the event-source loop from the SQS stand-in, talking to the MTurk
//! double and DynamoDB Local.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use mturk_exclusion::ids::{AssignmentId, WorkerId};
use serde_json::json;
use testkit::mturk_double::GrantStatus;
use testkit::pipeline::{document, submitted, Options, Pipeline};
use testkit::runtime_api::{
    FunctionPool, FunctionProcess, Invocation, InvokeError, PoolConfig, RuntimeApi,
};
use tokio::time::Instant;

const BINARY: &str = env!("CARGO_BIN_EXE_exclusion-handler");
/// Names another build of the handler to run instead of [`BINARY`]: the
/// `bootstrap` unpacked from a release's exclusion-handler.zip
/// (scripts/check-dist.sh runs it under qemu-aarch64, through testkit's
/// BOOTSTRAP_RUNNER).
const BINARY_VAR: &str = "EXCLUSION_HANDLER_BOOTSTRAP";

fn binary() -> &'static Path {
    static CHOSEN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| testkit::runtime_api::binary_under_test(BINARY_VAR, BINARY))
}

/// The function's environment for this pipeline, as the template sets it,
/// with local endpoints and short retry delays.
fn handler_env(p: &Pipeline) -> Vec<(String, String)> {
    let mut env = p.function_env();
    env.extend(
        [
            ("RETRY_BACKOFF_BASE_SECS", "1"),
            ("RETRY_BACKOFF_MAX_SECS", "2"),
            // Redeliveries here come seconds apart: a killed process's lease
            // and grant window must run out on that scale too.
            ("ASSIGNMENT_LEASE_SECS", "2"),
            ("GRANT_WINDOW_SECS", "6"),
            // The metrics' Pool dimension (the template gives the stack's name).
            ("METRICS_POOL", "emf-test-pool"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

fn pool(p: &Pipeline, size: usize) -> FunctionPool {
    FunctionPool::new(pool_config(p, size))
}

fn pool_config(p: &Pipeline, size: usize) -> PoolConfig {
    let mut config = PoolConfig::new(binary(), handler_env(p), size);
    config.timeout = Duration::from_secs(30);
    config
}

/// A fresh directory for the logs of a pool's processes, kept after they end.
fn log_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(testkit::unique_name("handler-logs"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every line every process wrote there.
fn logs_in(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
        all.push('\n');
    }
    all
}

/// Submits assignments through the double (which notifies the queue);
/// returns assignment id → worker id. `plan` lists each worker with the
/// number of HITs they submit.
async fn submit(p: &Pipeline, plan: &[(&str, usize)]) -> BTreeMap<String, String> {
    let most = plan.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let hits: Vec<String> = (0..most)
        .map(|_| p.double.create_hit(&p.hit_type))
        .collect();
    let mut submitted = BTreeMap::new();
    for (worker, n) in plan {
        for hit in &hits[..*n] {
            let s = p.double.submit_assignment(hit, worker).await.unwrap();
            submitted.insert(s.assignment_id, worker.to_string());
        }
    }
    submitted
}

/// The invariants of exclusion, whatever happened on the way.
async fn assert_everyone_excluded_exactly(p: &Pipeline, submitted: &BTreeMap<String, String>) {
    let workers: BTreeSet<&str> = submitted.values().map(String::as_str).collect();
    // Each submitted worker is granted, silently.
    for w in &workers {
        assert!(p.granted(w), "{w} submitted but was not excluded");
    }
    p.assert_every_grant_silent();
    // No one else was granted.
    for (worker, grant) in p.double.workers_with(p.qualification.as_str()) {
        assert!(
            workers.contains(worker.as_str()),
            "{worker} was granted without submitting"
        );
        assert_eq!(grant.status, GrantStatus::Granted);
    }
    // Only lookups and grants: nothing that touches a worker's record or inbox.
    for op in [
        "DisassociateQualificationFromWorker",
        "CreateWorkerBlock",
        "RejectAssignment",
        "RejectQualificationRequest",
    ] {
        assert_eq!(p.double.call_count(op), 0, "{op} was called");
    }
    // One participation per assignment, each marked excluded.
    for (assignment, worker) in submitted {
        let a = AssignmentId::parse(assignment).unwrap();
        let participation = p
            .ledger
            .participation(&a)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("assignment {assignment} is not in the ledger"));
        assert_eq!(participation.worker_id.as_str(), worker);
        assert!(
            participation.excluded_at.is_some(),
            "{assignment} not marked excluded"
        );
    }
    for w in &workers {
        let theirs = submitted.values().filter(|v| v == w).count();
        let recorded = p
            .ledger
            .participations_of(&WorkerId::parse(w).unwrap())
            .await
            .unwrap();
        assert_eq!(recorded.len(), theirs, "participations of {w}");
    }
    assert!(p.dead_letters().await.is_empty(), "messages in the DLQ");
}

#[tokio::test]
async fn the_binary_excludes_the_workers_of_submissions_from_the_queue() {
    // Lambda sets a queue's visibility timeout well above the function's
    // timeout; the default 2 s here let a cold start on a loaded CI machine
    // outlast it, so SQS handed the same message to the second process and
    // the counts below saw a (legitimate, harmless) redelivery. Retries do
    // not wait for this: the handler sets each failed record's visibility.
    let p = Pipeline::with(Options {
        visibility_secs: 30,
        ..Options::default()
    })
    .await;
    let submitted = submit(
        &p,
        &[
            ("A1BINONE", 1),
            ("A2BINTWO", 2),
            ("A3BINTHREE", 1),
            ("A4BINFOUR", 3),
            ("A5BINFIVE", 1),
        ],
    )
    .await;
    assert_eq!(submitted.len(), 8);
    let logs = log_dir();
    let mut config = pool_config(&p, 2);
    config.log_dir = Some(logs.clone());
    let pool = FunctionPool::new(config);
    // Only the function's calls from here on (set-up made its own).
    p.double.clear_calls();

    let (totals, drained) = p
        .event_source()
        .drain(&p.stack, pool.invoker(), Duration::from_secs(25))
        .await;

    assert!(drained, "{totals:?}");
    // Each submission succeeded once. A worker's second submission that
    // arrives on the other process while their first grant is in flight
    // is retried once (at most one per extra submission: 1 + 2 here)
    // instead of being counted as excluded before the grant has landed.
    assert_eq!(totals.records - totals.failed_records, 8, "{totals:?}");
    assert!(totals.failed_records <= 3, "{totals:?}");
    assert_eq!(totals.failed_invocations, 0);
    assert_everyone_excluded_exactly(&p, &submitted).await;
    // Each worker once (a worker's two submissions in one batch may race
    // to a second, harmless grant).
    let grants = p.double.call_count("AssociateQualificationWithWorker");
    assert!((5..=8).contains(&grants), "{grants} grants");
    assert_eq!(p.double.call_count("GetAssignment"), 8);
    let report = pool.report();
    assert_eq!(report.invocations, totals.invocations);
    assert!((1..=2).contains(&report.cold_starts), "{report:?}");
    assert_eq!((report.lost_invocations, report.function_errors), (0, 0));
    assert!(report.peak_rss_kib.is_some_and(|kib| kib > 0));
    pool.shutdown();

    // What the invocations' EMF lines add up to: the run as MTurk saw it.
    let log = logs_in(&logs);
    let docs = handler_emf(&log);
    assert_eq!(
        docs.len() as u64,
        report.invocations,
        "one line per invocation"
    );
    assert_eq!(sum(&docs, "WorkersExcluded"), 5.0, "the distinct workers");
    assert_eq!(sum(&docs, "SubmissionsSeen"), 8.0);
    assert_eq!(sum(&docs, "Duplicates"), 0.0);
    assert_eq!(sum(&docs, "MturkCalls"), p.double.total_calls() as f64);
    assert_eq!(sum(&docs, "MturkThrottled"), 0.0);
    let waits = exposures(&docs);
    assert_eq!(waits.len(), 5, "one exposure per worker excluded");
    assert!(waits.iter().all(|w| (0.0..60.0).contains(w)), "{waits:?}");
    for w in submitted.values() {
        assert!(!log.contains(w.as_str()), "{w} in the log:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&logs);
}

/// One cold start, one notification, one worker excluded: the shortest
/// path through the binary. Prints the init duration (spawn to the first
/// `GET …/next`, what Lambda reports as "Init Duration"), which
/// scripts/check-dist.sh reports for the arm64 bootstrap under qemu.
#[tokio::test]
async fn a_cold_start_excludes_a_worker() {
    let p = Pipeline::start().await;
    let api = RuntimeApi::start().await.unwrap();
    let process = FunctionProcess::spawn(binary(), &api, &handler_env(&p)).unwrap();
    let hit = p.double.create_hit(&p.hit_type);
    let a = p.double.add_assignment(
        &hit,
        "A1COLDSTART",
        testkit::mturk_double::AssignmentStatus::Submitted,
    );
    let body = document("doc-cold-start", &[submitted(&p.hit_type, &hit, &a)]);

    let answer = api
        .invoke(
            json!({"Records": [sqs_record(&p, "m-cold", &body)]}),
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    assert!(
        matches!(&answer, Invocation::Response(v) if v["batchItemFailures"].as_array().is_some_and(Vec::is_empty)),
        "{answer:?}\nlog:\n{}",
        process.log_text()
    );
    assert!(p.granted("A1COLDSTART"));
    let init = api
        .first_poll()
        .expect("the process polled")
        .duration_since(process.spawned_at());
    eprintln!(
        "init duration: {} ms ({}{})",
        init.as_millis(),
        std::env::var(testkit::runtime_api::RUNNER_VAR)
            .map(|r| format!("{r} "))
            .unwrap_or_default(),
        binary().display()
    );
}

#[tokio::test]
async fn the_runtime_api_carries_responses_and_handler_errors() {
    let p = Pipeline::start().await;
    let api = RuntimeApi::start().await.unwrap();
    let process = FunctionProcess::spawn(binary(), &api, &handler_env(&p)).unwrap();
    let hit = p.double.create_hit(&p.hit_type);
    let a = p.double.add_assignment(
        &hit,
        "A1DIRECT",
        testkit::mturk_double::AssignmentStatus::Submitted,
    );
    let record = |id: Option<&str>, body: String| {
        json!({
            "messageId": id,
            "receiptHandle": "rh",
            "body": body,
            "attributes": {"SenderId": mturk_exclusion::handler::MTURK_SENDER_ID, "ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": p.queues.arn,
            "awsRegion": "us-east-1",
        })
    };
    let good = document("doc-direct", &[submitted(&p.hit_type, &hit, &a)]);

    let answer = api
        .invoke(
            json!({"Records": [record(Some("m-good"), good.clone()), record(Some("m-bad"), "{not json".into())]}),
            Duration::from_secs(20),
        )
        .await
        .unwrap();

    // A partial batch response naming only the poison record.
    assert_eq!(
        answer,
        Invocation::Response(json!({"batchItemFailures": [{"itemIdentifier": "m-bad"}]})),
        "log:\n{}",
        process.log_text()
    );
    assert!(p.granted("A1DIRECT"));
    assert!(api.first_poll().is_some());

    // A record without a message id fails the whole batch: the /error path.
    let answer = api
        .invoke(
            json!({"Records": [record(None, good)]}),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    match answer {
        Invocation::Error {
            error_type,
            message,
        } => {
            assert_eq!(error_type, "MissingMessageId");
            assert!(message.contains("no message id"), "{message}");
        }
        other => panic!("expected a handler error, got {other:?}"),
    }
    // The instance survives a handler error, as in Lambda.
    assert!(process.exit_status().is_none());
    assert!(process.cpu_time().is_some());
    assert!(process.peak_rss_kib().is_some_and(|kib| kib > 1000));

    // A killed process loses the invocation it had, promptly.
    process.kill();
    let started = Instant::now();
    let lost = api
        .invoke(json!({"Records": []}), Duration::from_secs(20))
        .await;
    assert!(
        matches!(lost, Err(InvokeError::InstanceGone { .. })),
        "{lost:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Readings taken while it lived are kept.
    assert!(process.peak_rss_kib().is_some());
}

/// Starts the binary with `env` and expects it to fail start-up naming `variable`.
async fn assert_start_up_fails_naming(env: Vec<(String, String)>, variable: &str) {
    let api = RuntimeApi::start().await.unwrap();
    let process = FunctionProcess::spawn(binary(), &api, &env).unwrap();
    let outcome = api
        .invoke(json!({"Records": []}), Duration::from_secs(20))
        .await;
    let exit = process
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the process should exit on a bad configuration");
    assert!(!exit.contains("exit status: 0"), "{exit}");
    let log = process.log_text();
    // Reported through the Runtime API, so Lambda shows Runtime.InitError
    // with our reason, not an anonymous Runtime.ExitError...
    match outcome {
        Err(InvokeError::InitFailed(e)) => {
            assert_eq!(e.error_type, "ConfigError", "{e}");
            assert!(e.message.contains(variable), "{e}");
        }
        other => panic!("expected a reported start-up failure, got {other:?}\nlog:\n{log}"),
    }
    assert_eq!(api.init_errors().len(), 1, "{:?}", api.init_errors());
    // ...and in the function's own log.
    assert!(
        log.contains(variable),
        "the log does not name {variable}:\n{log}"
    );
}

#[tokio::test]
async fn a_bad_configuration_fails_start_up_naming_the_variable() {
    let p = Pipeline::start().await;
    let env = handler_env(&p);

    let without_table: Vec<_> = env
        .iter()
        .filter(|(k, _)| k != "TABLE_NAME")
        .cloned()
        .collect();
    assert_start_up_fails_naming(without_table, "TABLE_NAME").await;

    let mut bad_rate = env.clone();
    bad_rate.retain(|(k, _)| k != "MTURK_MAX_RPS");
    bad_rate.push(("MTURK_MAX_RPS".into(), "fast".into()));
    assert_start_up_fails_naming(bad_rate, "MTURK_MAX_RPS").await;

    let mut bad_environment = env;
    bad_environment.retain(|(k, _)| k != "MTURK_ENVIRONMENT");
    bad_environment.push(("MTURK_ENVIRONMENT".into(), "prod".into()));
    assert_start_up_fails_naming(bad_environment, "MTURK_ENVIRONMENT").await;
}

#[tokio::test]
async fn a_process_killed_mid_batch_loses_nothing() {
    let p = Pipeline::with(Options {
        visibility_secs: 2,
        max_receive_count: 5,
        ..Options::default()
    })
    .await;
    let submitted = submit(
        &p,
        &[
            ("A1KILLA", 2),
            ("A2KILLB", 1),
            ("A3KILLC", 3),
            ("A4KILLD", 1),
            ("A5KILLE", 1),
            ("A6KILLF", 2),
            ("A7KILLG", 1),
            ("A8KILLH", 1),
        ],
    )
    .await;
    assert_eq!(submitted.len(), 12);
    // Slow MTurk answers keep a batch in flight long enough to kill it.
    p.double.set_latency(Duration::from_millis(150));
    let pool = pool(&p, 2);
    let source = p.event_source();
    let stack = p.stack.clone();
    let invoker = pool.invoker();
    let drain =
        tokio::spawn(async move { source.drain(&stack, invoker, Duration::from_secs(40)).await });

    // Kill once a grant has gone out (the double counts a call as it takes
    // effect, before its latency): some participations are recorded, some
    // granted, some neither.
    let deadline = Instant::now() + Duration::from_secs(15);
    let killed = loop {
        if p.double.call_count("AssociateQualificationWithWorker") >= 1 {
            let killed = pool.kill_busy();
            if !killed.is_empty() {
                break killed;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no batch was in flight after a grant"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let grants_at_kill = p.double.call_count("AssociateQualificationWithWorker");

    let (totals, drained) = drain.await.unwrap();

    let report = pool.report();
    eprintln!("killed {killed:?} after {grants_at_kill} grant(s); {totals:?}; {report:?}");
    assert!(drained, "{totals:?}");
    assert!(totals.failed_invocations >= 1, "{totals:?}");
    assert!(report.lost_invocations >= 1, "{report:?}");
    // A new process took over after the kill.
    assert!(report.cold_starts >= 2, "{report:?}");
    assert_everyone_excluded_exactly(&p, &submitted).await;
    pool.shutdown();
}

/// A record as Lambda hands it over from SQS.
fn sqs_record(p: &Pipeline, id: &str, body: &str) -> serde_json::Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("rh-{id}"),
        "body": body,
        "attributes": {"SenderId": mturk_exclusion::handler::MTURK_SENDER_ID, "ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": p.queues.arn,
        "awsRegion": "us-east-1",
    })
}

/// The EMF documents in a log, each checked against CloudWatch's rules and
/// for what template.yaml's alarms and dashboard read.
fn handler_emf(log: &str) -> Vec<serde_json::Value> {
    const METRICS: [(&str, &str); 9] = [
        ("SubmissionsSeen", "Count"),
        ("WorkersExcluded", "Count"),
        ("Duplicates", "Count"),
        ("KeptReleased", "Count"),
        ("ForeignDocuments", "Count"),
        ("MturkCalls", "Count"),
        ("MturkThrottled", "Count"),
        ("MturkRate", "Count/Second"),
        ("ExposureWindow", "Seconds"),
    ];
    testkit::emf::documents(log)
        .into_iter()
        .map(|(line, doc)| {
            testkit::emf::assert_valid(&line);
            let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
            assert_eq!(directives.len(), 1, "{line}");
            assert_eq!(directives[0]["Namespace"], "MturkExclusion");
            assert_eq!(directives[0]["Dimensions"], json!([["Pool"]]));
            assert_eq!(doc["Pool"], "emf-test-pool");
            for m in directives[0]["Metrics"].as_array().unwrap() {
                let name = m["Name"].as_str().unwrap();
                let unit = METRICS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .unwrap_or_else(|| panic!("{name} is not a metric the template reads"))
                    .1;
                assert_eq!(m["Unit"], unit, "{name}");
            }
            doc
        })
        .collect()
}

fn sum(docs: &[serde_json::Value], metric: &str) -> f64 {
    docs.iter().filter_map(|d| d[metric].as_f64()).sum()
}

fn exposures(docs: &[serde_json::Value]) -> Vec<f64> {
    docs.iter()
        .filter_map(|d| d["ExposureWindow"].as_array())
        .flatten()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn one_valid_emf_line_per_invocation_and_no_worker_id_in_the_log() {
    let p = Pipeline::start().await;
    let api = RuntimeApi::start().await.unwrap();
    let mut env = handler_env(&p);
    // Records one after another, so which grant MTurk refuses is known.
    env.push(("RECORD_CONCURRENCY".into(), "1".into()));
    // Throttled calls retry for 2 s of a 20 s invocation, not 8.
    env.push(("DEADLINE_MARGIN_MS".into(), "18000".into()));
    let process = FunctionProcess::spawn(binary(), &api, &env).unwrap();
    let (hit1, hit2) = (
        p.double.create_hit(&p.hit_type),
        p.double.create_hit(&p.hit_type),
    );
    let status = testkit::mturk_double::AssignmentStatus::Submitted;
    let (one, two, foreign) = ("A1EMFWORKERONE", "A2EMFWORKERTWO", "A3EMFFOREIGNER");
    let one_a = p.double.add_assignment(&hit1, one, status);
    let two_a = p.double.add_assignment(&hit1, two, status);
    let one_b = p.double.add_assignment(&hit2, one, status);
    let foreign_a = p.double.add_assignment(&hit1, foreign, status);
    // MTurk refuses the grant, echoing the worker's id in its message.
    p.double.treat_as_foreign_worker(foreign);
    let both = document(
        "doc-emf-both",
        &[
            submitted_event(&p, &hit1, &one_a),
            submitted_event(&p, &hit1, &two_a),
        ],
    );
    let event = json!({"Records": [
        sqs_record(&p, "m-both", &both),
        sqs_record(&p, "m-second-study", &document("doc-emf-second", &[submitted_event(&p, &hit2, &one_b)])),
        // The same document again: two duplicates.
        sqs_record(&p, "m-again", &both),
        sqs_record(&p, "m-foreign", &document("doc-emf-foreign", &[submitted_event(&p, &hit1, &foreign_a)])),
        sqs_record(&p, "m-poison", "{not json"),
    ]});
    p.double.clear_calls();

    let answer = api.invoke(event, Duration::from_secs(60)).await.unwrap();

    assert_eq!(
        answer,
        Invocation::Response(json!({"batchItemFailures": [
            {"itemIdentifier": "m-foreign"}, {"itemIdentifier": "m-poison"}
        ]})),
        "log:\n{}",
        process.log_text()
    );
    let calls = p.double.total_calls();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = process.log_text();
    let docs = handler_emf(&log);
    assert_eq!(docs.len(), 1, "one line per invocation:\n{log}");
    let d = &docs[0];
    // Two workers granted; one already excluded; two duplicates; the
    // refused grant settled nothing.
    assert_eq!(d["WorkersExcluded"], 2, "{d}");
    assert_eq!(d["SubmissionsSeen"], 5, "{d}");
    assert_eq!(d["Duplicates"], 2, "{d}");
    assert_eq!(d["KeptReleased"], 0, "{d}");
    assert_eq!(d["ForeignDocuments"], 0, "{d}");
    // 4 GetAssignment, 2 grants and the refused one: everything MTurk saw.
    assert_eq!(d["MturkCalls"].as_u64(), Some(calls as u64), "{d}");
    assert_eq!(calls, 7);
    assert_eq!(d["MturkThrottled"], 0, "{d}");
    assert_eq!(d["MturkRate"].as_f64(), Some(100.0), "{d}");
    // One exposure per worker granted: from MTurk's SubmitTime (set when
    // the assignment was added, just before) to the grant.
    let waits = exposures(&docs);
    assert_eq!(waits.len(), 2, "{d}");
    assert!(waits.iter().all(|w| (0.0..30.0).contains(w)), "{waits:?}");

    // A batch MTurk throttles throughout: failed as a whole, and its line
    // says so.
    let (hit3, three) = (p.double.create_hit(&p.hit_type), "A4EMFTHROTTLED");
    let three_a = p.double.add_assignment(&hit3, three, status);
    p.double.fail_next(
        Some("GetAssignment"),
        10_000,
        testkit::mturk_double::Fault::Throttle,
    );
    p.double.clear_calls();
    let throttled = document("doc-emf-throttled", &[submitted_event(&p, &hit3, &three_a)]);
    let answer = api
        .invoke(
            json!({"Records": [sqs_record(&p, "m-throttled", &throttled)]}),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(
        matches!(&answer, Invocation::Error { error_type, .. } if error_type == "AllThrottled"),
        "{answer:?}"
    );
    p.double.clear_faults();
    let calls = p.double.total_calls();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = process.log_text();
    let docs = handler_emf(&log);
    assert_eq!(docs.len(), 2, "one line per invocation:\n{log}");
    let d = &docs[1];
    assert!(d["MturkThrottled"].as_u64().unwrap() >= 1, "{d}");
    assert_eq!(d["MturkThrottled"].as_u64(), Some(calls as u64), "{d}");
    assert_eq!(d["MturkCalls"].as_u64(), Some(calls as u64), "{d}");
    assert!(
        d["MturkRate"].as_f64().unwrap() < 100.0,
        "the rate came down: {d}"
    );
    assert_eq!(
        (d["WorkersExcluded"].as_u64(), d["SubmissionsSeen"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(d.get("ExposureWindow").is_none(), "{d}");

    // No worker id anywhere in the log (INFO and above), though MTurk's
    // refusal named one; the refusal itself is there.
    for w in [one, two, foreign, three] {
        assert!(!log.contains(w), "{w} in the log:\n{log}");
    }
    assert!(log.contains("<worker> is not a valid worker ID"), "{log}");
}

fn submitted_event(p: &Pipeline, hit: &str, assignment: &str) -> serde_json::Value {
    submitted(&p.hit_type, hit, assignment)
}
