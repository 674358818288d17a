//! `redrive` against moto's SQS, with the real handler and the MTurk double
//! for the round trip a lab makes: failures pile up in the dead-letter queue,
//! the cause is fixed, the messages go back and their workers are excluded.

use std::collections::HashSet;

use crate::CliExt;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use testkit::mturk_double::Fault;
use testkit::pipeline::{document, submitted, Options, Pipeline};

/// (visible, in flight), exact on moto.
async fn counts(p: &Pipeline, url: &str) -> (u64, u64) {
    let attrs = p
        .stack
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let get = |n: &QueueAttributeName| attrs.get(n).unwrap().parse::<u64>().unwrap();
    (
        get(&QueueAttributeName::ApproximateNumberOfMessages),
        get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Puts `bodies` straight into the dead-letter queue; returns their message ids.
async fn into_dlq(p: &Pipeline, bodies: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body(b)
                    .build()
                    .unwrap()
            })
            .collect();
        let out = p
            .stack
            .sqs
            .send_message_batch()
            .queue_url(&p.queues.dlq_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(out.failed.is_empty());
        ids.extend(out.successful.into_iter().map(|s| s.message_id));
    }
    ids
}

fn doc(n: usize) -> String {
    document(
        &format!("doc-{n}"),
        &[submitted(
            "3HITTYPE0000000000000000000000",
            "3HIT00000000000000000000000000",
            &format!("3ASSIGNMENT{n:020}"),
        )],
    )
}

#[tokio::test]
async fn dry_run_lists_the_messages_and_changes_nothing() {
    let p = Pipeline::start().await;
    let long_garbage = format!("not json \u{1b}[31m {}", "x".repeat(300));
    let bodies = [doc(1), doc(2), long_garbage];
    let ids = into_dlq(&p, &bodies).await;

    let run = p.cli(&["redrive", "--dry-run", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["count"], 3);
    let listed = report["messages"].as_array().unwrap();
    let listed_ids: HashSet<&str> = listed
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed_ids, ids.iter().map(String::as_str).collect());
    for m in listed {
        assert_eq!(m["receive_count"], 1, "{m}");
        let preview = m["body_preview"].as_str().unwrap();
        assert!(preview.ends_with('\u{2026}'), "{preview}");
        if m["message_id"] == ids[2].as_str() {
            assert!(preview.starts_with("not json \\u{1b}[31m x"), "{preview}");
            assert_eq!(m["notification"], false);
            assert!(m["problem"]
                .as_str()
                .unwrap()
                .contains("not a notification document"));
            assert!(!preview.contains('\u{1b}'), "control characters escaped");
        } else {
            let i = ids
                .iter()
                .position(|id| m["message_id"] == id.as_str())
                .unwrap();
            let first_100: String = bodies[i].chars().take(100).collect();
            assert_eq!(preview, format!("{first_100}\u{2026}"));
            assert_eq!(m["notification"], true, "{m}");
            assert!(m.get("problem").is_none());
        }
    }
    // Still there, visible at once; nothing went to the queue.
    assert_eq!(counts(&p, &p.queues.dlq_url).await, (3, 0));
    assert_eq!(counts(&p, &p.queues.url).await, (0, 0));

    let text = p.cli(&["redrive", "--dry-run"]).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("nothing moved"), "{}", text.stdout);
    assert!(text.stdout.contains("receive count"), "{}", text.stdout);
    assert_eq!(counts(&p, &p.queues.dlq_url).await, (3, 0));
}

