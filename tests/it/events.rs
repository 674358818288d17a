//! The sample events in events/ (also used with `cargo lambda invoke
//! --data-file`) do what their names say when they reach the handler.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use mturk_exclusion::handler::{BatchReport, Failure};
use testkit::mturk_double::AssignmentStatus;
use testkit::pipeline::Pipeline;
use tokio::time::Instant;

const HIT_TYPE: &str = "3XJOUITW8URHJMX7F00H20LGRIAKAJ";
const HITS: [&str; 2] = [
    "3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN",
    "3M4KL7H8SP7E9Q0WZC1FKJ2R6XB5DA",
];
/// (assignment, HIT index, worker) as the samples name them.
const ASSIGNMENTS: [(&str, usize, &str); 5] = [
    ("3X4JMASXCM8FCX94IM0KEMYGMD5B0E", 0, "A2SAMPLEWORKER1"),
    ("3KIBXJ1WD5T18H5HQKFO3QDO8PWKOH", 0, "A2SAMPLEWORKER2"),
    ("3BEFOD78W6SSUG0LP6XZKX1U4DCM4F", 0, "A2SAMPLEWORKER3"),
    ("39JEC7537U0EF32QZJK4AZUJ8Y5VCZ", 1, "A2SAMPLEWORKER4"),
    ("3DY4FPOOA1NHB5TKF6Y0V3TRQN8RVB", 1, "A2SAMPLEWORKER1"),
];

async fn run_sample(name: &str) -> (Pipeline, BatchReport) {
    let p = Pipeline::start().await;
    for hit in HITS {
        p.double.create_hit_with_id(hit, HIT_TYPE);
    }
    for (assignment, hit, worker) in ASSIGNMENTS {
        p.double
            .add_assignment_with_id(assignment, HITS[hit], worker, AssignmentStatus::Submitted);
    }
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let event: SqsEvent = serde_json::from_str(&text).unwrap();
    let report = p
        .handler
        .process(event.records, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    (p, report)
}

fn failures(report: &BatchReport) -> Vec<&Failure> {
    report
        .records
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect()
}

fn total(report: &BatchReport) -> mturk_exclusion::handler::Summary {
    let mut sum = mturk_exclusion::handler::Summary::default();
    for (_, r) in &report.records {
        if let Ok(s) = r {
            sum.merge(s);
        }
    }
    sum
}

#[tokio::test]
async fn one_submitted_assignment() {
    let (p, report) = run_sample("assignment-submitted.json").await;
    assert!(failures(&report).is_empty(), "{report:?}");
    assert_eq!(total(&report).settled.excluded, 1);
    assert!(p.granted("A2SAMPLEWORKER1"));
}

#[tokio::test]
async fn several_events_in_one_record() {
    let (p, report) = run_sample("several-events.json").await;
    assert_eq!(report.records.len(), 1);
    assert!(failures(&report).is_empty(), "{report:?}");
    assert_eq!(total(&report).settled.excluded, 3);
    for w in ["A2SAMPLEWORKER2", "A2SAMPLEWORKER3", "A2SAMPLEWORKER4"] {
        assert!(p.granted(w), "{w}");
    }
}

#[tokio::test]
async fn a_batch_with_a_redelivered_document() {
    let (p, report) = run_sample("batch.json").await;
    assert_eq!(report.records.len(), 4);
    assert!(failures(&report).is_empty(), "{report:?}");
    let sum = total(&report);
    // Records 1 and 4 carry the same document; A2SAMPLEWORKER1 also did record 3.
    assert_eq!(
        sum.settled.excluded + sum.settled.already_excluded + sum.settled.duplicates,
        4,
        "{sum:?}"
    );
    assert_eq!(
        p.double.call_count("AssociateQualificationWithWorker"),
        2,
        "one grant per worker"
    );
}

#[tokio::test]
async fn a_ping() {
    let (p, report) = run_sample("ping.json").await;
    assert!(failures(&report).is_empty());
    assert_eq!(total(&report).heartbeats, 1);
    assert_eq!(
        p.double.total_calls(),
        1,
        "only the fixture's own subscription"
    );
}

#[tokio::test]
async fn a_hit_reviewable_event() {
    let (p, report) = run_sample("hit-reviewable.json").await;
    assert!(failures(&report).is_empty());
    assert_eq!(total(&report).ignored, 1);
    assert_eq!(p.double.total_calls(), 1);
}

#[tokio::test]
async fn malformed_bodies_beside_a_good_one() {
    let (p, report) = run_sample("malformed.json").await;
    let failed: Vec<_> = report
        .response()
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(
        failed,
        [
            "6b1f0c2e-0000-4000-8000-000000000002",
            "6b1f0c2e-0000-4000-8000-000000000003"
        ]
    );
    assert!(failures(&report)
        .iter()
        .all(|f| matches!(f, Failure::Malformed(_))));
    assert!(p.granted("A2SAMPLEWORKER1"));
}
