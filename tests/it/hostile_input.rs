//! Hostile bodies fail only their own record, each with a reason that says
//! what was wrong, and cost no MTurk call.

use std::time::Duration;

use mturk_exclusion::handler::Failure;
use testkit::mturk_double::AssignmentStatus;
use testkit::pipeline::{document, record, submitted, Pipeline};
use tokio::time::Instant;

#[tokio::test]
async fn hostile_bodies_fail_alone_with_a_clear_reason() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let a = p
        .double
        .add_assignment(&hit, "A1HONEST", AssignmentStatus::Submitted);
    let good = document("doc-good", &[submitted(&p.hit_type, &hit, &a)]);

    let mut padded: serde_json::Value = serde_json::from_str(&good).unwrap();
    padded["Padding"] = "x".repeat(255 * 1024).into();
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let hostile: Vec<(&str, String, &str)> = vec![
        ("huge", "x".repeat(300 * 1024), "over SQS's 256 KiB limit"),
        ("nested", nested, "not a notification document"),
        (
            "wrong-types",
            r#"{"EventDocVersion":2014,"Events":"many"}"#.into(),
            "EventDocVersion is not valid: it is not a string",
        ),
        (
            "unicode-id",
            document("d", &[submitted(&p.hit_type, &hit, "ＡＳＳＩＧＮＭＥＮＴ")]),
            "AssignmentId",
        ),
        (
            "control-chars",
            document("d", &[submitted(&p.hit_type, &hit, "3X4J\u{7}\u{1b}[2J")]),
            "AssignmentId",
        ),
        (
            "control-doc-id",
            document("doc\u{0}id", &[submitted(&p.hit_type, &hit, &a)]),
            "EventDocId",
        ),
        ("empty", String::new(), "not a notification document"),
        ("null", "null".into(), "not a notification document"),
        (
            "bom",
            format!("\u{feff}{good}"),
            "not a notification document",
        ),
    ];
    let mut records: Vec<_> = hostile
        .iter()
        .map(|(id, body, _)| record(id, body))
        .collect();
    records.push(record("good", &good));
    // A 255 KiB body that is still a valid document is accepted.
    records.push(record("padded", &padded.to_string()));

    let report = p
        .handler
        .process(records, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();

    for ((id, result), (name, _, expected)) in report.records.iter().zip(&hostile) {
        assert_eq!(id, name);
        match result {
            Err(Failure::Malformed(reason)) => {
                assert!(
                    reason.contains(expected),
                    "{name}: {reason:?} lacks {expected:?}"
                );
                assert!(
                    reason.len() < 500,
                    "{name}: reason too long: {} bytes",
                    reason.len()
                );
                assert!(
                    !reason.chars().any(|c| c.is_control()),
                    "{name}: raw control characters in {reason:?}"
                );
            }
            other => panic!("{name}: expected a malformed failure, got {other:?}"),
        }
    }
    let tail = &report.records[hostile.len()..];
    assert!(tail.iter().all(|(_, r)| r.is_ok()), "{tail:?}");
    assert!(p.granted("A1HONEST"));
    // Only the good assignment was looked up (once; the padded copy is a duplicate).
    assert_eq!(p.double.call_count("GetAssignment"), 1);
}
