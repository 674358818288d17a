//! `subscribe` and `unsubscribe` against the MTurk double, moto's SQS (and
//! CloudFormation, for --stack) and DynamoDB Local, with the real handler
//! consuming the queue while the CLI waits for its heartbeat.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{CliExt, Deployed};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use testkit::pipeline::{CliRun, Options, Pipeline};

/// Runs `cli` while the event source feeds the queue to `function`, as the
/// deployed function would be doing while the lab waits.
pub(crate) async fn while_consuming<F, Fut>(
    p: &Pipeline,
    cli: impl Future<Output = CliRun>,
    function: F,
) -> CliRun
where
    F: Fn(SqsEvent) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<SqsBatchResponse, String>> + Send,
{
    let done = AtomicBool::new(false);
    let source = p.event_source();
    let (run, ()) = tokio::join!(
        async {
            let run = cli.await;
            done.store(true, Ordering::SeqCst);
            run
        },
        async {
            // `drain` returns once the queue is empty; the test event arrives
            // later, so keep draining until the CLI is done.
            while !done.load(Ordering::SeqCst) {
                source
                    .drain(&p.stack, function.clone(), Duration::from_secs(2))
                    .await;
            }
        }
    );
    run
}

#[tokio::test]
async fn subscribe_points_the_hit_type_at_the_queue_and_proves_the_round_trip() {
    let p = Pipeline::start().await;
    let hit_type = p.double.new_hit_type_id();
    let run = while_consuming(
        &p,
        p.cli(&["subscribe", &hit_type, "--json", "--timeout", "20s"]),
        p.function(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["hit_types"][0]["hit_type_id"], hit_type.as_str());
    assert_eq!(report["hit_types"][0]["subscribed"], true);
    assert!(report["diagnosis"].is_null());
    let heartbeat_at = report["heartbeat_at"].as_str().expect("heartbeat_at");

    let setting = p
        .double
        .notification_setting(&hit_type)
        .expect("a notification setting");
    assert_eq!(setting.destination, p.queues.url);
    assert_eq!(setting.transport, "SQS");
    assert!(setting.active);
    // Returned and Abandoned end the accept-time check's claims.
    assert_eq!(
        setting.event_types,
        [
            "AssignmentSubmitted",
            "AssignmentReturned",
            "AssignmentAbandoned"
        ]
    );
    let noted: std::collections::HashMap<String, Option<Vec<String>>> = p
        .ledger
        .subscriptions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.hit_type_id.to_string(), s.event_types))
        .collect();
    assert_eq!(
        noted[hit_type.as_str()].as_deref(),
        Some(
            &[
                "AssignmentSubmitted",
                "AssignmentReturned",
                "AssignmentAbandoned"
            ]
            .map(String::from)[..]
        ),
        "the ledger's record notes the event types"
    );

    let tests = p.double.calls_to("SendTestEventNotification");
    assert_eq!(tests.len(), 1, "one test event per run");
    assert_eq!(tests[0].request["TestEventType"], "Ping");
    assert_eq!(
        tests[0].request["Notification"]["Destination"],
        p.queues.url.as_str()
    );

    let subs = p.ledger.subscriptions().await.unwrap();
    let sub = subs
        .iter()
        .find(|s| s.hit_type_id.as_str() == hit_type)
        .unwrap();
    assert!(sub.active);
    assert_eq!(sub.queue_url, p.queues.url);
    assert_eq!(
        sub.verified_at
            .map(mturk_exclusion::ledger::stamp)
            .as_deref(),
        Some(heartbeat_at)
    );
    assert_eq!(
        p.ledger.last_heartbeat().await.unwrap().as_deref(),
        Some(heartbeat_at)
    );
}

