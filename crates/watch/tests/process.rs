//! The real `exclusion-watch` binary, run as Lambda runs a custom runtime
//! (testkit::runtime_api), against the MTurk double and DynamoDB Local.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use testkit::mturk_double::HitOptions;
use testkit::pipeline::Pipeline;
use testkit::runtime_api::{FunctionProcess, Invocation, RuntimeApi};

const BINARY: &str = env!("CARGO_BIN_EXE_exclusion-watch");
/// Names another build of the watch to run instead of [`BINARY`]: the
/// `bootstrap` unpacked from a release's exclusion-watch.zip
/// (scripts/check-dist.sh runs it under qemu-aarch64, through testkit's
/// BOOTSTRAP_RUNNER).
const BINARY_VAR: &str = "EXCLUSION_WATCH_BOOTSTRAP";

fn binary() -> &'static Path {
    static CHOSEN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| testkit::runtime_api::binary_under_test(BINARY_VAR, BINARY))
}

fn watch_env(p: &Pipeline) -> Vec<(String, String)> {
    let mut env = p.function_env();
    env.extend(
        [
            ("COVER_UNGUARDED_HITS", "true"),
            ("GUARD_UNGUARDED_HITS", "false"),
            ("METRICS_POOL", "watch-test-pool"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

#[tokio::test]
async fn a_scheduled_event_and_a_hand_invocation_run_the_same_and_write_one_emf_line_each() {
    let p = Pipeline::start().await;
    let api = RuntimeApi::start().await.unwrap();
    let process = FunctionProcess::spawn(binary(), &api, &watch_env(&p)).unwrap();
    let (hit, hit_type) = p.double.post_hit(HitOptions {
        title: "Posted by another tool".into(),
        ..HitOptions::default()
    });
    p.double
        .submit_assignment(&hit, "A1WATCHBINARY")
        .await
        .unwrap();

    let scheduled = json!({
        "version": "0", "id": "89d1a02d", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-12-05T10:00:00Z",
        "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/watch"],
        "detail": {}
    });
    let first = api
        .invoke(scheduled, Duration::from_secs(60))
        .await
        .unwrap();
    let Invocation::Response(report) = first else {
        panic!("{first:?}\n{}", process.log_text())
    };
    assert_eq!(
        report["hit_types_subscribed"],
        json!([hit_type]),
        "{report}"
    );
    assert_eq!(report["counts"]["live_unguarded"], 1);
    assert!(p.granted("A1WATCHBINARY"));

    let by_hand = api
        .invoke(json!({}), Duration::from_secs(60))
        .await
        .unwrap();
    let Invocation::Response(report) = by_hand else {
        panic!("{by_hand:?}")
    };
    assert_eq!(report["hit_types_subscribed"], json!([]), "subscribed once");
    assert_eq!(report["counts"]["live_unguarded"], 1);

    let log = process.log_text();
    let emf: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|d| d.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 2, "one EMF line per run:\n{log}");
    assert_eq!(emf[0]["Pool"], "watch-test-pool");
    assert_eq!(emf[0]["UnguardedHits"], 1);
    assert_eq!(emf[0]["HitTypesSubscribed"], 1);
    assert_eq!(emf[0]["SubmissionsBackfilled"], 1);
    assert_eq!(emf[1]["HitTypesSubscribed"], 0);
    assert!(!log.contains("A1WATCHBINARY"), "a worker id in the log");
}

#[tokio::test]
async fn without_a_queue_it_does_not_start() {
    let p = Pipeline::start().await;
    let env: Vec<_> = watch_env(&p)
        .into_iter()
        .filter(|(k, _)| k != "QUEUE_URL")
        .collect();
    let api = RuntimeApi::start().await.unwrap();
    let process = FunctionProcess::spawn(binary(), &api, &env).unwrap();
    let _ = api.invoke(json!({}), Duration::from_secs(20)).await;
    let exit = process
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the process exits on a bad configuration");
    assert!(!exit.contains("exit status: 0"), "{exit}");
    assert!(
        process.log_text().contains("QUEUE_URL"),
        "{}",
        process.log_text()
    );
}