#[tokio::test]
async fn redriven_failures_exclude_their_workers_once_the_cause_is_fixed() {
    let p = Pipeline::with(Options {
        visibility_secs: 1,
        max_receive_count: 1,
        ..Options::default()
    })
    .await;
    // MTurk is down while the worker submits: the record fails until it is
    // dead-lettered.
    p.double
        .fail_next(Some("GetAssignment"), 1000, Fault::ServiceFault);
    let hit = p.double.create_hit(&p.hit_type);
    p.double
        .submit_assignment(&hit, "A1REDRIVEWORKER")
        .await
        .unwrap();
    p.drain().await;
    assert!(!p.granted("A1REDRIVEWORKER"));
    assert_eq!(counts(&p, &p.queues.dlq_url).await, (1, 0));

    p.double.clear_faults();
    let run = p.cli(&["redrive", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["moved"], 1);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["not_deleted"], 0);
    assert_eq!(counts(&p, &p.queues.dlq_url).await, (0, 0));

    p.drain().await;
    assert!(p.granted("A1REDRIVEWORKER"));
    p.assert_every_grant_silent();
}

#[tokio::test]
async fn more_than_100_messages_need_yes_and_max_limits_the_move() {
    let p = Pipeline::start().await;
    let bodies: Vec<String> = (0..101).map(doc).collect();
    into_dlq(&p, &bodies).await;

    let refused = p.cli(&["redrive"]).await;
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert_eq!(counts(&p, &p.queues.dlq_url).await, (101, 0));
    assert_eq!(counts(&p, &p.queues.url).await, (0, 0));

    let some = p.cli(&["redrive", "--max", "20", "--json"]).await;
    assert_eq!(some.code, 0, "{some:?}");
    assert_eq!(some.json()["moved"], 20);
    assert_eq!(counts(&p, &p.queues.dlq_url).await, (81, 0));
    assert_eq!(counts(&p, &p.queues.url).await, (20, 0));

    let rest = p.cli(&["redrive", "--yes", "--json"]).await;
    assert_eq!(rest.code, 0, "{rest:?}");
    assert_eq!(rest.json()["moved"], 81);
    assert_eq!(counts(&p, &p.queues.dlq_url).await, (0, 0));
    assert_eq!(counts(&p, &p.queues.url).await, (101, 0));
}

#[tokio::test]
async fn messages_the_queue_refuses_stay_in_the_dead_letter_queue() {
    let p = Pipeline::start().await;
    into_dlq(&p, &[doc(1), doc(2)]).await;
    // MTurk cannot send to a FIFO queue, and neither can a redrive without a
    // message group: every send fails.
    let fifo = p
        .stack
        .sqs
        .create_queue()
        .queue_name(format!("{}.fifo", testkit::unique_name("redrive-target")))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let run = p.cli(&["redrive", "--json", "--queue-url", &fifo]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let report = run.json();
    assert_eq!(report["moved"], 0);
    assert_eq!(report["failed"], 2);
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .contains("SendMessageBatch"),
        "{report}"
    );
    // Visible again at once, ready for the next attempt.
    assert_eq!(counts(&p, &p.queues.dlq_url).await, (2, 0));
}

#[tokio::test]
async fn a_missing_queue_is_named_and_nothing_moves() {
    let p = Pipeline::start().await;
    into_dlq(&p, &[doc(1)]).await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS").unwrap();
    let missing = format!("{endpoint}/123456789012/no-such-exclusion-queue");
    let run = p.cli(&["redrive", "--queue-url", &missing]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("queue not found"), "{}", run.stderr);
    assert!(run.stderr.contains("what to do"), "{}", run.stderr);
    assert_eq!(counts(&p, &p.queues.dlq_url).await, (1, 0));

    let missing_dlq = p.cli(&["redrive", "--dlq-url", &missing]).await;
    assert_eq!(missing_dlq.code, 3, "{missing_dlq:?}");
    assert!(
        missing_dlq.stderr.contains("dead-letter queue not found"),
        "{}",
        missing_dlq.stderr
    );
}

#[tokio::test]
async fn without_a_dead_letter_queue_it_says_how_to_name_one() {
    let p = Pipeline::start().await;
    let plain = p
        .stack
        .sqs
        .create_queue()
        .queue_name(testkit::unique_name("no-redrive-policy"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let run = p
        .cli_with_env(
            &["redrive", "--queue-url", &plain],
            &[("MTURK_EXCLUSION_DLQ_URL", None)],
        )
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--dlq-url"), "{}", run.stderr);
}
