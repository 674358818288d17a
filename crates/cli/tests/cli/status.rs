//! `status` against DynamoDB Local, moto's SQS and the MTurk double.

use crate::CliExt;
use mturk_exclusion::ids::{AssignmentId, HitId, HitTypeId, WorkerId};
use mturk_exclusion::ledger::{Learned, NewParticipation};
use testkit::pipeline::Pipeline;
use time::OffsetDateTime;

#[tokio::test]
async fn status_reports_exclusions_failures_subscriptions_and_queues() {
    let p = Pipeline::start().await;
    // One worker excluded through the real pipeline.
    let hit = p.double.create_hit(&p.hit_type);
    p.double
        .submit_assignment(&hit, "A1STATUSWORKER")
        .await
        .unwrap();
    p.drain().await;
    assert!(p.granted("A1STATUSWORKER"));
    // One participation recorded whose exclusion never happened.
    let now = OffsetDateTime::now_utc();
    let hit_type = HitTypeId::parse(&p.hit_type).unwrap();
    p.ledger
        .record_participation(
            &NewParticipation {
                worker_id: WorkerId::parse("A2STUCKWORKER").unwrap(),
                assignment_id: AssignmentId::parse("3STUCKASSIGNMENT").unwrap(),
                hit_id: HitId::parse(&hit).unwrap(),
                hit_type_id: Some(hit_type.clone()),
                submit_time: None,
                learned: Learned::Backfill,
            },
            now,
        )
        .await
        .unwrap();
    p.ledger
        .record_subscription(&hit_type, &p.queues.url, None, now)
        .await
        .unwrap();
    p.ledger
        .record_heartbeat("heartbeat-doc", now, None, Default::default(), now)
        .await
        .unwrap();
    p.ledger
        .record_verified(&hit_type, &mturk_exclusion::ledger::stamp(now))
        .await
        .unwrap();
    // One message that failed for good.
    p.stack
        .sqs
        .send_message()
        .queue_url(&p.queues.dlq_url)
        .message_body("not a notification")
        .send()
        .await
        .unwrap();

    let run = p.cli(&["status", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let s = run.json();
    assert_eq!(s["table"], p.ledger.table());
    assert_eq!(s["excluded_workers"], 1);
    assert_eq!(s["participations"]["total"], 2);
    assert_eq!(s["participations"]["stuck"], 1);
    // The worker excluded through the pipeline, seconds after submitting.
    let x = &s["exposure_last_24h"];
    assert_eq!(x["participations"], 1, "{x}");
    assert!(
        (0.0..60.0).contains(&x["max_seconds"].as_f64().unwrap()),
        "{x}"
    );
    assert_eq!(s["recent_failures"][0]["assignment_id"], "3STUCKASSIGNMENT");
    assert_eq!(s["recent_failures"][0]["worker_id"], "A2STUCKWORKER");
    assert_eq!(s["recent_failures"].as_array().unwrap().len(), 1);
    assert_eq!(
        s["last_heartbeat_at"],
        mturk_exclusion::ledger::stamp(now).as_str()
    );
    let t = &s["hit_types"][0];
    assert_eq!(t["hit_type_id"], p.hit_type.as_str());
    assert_eq!(t["active"], true);
    assert_eq!(t["queue_url"], p.queues.url.as_str());
    assert!(t["subscribed_at"].is_string() && t["verified_at"].is_string());
    assert!(t["last_recorded_at"].is_string(), "{t}");
    // Recorded like a subscription made before Returned/Abandoned were asked for.
    assert!(t["event_types"].is_null(), "{t}");
    assert_eq!(
        t["lacks_event_types"],
        serde_json::json!(["AssignmentReturned", "AssignmentAbandoned"])
    );
    assert!(
        s["problems"].as_array().unwrap().iter().any(|m| m
            .as_str()
            .unwrap()
            .contains("not subscribed to AssignmentReturned")),
        "{s}"
    );
    assert_eq!(s["queue"]["url"], p.queues.url.as_str());
    assert_eq!(s["queue"]["visible"], 0);
    assert_eq!(s["dead_letter_queue"]["visible"], 1);
    let problems = s["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|m| m.as_str().unwrap().contains("dead-letter queue")),
        "{problems:?}"
    );

    let text = p.cli(&["status"]).await;
    assert_eq!(text.code, 0, "{text:?}");
    for needle in [
        "Excluded workers: 1",
        "Participations: 2 (1 stuck",
        "3STUCKASSIGNMENT",
        "Dead-letter queue: 1 waiting",
        "Needs attention",
        "mturk-exclusion redrive",
    ] {
        assert!(text.stdout.contains(needle), "{needle}:\n{}", text.stdout);
    }
}

#[tokio::test]
async fn status_says_how_to_name_what_it_cannot_see() {
    let p = Pipeline::start().await;
    let run = p
        .cli_with_env(
            &["status"],
            &[
                ("MTURK_EXCLUSION_QUEUE_URL", None),
                ("MTURK_EXCLUSION_DLQ_URL", None),
                ("MTURK_EXCLUSION_QUALIFICATION", None),
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    for needle in [
        "pass --qualification",
        "pass --queue-url",
        "pass --dlq-url",
        "Last heartbeat: never",
        "Nothing needs attention",
    ] {
        assert!(run.stdout.contains(needle), "{needle}:\n{}", run.stdout);
    }
    let json = p
        .cli_with_env(
            &["status", "--json"],
            &[
                ("MTURK_EXCLUSION_QUEUE_URL", None),
                ("MTURK_EXCLUSION_DLQ_URL", None),
                ("MTURK_EXCLUSION_QUALIFICATION", None),
            ],
        )
        .await
        .json();
    assert!(json["queue"].is_null() && json["dead_letter_queue"].is_null());
    assert!(json["excluded_workers"].is_null());
    assert_eq!(json["participations"]["total"], 0);
}

#[tokio::test]
async fn status_finds_the_dead_letter_queue_from_the_redrive_policy() {
    let p = Pipeline::start().await;
    let run = p
        .cli_with_env(&["status", "--json"], &[("MTURK_EXCLUSION_DLQ_URL", None)])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let dlq = &run.json()["dead_letter_queue"];
    let url = dlq["url"].as_str().expect("a dead-letter queue");
    assert!(
        url.ends_with(p.queues.dlq_url.rsplit('/').next().unwrap()),
        "{url}"
    );
    assert_eq!(dlq["found"], true);
}

#[tokio::test]
async fn status_names_a_missing_table_and_what_to_do() {
    let p = Pipeline::start().await;
    let run = p.cli(&["status", "--table", "no-such-ledger-table"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("check --table"), "{}", run.stderr);
}

#[tokio::test]
async fn status_marks_a_missing_queue() {
    let p = Pipeline::start().await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS").unwrap();
    let missing = format!("{endpoint}/123456789012/no-such-exclusion-queue");
    let run = p.cli(&["status", "--json", "--queue-url", &missing]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let s = run.json();
    assert_eq!(s["queue"]["found"], false);
    assert_eq!(s["queue"]["error"], "queue not found");
    assert!(s["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m.as_str().unwrap().contains(&missing)));
}

#[tokio::test]
async fn status_shows_the_exposure_window_of_the_last_day() {
    let p = Pipeline::start().await;
    let hit = HitId::parse(&p.double.create_hit(&p.hit_type)).unwrap();
    let now = OffsetDateTime::now_utc();
    let seconds = time::Duration::seconds;
    // (learned from a notification, submitted, excluded)
    let cases = [
        (true, now - seconds(70), Some(now - seconds(60))), // 10 s
        (true, now - seconds(620), Some(now - seconds(600))), // 20 s
        (true, now - seconds(3_630), Some(now - seconds(3_600))), // 30 s
        (true, now - seconds(80_000), Some(now - seconds(79_960))), // 40 s
        // Excluded two days ago: outside the window.
        (true, now - seconds(172_900), Some(now - seconds(172_800))),
        // Not excluded (stuck).
        (true, now - seconds(50), None),
        // A backfill of an old study: not the pipeline's exposure.
        (false, now - seconds(9_000_000), Some(now - seconds(30))),
    ];
    for (i, (notified, submitted, excluded)) in cases.iter().enumerate() {
        let stored = p
            .ledger
            .record_participation(
                &NewParticipation {
                    worker_id: WorkerId::parse(&format!("A{i}EXPOSUREWORKER")).unwrap(),
                    assignment_id: AssignmentId::parse(&format!("3EXPOSUREASSIGNMENT{i}")).unwrap(),
                    hit_id: hit.clone(),
                    hit_type_id: None,
                    submit_time: Some(*submitted),
                    learned: if *notified {
                        Learned::Notification {
                            event_doc_id: format!("doc-{i}"),
                        }
                    } else {
                        Learned::Backfill
                    },
                },
                *submitted,
            )
            .await
            .unwrap();
        if let Some(at) = excluded {
            p.ledger.mark_excluded(&stored, *at).await.unwrap();
        }
    }

    let run = p.cli(&["status", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let x = &run.json()["exposure_last_24h"];
    assert_eq!(
        *x,
        serde_json::json!({
            "participations": 4,
            "p50_seconds": 20.0,
            "p99_seconds": 40.0,
            "max_seconds": 40.0,
        }),
        "{x}"
    );
    let text = p.cli(&["status"]).await;
    assert!(
        text.stdout.contains(
            "Exposure window, last 24 h (submission to excluded, 4 participation(s) from notifications): p50 20.0 s, p99 40.0 s, max 40.0 s"
        ),
        "{}",
        text.stdout
    );

    let empty = Pipeline::start().await;
    let run = empty.cli(&["status", "--json"]).await;
    assert_eq!(run.json()["exposure_last_24h"]["participations"], 0);
    assert!(run.json()["exposure_last_24h"]["p99_seconds"].is_null());
    let text = empty.cli(&["status"]).await;
    assert!(
        text.stdout.contains(
            "Exposure window, last 24 h: no participation from a notification was excluded"
        ),
        "{}",
        text.stdout
    );
}

/// A participation as commit a6f96a6 wrote it: its HIT type under
/// `hit_type_id` (the ByHitType index's key), which a deployed table keeps.
async fn put_old_participation(p: &Pipeline, assignment: &str, hit_type: &str, at: OffsetDateTime) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let at = mturk_exclusion::ledger::stamp(at);
    let mut put = p.stack.dynamodb.put_item().table_name(p.ledger.table());
    for (k, v) in [
        ("pk", format!("A#{assignment}")),
        ("sk", "P".to_owned()),
        ("worker_id", "A1STATUSOLD".to_owned()),
        ("assignment_id", assignment.to_owned()),
        ("hit_id", "3STATUSOLDHIT".to_owned()),
        ("hit_type_id", hit_type.to_owned()),
        ("learned_by", "backfill".to_owned()),
        ("recorded_at", at.clone()),
        ("excluded_at", at),
    ] {
        put = put.item(k, s(&v));
    }
    put.send().await.unwrap();
}

#[tokio::test]
async fn status_finds_each_hit_types_last_participation_old_or_new() {
    let p = Pipeline::start().await;
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let new_type = HitTypeId::parse(&p.hit_type).unwrap();
    let old_type = HitTypeId::parse("3STATUSOLDTYPE").unwrap();
    let idle_type = HitTypeId::parse("3STATUSIDLETYPE").unwrap();
    for t in [&new_type, &old_type, &idle_type] {
        p.ledger
            .record_subscription(t, &p.queues.url, None, now)
            .await
            .unwrap();
    }
    // The subscribed type: an old participation, then a newer one recorded
    // by this version. The other type: old participations only.
    put_old_participation(&p, "3STATUSOLDONE", new_type.as_str(), now - day * 3).await;
    p.ledger
        .record_participation(
            &NewParticipation {
                worker_id: WorkerId::parse("A2STATUSNEW").unwrap(),
                assignment_id: AssignmentId::parse("3STATUSNEW").unwrap(),
                hit_id: HitId::parse("3STATUSNEWHIT").unwrap(),
                hit_type_id: Some(new_type.clone()),
                submit_time: None,
                learned: Learned::Backfill,
            },
            now - day,
        )
        .await
        .unwrap();
    put_old_participation(&p, "3STATUSOLDTWO", old_type.as_str(), now - day * 2).await;
    put_old_participation(&p, "3STATUSOLDTHREE", old_type.as_str(), now - day * 5).await;

    let run = p.cli(&["status", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let s = run.json();
    let last = |t: &HitTypeId| {
        s["hit_types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["hit_type_id"] == t.as_str())
            .unwrap_or_else(|| panic!("{t} not in {s}"))["last_recorded_at"]
            .clone()
    };
    let stamp = |t| serde_json::Value::from(mturk_exclusion::ledger::stamp(t));
    assert_eq!(last(&new_type), stamp(now - day));
    assert_eq!(last(&old_type), stamp(now - day * 2));
    assert!(last(&idle_type).is_null(), "{s}");
    assert_eq!(s["participations"]["total"], 4);
}