#[tokio::test]
async fn an_old_heartbeat_does_not_pass_for_a_new_round_trip() {
    let p = Pipeline::start().await;
    // A heartbeat from a moment ago, as if an earlier run had just verified.
    p.ledger
        .record_heartbeat(
            "earlier-doc",
            time::OffsetDateTime::now_utc(),
            None,
            Default::default(),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let hit_type = p.double.new_hit_type_id();
    // Nobody consumes the queue: only a new heartbeat could verify.
    let run = p
        .cli(&["subscribe", &hit_type, "--json", "--timeout", "2s"])
        .await;
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(run.json()["verified"], false);
}

#[tokio::test]
async fn a_malformed_hit_type_id_is_named_and_nothing_is_done() {
    let p = Pipeline::start().await;
    p.double.clear_calls();
    let hit_type = p.double.new_hit_type_id();
    let run = p.cli(&["subscribe", &hit_type, "3XQ-BAD_ID"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("\"3XQ-BAD_ID\""), "{}", run.stderr);
    assert!(run.stderr.contains("letters and digits"), "{}", run.stderr);
    assert_eq!(p.double.total_calls(), 0);
    assert!(p.double.notification_setting(&hit_type).is_none());
}

#[tokio::test]
async fn nothing_to_subscribe_is_a_usage_error() {
    let p = Pipeline::start().await;
    let none = p.cli(&["subscribe"]).await;
    assert_eq!(none.code, 2, "{none:?}");
    assert!(
        none.stderr.contains("nothing to subscribe"),
        "{}",
        none.stderr
    );
    // The double's account has no HITs at all.
    let no_live = p.cli(&["subscribe", "--all-active"]).await;
    assert_eq!(no_live.code, 2, "{no_live:?}");
    assert!(no_live.stderr.contains("no live HIT"), "{}", no_live.stderr);
}

#[tokio::test]
async fn all_active_subscribes_each_live_hit_type_once() {
    let p = Pipeline::start().await;
    let (two_hits, one_hit, disposed) = (
        p.double.new_hit_type_id(),
        p.double.new_hit_type_id(),
        p.double.new_hit_type_id(),
    );
    p.double.create_hit(&two_hits);
    p.double.create_hit(&one_hit);
    p.double.create_hit(&two_hits);
    let gone = p.double.create_hit(&disposed);
    p.double.dispose_hit(&gone);

    let run = p
        .cli(&["subscribe", "--all-active", "--no-verify", "--json"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    let subscribed: Vec<&str> = report["hit_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["hit_type_id"].as_str().unwrap())
        .collect();
    assert_eq!(subscribed, vec![two_hits.as_str(), one_hit.as_str()]);
    assert_eq!(report["verified"], false);
    assert_eq!(report["verification_skipped"], true);
    assert!(run.stderr.contains("nothing was proven"), "{}", run.stderr);
    assert_eq!(p.double.call_count("SendTestEventNotification"), 0);
    for t in [&two_hits, &one_hit] {
        assert_eq!(
            p.double.notification_setting(t).unwrap().destination,
            p.queues.url
        );
    }
    assert!(p.double.notification_setting(&disposed).is_none());
}

#[tokio::test]
async fn a_hit_type_mturk_refuses_is_named_and_the_others_are_subscribed() {
    let p = Pipeline::start().await;
    let known = p.double.new_hit_type_id();
    let run = while_consuming(
        &p,
        p.cli(&[
            "subscribe",
            "3NOSUCHHITTYPE",
            &known,
            "--json",
            "--timeout",
            "20s",
        ]),
        p.function(),
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    let report = run.json();
    assert_eq!(report["hit_types"][0]["hit_type_id"], "3NOSUCHHITTYPE");
    assert_eq!(report["hit_types"][0]["subscribed"], false);
    assert!(
        report["hit_types"][0]["error"]
            .as_str()
            .unwrap()
            .contains("HITTypeDoesNotExist"),
        "{report}"
    );
    assert_eq!(report["hit_types"][1]["subscribed"], true);
    assert_eq!(report["verified"], true);
    assert!(run.stderr.contains("3NOSUCHHITTYPE"), "{}", run.stderr);
    let subs = p.ledger.subscriptions().await.unwrap();
    assert!(subs
        .iter()
        .any(|s| s.hit_type_id.as_str() == known && s.verified_at.is_some()));
    assert!(!subs
        .iter()
        .any(|s| s.hit_type_id.as_str() == "3NOSUCHHITTYPE"));
}

#[tokio::test]
async fn lost_deliveries_are_diagnosed_as_the_queue_policy_or_a_wrong_queue() {
    let p = Pipeline::start().await;
    p.double.lose_deliveries_to(&p.queues.url);
    let hit_type = p.double.new_hit_type_id();
    let run = while_consuming(
        &p,
        p.cli(&["subscribe", &hit_type, "--json", "--timeout", "3s"]),
        p.function(),
    )
    .await;
    assert_eq!(run.code, 4, "{run:?}");
    let report = run.json();
    assert_eq!(report["verified"], false);
    assert_eq!(report["hit_types"][0]["subscribed"], true);
    let diagnosis = &report["diagnosis"];
    assert_eq!(diagnosis["cause"], "not_delivered", "{report}");
    let what = diagnosis["what_to_do"].as_str().unwrap();
    assert!(what.contains("mturk-requester.amazonaws.com"), "{what}");
    assert!(what.contains("--queue-url"), "{what}");
    assert!(
        run.stderr.contains("MTurk could not deliver to the queue"),
        "{}",
        run.stderr
    );
    // Subscribed, but not verified.
    let subs = p.ledger.subscriptions().await.unwrap();
    let sub = subs
        .iter()
        .find(|s| s.hit_type_id.as_str() == hit_type)
        .unwrap();
    assert!(sub.verified_at.is_none());
}

#[tokio::test]
async fn a_queue_nobody_consumes_is_diagnosed_with_the_event_source_mapping() {
    let p = Pipeline::start().await;
    let hit_type = p.double.new_hit_type_id();
    let run = p.cli(&["subscribe", &hit_type, "--timeout", "3s"]).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stdout
            .contains("the test event reached the queue but nothing consumed it"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("event source mapping"),
        "{}",
        run.stdout
    );
    assert_eq!(p.stack.queue_depth(&p.queues.url).await.unwrap(), 1);
}

#[tokio::test]
async fn a_failing_handler_is_diagnosed_from_the_dead_letter_queue() {
    let p = Pipeline::with(Options {
        visibility_secs: 1,
        max_receive_count: 1,
        ..Options::default()
    })
    .await;
    // The real handler, writing to a table that does not exist: every record fails.
    let failing = testkit::pipeline::function_of(p.handler_with(|c| {
        c.table_name = "no-such-ledger-table".into();
        c.queue_url = None;
    }));
    let hit_type = p.double.new_hit_type_id();
    let run = while_consuming(
        &p,
        p.cli(&["subscribe", &hit_type, "--json", "--timeout", "8s"]),
        failing,
    )
    .await;
    assert_eq!(run.code, 4, "{run:?}");
    let report = run.json();
    assert_eq!(report["diagnosis"]["cause"], "handler_failing", "{report}");
    assert!(report["diagnosis"]["message"]
        .as_str()
        .unwrap()
        .contains("the handler is failing"));
    assert!(report["diagnosis"]["what_to_do"]
        .as_str()
        .unwrap()
        .contains("logs"));
    assert_eq!(report["diagnosis"]["dead_letter_queue"]["visible"], 1);
}

#[tokio::test]
async fn a_queue_that_does_not_exist_is_named_and_nothing_is_subscribed() {
    let p = Pipeline::start().await;
    let hit_type = p.double.new_hit_type_id();
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS").unwrap();
    let missing = format!("{endpoint}/123456789012/no-such-exclusion-queue");
    let run = p
        .cli(&["subscribe", &hit_type, "--queue-url", &missing])
        .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("queue not found"), "{}", run.stderr);
    assert!(run.stderr.contains(&missing), "{}", run.stderr);
    assert!(run.stderr.contains("what to do"), "{}", run.stderr);
    assert!(p.double.notification_setting(&hit_type).is_none());
}

#[tokio::test]
async fn unsubscribe_turns_notifications_off_and_keeps_the_record() {
    let p = Pipeline::start().await;
    let hit_type = p.double.new_hit_type_id();
    let sub = p.cli(&["subscribe", &hit_type, "--no-verify"]).await;
    assert_eq!(sub.code, 0, "{sub:?}");

    let run = p.cli(&["unsubscribe", &hit_type, "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["hit_types"][0]["unsubscribed"], true);
    assert!(!p.double.notification_setting(&hit_type).unwrap().active);
    let subs = p.ledger.subscriptions().await.unwrap();
    let record = subs
        .iter()
        .find(|s| s.hit_type_id.as_str() == hit_type)
        .unwrap();
    assert!(!record.active);
    assert_eq!(record.queue_url, p.queues.url);

    let unknown = p.cli(&["unsubscribe", "3NOSUCHHITTYPE", "--json"]).await;
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert_eq!(unknown.json()["hit_types"][0]["unsubscribed"], false);
}

#[tokio::test]
async fn stack_outputs_name_the_table_queues_and_qualification() {
    let p = Pipeline::start().await;
    let deployed = Deployed::new(&p, &[]).await;
    let stack = deployed.name.clone();
    let unset = deployed.env();
    let hit_type = p.double.new_hit_type_id();
    let run = while_consuming(
        &p,
        p.cli_with_env(
            &[
                "subscribe",
                &hit_type,
                "--stack",
                &stack,
                "--json",
                "--timeout",
                "20s",
            ],
            &unset,
        ),
        p.function(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["verified"], true);
    assert_eq!(report["queue_url"], p.queues.url.as_str());
    assert_eq!(report["table"], p.ledger.table());

    let status = p
        .cli_with_env(&["status", "--stack", &stack, "--json"], &unset)
        .await;
    assert_eq!(status.code, 0, "{status:?}");
    let status = status.json();
    assert_eq!(status["qualification_type_id"], p.qualification.as_str());
    assert_eq!(
        status["dead_letter_queue"]["url"],
        p.queues.dlq_url.as_str()
    );

    let missing = p
        .cli_with_env(&["status", "--stack", "NoSuchStack", "--json"], &unset)
        .await;
    assert_eq!(missing.code, 3, "{missing:?}");
    assert!(missing.stderr.contains("NoSuchStack"), "{}", missing.stderr);

    deployed.delete().await;
}

/// Runs `subscribe` while the queue is consumed, and puts another
/// requester's Ping into the queue after subscribe has looked at the
/// heartbeats already there and before MTurk sends its own test event: the
/// foreign Ping arrives first, inside the round trip's time window.
async fn subscribe_with_a_foreign_ping_first(p: &Pipeline, hit_type: &str) -> CliRun {
    use testkit::pipeline::{foreign_document, ping_now};
    let gate = p.double.hold_next("SendTestEventNotification", 1);
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let args = ["subscribe", hit_type, "--json", "--timeout", "5s"];
    let (run, ()) = tokio::join!(while_consuming(p, p.cli(&args), p.function()), async {
        gate.arrived().await;
        p.send(&foreign_document("doc-foreign-ping", &[ping_now()]))
            .await;
        // Until the function has written the foreign heartbeat (bounded:
        // the held call must go on before the CLI's attempt timeout).
        for _ in 0..30 {
            if !p.ledger.heartbeats_since(before).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        gate.open();
    });
    run
}

#[tokio::test]
async fn a_foreign_ping_arriving_first_does_not_satisfy_subscribe() {
    let p = Pipeline::start().await;
    // The lab's own test event never arrives.
    p.double.lose_deliveries_to(&p.queues.url);
    let hit_type = p.double.new_hit_type_id();

    let run = subscribe_with_a_foreign_ping_first(&p, &hit_type).await;

    assert_eq!(run.code, 4, "{run:?}");
    let report = run.json();
    assert_eq!(report["verified"], false, "{report}");
    assert_eq!(report["foreign_test_events"], 1, "{report}");
    assert_eq!(
        report["diagnosis"]["cause"], "only_foreign_test_events",
        "{report}"
    );
    let message = report["diagnosis"]["message"].as_str().unwrap();
    assert!(
        message.contains(testkit::pipeline::FOREIGN_ACCOUNT),
        "{message}"
    );
    // Nothing was learned from it, and the HIT type is not marked verified.
    assert!(p.ledger.own_customer().await.unwrap().is_none());
    let subs = p.ledger.subscriptions().await.unwrap();
    assert!(subs
        .iter()
        .all(|s| s.hit_type_id.as_str() != hit_type || s.verified_at.is_none()));
}

#[tokio::test]
async fn subscribe_learns_the_labs_customer_id_from_its_own_test_event_only() {
    let p = Pipeline::start().await;
    let hit_type = p.double.new_hit_type_id();

    let run = subscribe_with_a_foreign_ping_first(&p, &hit_type).await;

    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(
        report["customer_id"],
        testkit::mturk_double::CUSTOMER_ID,
        "{report}"
    );
    assert_eq!(report["foreign_test_events"], 1, "{report}");
    let own = p.ledger.own_customer().await.unwrap().expect("learned");
    assert_eq!(own.customer_id, testkit::mturk_double::CUSTOMER_ID);
    assert_eq!(
        own.source_account.as_deref(),
        Some(testkit::mturk_double::SOURCE_ACCOUNT)
    );

    // A second run checks against what was learned.
    let again = while_consuming(
        &p,
        p.cli(&["subscribe", &hit_type, "--json", "--timeout", "20s"]),
        p.function(),
    )
    .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.json()["customer_id"],
        testkit::mturk_double::CUSTOMER_ID
    );
}

#[tokio::test]
async fn with_require_source_account_on_a_missing_test_event_is_named_plainly() {
    let p = Pipeline::start().await;
    // As when the queue policy's aws:SourceAccount condition refuses MTurk.
    p.double.lose_deliveries_to(&p.queues.url);
    let deployed = Deployed::new(&p, &[("RequireSourceAccount", "true")]).await;
    let stack = deployed.name.clone();
    let unset = deployed.env();
    let hit_type = p.double.new_hit_type_id();
    let run = while_consuming(
        &p,
        p.cli_with_env(
            &["subscribe", &hit_type, "--stack", &stack, "--timeout", "3s"],
            &unset,
        ),
        p.function(),
    )
    .await;
    deployed.delete().await;

    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stdout.contains("RequireSourceAccount=true"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("RequireSourceAccount=false"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("MTurk could not deliver"),
        "{}",
        run.stdout
    );
}
