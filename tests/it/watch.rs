//! The watch (`ops::watch`): every HIT of the lab is covered, against the
//! local services and the MTurk double, with the races and faults forced.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use mturk_exclusion::aws::Limits;
use mturk_exclusion::exclusion::{Excluder, Timing};
use mturk_exclusion::ids::{AssignmentId, HitTypeId, WorkerId};
use mturk_exclusion::ledger::{ExclusionState, SubscribedBy};
use mturk_exclusion::mturk::Mturk;
use mturk_exclusion::ops::watch::{self, Report, Settings};
use mturk_exclusion::ops::{coverage, subscribe, Lab};
use mturk_exclusion::rate::RateLimiter;
use serde_json::{json, Value};
use testkit::mturk_double::{AssignmentStatus, Fault, Gate, HitOptions};
use testkit::pipeline::{document, does_not_exist, record, submitted, Options, Pipeline};
use tokio::time::Instant;

const GRANT: &str = "AssociateQualificationWithWorker";
const SETTINGS: &str = "UpdateNotificationSettings";

/// The watch's side, on the pipeline's clients, with the pipeline's short
/// grant window (a release waits it out).
pub(crate) fn lab(p: &Pipeline) -> Lab {
    let mturk = Mturk::new(p.mturk.clone(), Arc::new(RateLimiter::per_second(100.0)));
    let mut lab = Lab::new(mturk.clone(), p.ledger.clone(), p.qualification.clone());
    lab.excluder =
        Excluder::new(mturk, p.ledger.clone(), p.qualification.clone()).with_timing(Timing {
            lease: p.config.assignment_lease,
            grant_window: p.config.grant_window,
        });
    lab
}

pub(crate) fn settings(p: &Pipeline) -> Settings {
    Settings {
        queue_url: p.queues.url.clone(),
        cover_unguarded: true,
        guard_unguarded: false,
        concurrency: 4,
    }
}

/// Guarding unguarded HITs instead of covering their HIT types.
pub(crate) fn guarding(p: &Pipeline) -> Settings {
    Settings {
        cover_unguarded: false,
        guard_unguarded: true,
        ..settings(p)
    }
}

pub(crate) async fn run(p: &Pipeline, settings: &Settings) -> Report {
    watch::run(&lab(p), settings, Instant::now() + Duration::from_secs(120)).await
}

/// Starts a watch run whose first grant waits at MTurk's door, and returns
/// once the grant is there: the run, and the gate that lets it through.
async fn run_held_at_first_grant(
    p: &Pipeline,
    s: &Settings,
    deadline: Instant,
) -> (tokio::task::JoinHandle<Report>, Gate) {
    let gate = p.double.hold_next(GRANT, 1);
    let running = tokio::spawn({
        let lab = lab(p);
        let s = s.clone();
        async move { watch::run(&lab, &s, deadline).await }
    });
    tokio::time::timeout(Duration::from_secs(30), gate.arrived())
        .await
        .expect("the run reached its first grant");
    (running, gate)
}

/// A HIT another tool posted: its own title, these requirements.
pub(crate) fn post(p: &Pipeline, title: &str, requirements: Vec<Value>) -> (String, String) {
    p.double.post_hit(HitOptions {
        title: title.into(),
        qualification_requirements: requirements,
        ..HitOptions::default()
    })
}

/// Workers who submitted before anyone subscribed: no notification.
pub(crate) async fn submit_unnotified(p: &Pipeline, hit: &str, workers: &[String]) {
    for w in workers {
        let s = p.double.submit_assignment(hit, w).await.unwrap();
        assert!(s.notification.is_none(), "nothing was subscribed yet");
    }
}

pub(crate) fn workers(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("A1{prefix}{i:04}")).collect()
}

pub(crate) fn hit_type(id: &str) -> HitTypeId {
    HitTypeId::parse(id).unwrap()
}

#[tokio::test]
async fn a_hit_type_nobody_subscribed_is_covered_within_one_run_then_by_notifications() {
    let p = Pipeline::start().await;
    let (hit, t) = post(
        &p,
        "Study three (another tool)",
        vec![does_not_exist(p.qualification.as_str())],
    );
    let early = workers("EARLY", 3);
    submit_unnotified(&p, &hit, &early).await;
    // A released worker's old submission stays released.
    let lab = lab(&p);
    let kept = "A1KEPTRELEASED";
    p.double.submit_assignment(&hit, kept).await.unwrap();
    lab.excluder
        .exclude_worker(
            &WorkerId::parse(kept).unwrap(),
            mturk_exclusion::ledger::Learned::Manual,
        )
        .await
        .unwrap();
    lab.excluder
        .release_worker(&WorkerId::parse(kept).unwrap(), None, None)
        .await
        .unwrap();

    let report = run(&p, &settings(&p)).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.hit_types_subscribed, [t.as_str()]);
    assert_eq!(report.backfilled_hit_types, [t.as_str()]);
    assert_eq!(report.submissions_backfilled, 4, "{report:?}");
    assert_eq!(report.newly_excluded, 3);
    assert_eq!(report.kept_released, 1);
    for w in &early {
        assert!(p.granted(w), "{w} was not excluded by the run");
    }
    assert!(!p.granted(kept), "the lab's release was undone");
    p.assert_every_grant_silent();
    // The same call and event types as `subscribe`.
    let setting = p.double.notification_setting(&t).expect("subscribed");
    assert_eq!(setting.destination, p.queues.url);
    assert!(setting.active);
    assert_eq!(
        setting.event_types,
        mturk_exclusion::check::NOTIFIED_EVENT_TYPES
    );
    let sub = p
        .ledger
        .subscription(&hit_type(&t))
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(sub.subscribed_by, SubscribedBy::Watch);
    assert!(!sub.backfill_due);
    assert!(sub.backfilled_at.is_some());

    // Later submissions come through the pipeline.
    let later = p
        .double
        .submit_assignment(&hit, "A1LATERWORKER")
        .await
        .unwrap();
    assert!(later.notification.is_some());
    p.drain().await;
    assert!(p.granted("A1LATERWORKER"));
}

#[tokio::test]
async fn the_labs_unsubscribe_stands_and_another_lists_hits_are_left_alone() {
    let p = Pipeline::start().await;
    let lab = lab(&p);
    let (ours, ours_type) = post(
        &p,
        "Ours, unsubscribed by the lab",
        vec![does_not_exist(p.qualification.as_str())],
    );
    let other_qual = p.double.create_qualification_type("Another lab's list");
    let (theirs, theirs_type) = post(&p, "Another list's", vec![does_not_exist(&other_qual)]);
    submit_unnotified(&p, &ours, &workers("OURS", 2)).await;
    submit_unnotified(&p, &theirs, &workers("THEIRS", 2)).await;
    subscribe::unsubscribe(&lab.mturk, &lab.ledger, &hit_type(&ours_type))
        .await
        .unwrap();
    p.double.clear_calls();

    let report = run(&p, &settings(&p)).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.hit_types_subscribed.is_empty(), "{report:?}");
    assert_eq!(report.left_unsubscribed, [ours_type.as_str()]);
    assert_eq!(report.counts.ours, 1);
    assert_eq!(report.counts.other_list, 1);
    assert_eq!(p.double.call_count(SETTINGS), 0);
    assert_eq!(p.double.call_count(GRANT), 0);
    assert!(p.double.notification_setting(&theirs_type).is_none());
    assert!(!p
        .double
        .notification_setting(&ours_type)
        .is_some_and(|s| s.active));
    for w in workers("OURS", 2).iter().chain(&workers("THEIRS", 2)) {
        assert!(!p.granted(w));
    }
}

#[tokio::test]
async fn without_cover_unguarded_an_unguarded_type_is_counted_and_left_alone() {
    let p = Pipeline::start().await;
    let (hit, t) = post(&p, "Unguarded", vec![]);
    let (done, _) = post(&p, "Unguarded, finished", vec![]);
    p.double.expire_hit(&done);
    submit_unnotified(&p, &hit, &workers("UNG", 2)).await;
    p.double.clear_calls();
    let mut s = settings(&p);
    s.cover_unguarded = false;

    let report = run(&p, &s).await;

    assert_eq!(report.counts.unguarded, 2);
    assert_eq!(
        report.counts.live_unguarded, 1,
        "only Assignable HITs are live"
    );
    assert_eq!(report.live_unguarded.len(), 1);
    assert_eq!(report.live_unguarded[0].hit_id, hit);
    assert_eq!(report.live_unguarded[0].hit_type_id, t);
    assert_eq!(report.live_unguarded[0].title.as_deref(), Some("Unguarded"));
    assert!(report.hit_types_subscribed.is_empty());
    assert_eq!(report.unguarded_not_covered.len(), 2);
    assert_eq!(p.double.call_count(SETTINGS), 0);
    let line = &report.emf_lines("lab", 1)[0];
    let doc: Value = serde_json::from_str(line).unwrap();
    assert_eq!(doc["UnguardedHits"], 1);
    let recorded = p.ledger.last_watch_run().await.unwrap().expect("heartbeat");
    assert_eq!(recorded.counts.live_unguarded, 1);
    assert_eq!(recorded.unguarded[0].hit_id, hit);

    // With the default, the same HIT type is covered.
    let report = run(&p, &settings(&p)).await;
    assert!(report.hit_types_subscribed.contains(&t), "{report:?}");
    assert!(p.granted("A1UNG0000"));
    assert_eq!(report.counts.live_unguarded, 1, "covered is not guarded");
}

/// Every item of the table, except the watch's heartbeat, as text.
async fn ledger_items(p: &Pipeline) -> BTreeSet<String> {
    let items: Vec<_> = p
        .clients
        .dynamodb
        .scan()
        .table_name(p.ledger.table())
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    items
        .into_iter()
        .filter(|i| i.get("sk") != Some(&AttributeValue::S("WATCH".into())))
        .map(|i| {
            let sorted: std::collections::BTreeMap<_, _> = i.into_iter().collect();
            format!("{sorted:?}")
        })
        .collect()
}

#[tokio::test]
async fn the_hits_a_run_lists_are_known_to_the_check_without_asking_mturk() {
    let p = Pipeline::start().await;
    let (hit, t) = post(&p, "Listed for the check", vec![]);
    run(&p, &settings(&p)).await;
    let known = p
        .ledger
        .verified_hit(&mturk_exclusion::ids::HitId::parse(&hit).unwrap())
        .await
        .unwrap()
        .expect("the listed HIT is remembered as the lab's");
    assert_eq!(known.hit_type_id.as_str(), t);
}

#[tokio::test]
async fn a_second_run_with_nothing_new_only_lists_hits() {
    let p = Pipeline::start().await;
    let (hit, _) = post(&p, "Covered once", vec![]);
    submit_unnotified(&p, &hit, &workers("ONCE", 3)).await;
    let first = run(&p, &settings(&p)).await;
    assert_eq!(first.hit_types_subscribed.len(), 1);
    let before = ledger_items(&p).await;
    let heartbeat = p.ledger.last_watch_run().await.unwrap().unwrap();
    p.double.clear_calls();

    let second = run(&p, &settings(&p)).await;

    assert!(second.errors.is_empty(), "{:?}", second.errors);
    let operations: BTreeSet<String> = p.double.calls().into_iter().map(|c| c.operation).collect();
    assert_eq!(operations, BTreeSet::from(["ListHITs".to_owned()]));
    assert_eq!(second.mturk_calls, 1);
    assert_eq!(
        ledger_items(&p).await,
        before,
        "the ledger changed beyond the heartbeat"
    );
    let again = p.ledger.last_watch_run().await.unwrap().unwrap();
    assert!(again.ran_at > heartbeat.ran_at, "the heartbeat was written");
}

#[tokio::test]
async fn a_run_failing_mid_backfill_leaves_it_due_and_the_next_run_finishes() {
    let p = Pipeline::start().await;
    let (hit, t) = post(&p, "Faulty backfill", vec![]);
    let ws = workers("FAULT", 6);
    submit_unnotified(&p, &hit, &ws).await;
    // One worker's grant fails through all the SDK's attempts: one worker at
    // a time, so the three faults meet one worker's three attempts however
    // fast the limiter lets calls go.
    p.double.fail_next(Some(GRANT), 3, Fault::ServiceFault);
    let one_at_a_time = Settings {
        concurrency: 1,
        ..settings(&p)
    };

    let first = run(&p, &one_at_a_time).await;

    assert_eq!(first.hit_types_subscribed, [t.as_str()]);
    assert_eq!(first.backfill_left, [t.as_str()], "{first:?}");
    assert!(!first.errors.is_empty());
    let sub = p.ledger.subscription(&hit_type(&t)).await.unwrap().unwrap();
    assert!(sub.backfill_due, "recorded as done before it was");
    assert!(sub.backfilled_at.is_none());
    let missed = ws.iter().filter(|w| !p.granted(w)).count();
    assert!(missed >= 1, "no grant failed");

    // An outage of the listing itself loses nothing either.
    p.double
        .fail_next(Some("ListAssignmentsForHIT"), 3, Fault::ServiceFault);
    let outage = run(&p, &settings(&p)).await;
    assert_eq!(outage.backfill_left, [t.as_str()]);

    let second = run(&p, &settings(&p)).await;
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert!(second.hit_types_subscribed.is_empty(), "subscribed once");
    assert_eq!(second.backfilled_hit_types, [t.as_str()]);
    // Only what the first run left is newly recorded.
    assert_eq!(second.submissions_backfilled, missed);
    for w in &ws {
        assert!(p.granted(w), "{w} lost");
    }
    let sub = p.ledger.subscription(&hit_type(&t)).await.unwrap().unwrap();
    assert!(!sub.backfill_due);
}

#[tokio::test]
async fn a_streak_of_failed_workers_stops_the_run_starting_new_ones() {
    // MTurk refuses every grant: after the streak, the rest of the HIT
    // type's workers are not attempted, and the backfill stays due.
    let p = Pipeline::start().await;
    let limit = mturk_exclusion::ops::backfill::FAILURE_STREAK_LIMIT;
    let (hit, t) = post(&p, "Grants refused", vec![]);
    let ws = workers("STREAK", limit + 10);
    submit_unnotified(&p, &hit, &ws).await;
    p.double
        .fail_next(Some(GRANT), 10 * ws.len(), Fault::ParameterValidation);
    let one_at_a_time = Settings {
        concurrency: 1,
        ..settings(&p)
    };

    let first = run(&p, &one_at_a_time).await;

    assert_eq!(p.double.call_count(GRANT), limit, "grants tried");
    assert_eq!(first.backfill_left, [t.as_str()], "{first:?}");
    assert!(
        first
            .errors
            .iter()
            .any(|e| e.contains("10 submission(s) not settled: not attempted")),
        "{:?}",
        first.errors
    );
    assert!(!first.stopped_at_deadline);
    let sub = p.ledger.subscription(&hit_type(&t)).await.unwrap().unwrap();
    assert!(sub.backfill_due);

    p.double.clear_faults();
    let second = run(&p, &settings(&p)).await;
    assert_eq!(second.backfilled_hit_types, [t.as_str()], "{second:?}");
    for w in &ws {
        assert!(p.granted(w), "{w} lost");
    }
}

#[tokio::test]
async fn a_run_nearing_its_deadline_stops_cleanly_and_the_next_finishes() {
    // An SDK attempt outlasts the held grant, so that grant is one call that
    // ends after the deadline, not a timeout and a retry before it.
    let defaults = Options::default();
    let p = Pipeline::with(Options {
        limits: Limits {
            attempt: Duration::from_secs(20),
            operation: Duration::from_secs(40),
            ..defaults.limits
        },
        ..defaults
    })
    .await;
    let (hit, t) = post(&p, "Deadline", vec![]);
    let ws = workers("LATE", 10);
    submit_unnotified(&p, &hit, &ws).await;
    let s = Settings {
        concurrency: 1,
        ..settings(&p)
    };
    // The first worker's grant is held until the deadline has passed.
    let deadline = Instant::now() + Duration::from_secs(3);
    let (running, gate) = run_held_at_first_grant(&p, &s, deadline).await;
    tokio::time::sleep_until(deadline + Duration::from_millis(100)).await;
    gate.open();
    let first = running.await.unwrap();

    assert!(first.stopped_at_deadline, "{first:?}");
    assert_eq!(first.backfill_left, [t.as_str()]);
    assert_eq!(
        p.double.call_count(GRANT),
        1,
        "no worker started after the deadline"
    );
    let sub = p.ledger.subscription(&hit_type(&t)).await.unwrap().unwrap();
    assert!(sub.backfill_due);

    let second = run(&p, &s).await;
    assert_eq!(second.backfilled_hit_types, [t.as_str()], "{second:?}");
    for w in &ws {
        assert!(p.granted(w), "{w} lost");
    }
}

#[tokio::test]
async fn hundreds_of_hits_and_assignments_are_paged_through() {
    let p = Pipeline::start().await;
    let other_qual = p.double.create_qualification_type("Another list");
    for i in 0..230 {
        // One HIT type for all of them: same properties.
        let (h, _) = post(
            &p,
            "Another list's study",
            vec![does_not_exist(&other_qual)],
        );
        if i == 0 {
            p.double
                .add_assignment(&h, "A1OTHERLISTW", AssignmentStatus::Approved);
        }
    }
    let (big, t) = post(
        &p,
        "Big study",
        vec![does_not_exist(p.qualification.as_str())],
    );
    let ws = workers("PAGE", 150);
    for (i, w) in ws.iter().enumerate() {
        let status = match i % 3 {
            0 => AssignmentStatus::Submitted,
            1 => AssignmentStatus::Approved,
            _ => AssignmentStatus::Rejected,
        };
        p.double.add_assignment(&big, w, status);
    }
    // In progress: not a submission, never listed.
    p.double
        .add_assignment(&big, "A1STILLWORKING", AssignmentStatus::Accepted);
    p.double.clear_calls();

    let report = run(&p, &settings(&p)).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.counts.hits, 231);
    assert_eq!(report.counts.other_list, 230);
    assert_eq!(report.hit_types_subscribed, [t]);
    assert_eq!(report.submissions_backfilled, 150);
    assert_eq!(p.double.call_count("ListHITs"), 3);
    assert_eq!(p.double.call_count("ListAssignmentsForHIT"), 2);
    assert!(ws.iter().all(|w| p.granted(w)));
    assert!(!p.granted("A1STILLWORKING"));
    assert!(!p.granted("A1OTHERLISTW"));
}

#[tokio::test]
async fn odd_requirement_values_are_sorted_and_counted() {
    let p = Pipeline::start().await;
    let q = p.qualification.as_str().to_owned();
    let (odd_ours, odd_type) = post(
        &p,
        "Odd but ours",
        vec![
            json!({"QualificationTypeId": "00000000000000000071", "Comparator": "EqualTo", "LocaleValues": [{"Country": "US"}]}),
            json!({"QualificationTypeId": "3SOMEQUAL", "Comparator": "In", "IntegerValues": []}),
            does_not_exist(&q),
        ],
    );
    let (unknown, _) = post(
        &p,
        "Unknown comparator",
        vec![json!({"QualificationTypeId": q, "Comparator": "IsNotQuiteThere"})],
    );
    submit_unnotified(&p, &odd_ours, &workers("ODD", 1)).await;

    let report = run(&p, &settings(&p)).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.counts.odd_requirements, 3);
    assert_eq!(report.counts.hits_with_odd_requirements, 2);
    assert_eq!(report.counts.ours, 1);
    // A comparator nobody knows keeps no one out: unguarded, and said so.
    assert_eq!(report.counts.live_unguarded, 1);
    assert_eq!(report.live_unguarded[0].hit_id, unknown);
    assert!(report.hit_types_subscribed.contains(&odd_type));
    assert!(p.granted("A1ODD0000"));
}

#[tokio::test]
async fn the_watch_and_the_handler_settle_one_assignment_at_once_and_a_release_between_stands() {
    let p = Pipeline::start().await;
    let w = "A1RACEWATCH";
    let (hit, t) = post(&p, "Raced", vec![]);
    let s = p.double.submit_assignment(&hit, w).await.unwrap();
    let body = document("doc-race", &[submitted(&t, &hit, &s.assignment_id)]);
    // The watch's grant is held at MTurk's door.
    let (running, gate) =
        run_held_at_first_grant(&p, &settings(&p), Instant::now() + Duration::from_secs(60)).await;

    // Meanwhile the handler gets the notification for the same assignment:
    // a grant is in flight, so it is retried rather than granting twice.
    let handled = p
        .handler
        .process(
            vec![record("m1", &body)],
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(handled.records[0].1.is_err(), "{:?}", handled.records);
    // And the lab releases the worker, which waits out the grant window.
    let releasing = tokio::spawn({
        let lab = lab(&p);
        async move {
            lab.excluder
                .release_worker(&WorkerId::parse(w).unwrap(), None, None)
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        p.double.call_count("DisassociateQualificationFromWorker"),
        0,
        "the release revoked before the grant window closed"
    );
    gate.open();
    let report = running.await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), releasing)
        .await
        .expect("the release ends after the grant window")
        .unwrap();
    // The notification's retry finds the participation settled.
    let retried = p
        .handler
        .process(
            vec![record("m2", &body)],
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(retried.records[0].1.is_ok(), "{:?}", retried.records);

    assert_eq!(report.hit_types_subscribed, [t]);
    assert_eq!(p.double.call_count(GRANT), 1, "one grant");
    assert!(!p.granted(w), "the release made in between was undone");
    let standing = p
        .ledger
        .exclusion(&WorkerId::parse(w).unwrap(), &p.qualification)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(standing.state, ExclusionState::Released);
    let all = p
        .ledger
        .participations_of(&WorkerId::parse(w).unwrap())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "one participation: {all:?}");
    assert_eq!(
        all[0].assignment_id,
        Some(AssignmentId::parse(&s.assignment_id).unwrap())
    );
    assert!(all[0].released_at.is_some(), "{:?}", all[0]);
}

/// The figures for the notes (not a check: run by hand, debug or release):
/// `scripts/test.sh --test it watch::figures -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn figures() {
    let p = Pipeline::start().await;
    p.double.set_record_bodies(false);
    let other = p.double.create_qualification_type("Another list (figures)");
    // A lab with 1,000 HITs, all another list's or already covered.
    for _ in 0..1000 {
        post(&p, "Old study", vec![does_not_exist(&other)]);
    }
    let first = run(&p, &settings(&p)).await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    p.double.clear_calls();
    let t = std::time::Instant::now();
    let idle = run(&p, &settings(&p)).await;
    let idle_time = t.elapsed();
    println!(
        "FIGURE idle run, 1000 HITs none new: {} MTurk calls ({} ListHITs), {:.2} s",
        idle.mturk_calls,
        p.double.call_count("ListHITs"),
        idle_time.as_secs_f64()
    );

    // One new study of 500 submissions, posted by another tool, never subscribed.
    let (hit, _) = post(
        &p,
        "New study (500)",
        vec![does_not_exist(p.qualification.as_str())],
    );
    for w in workers("FIG", 500) {
        p.double
            .add_assignment(&hit, &w, AssignmentStatus::Submitted);
    }
    p.double.clear_calls();
    let t = std::time::Instant::now();
    let report = run(&p, &settings(&p)).await;
    let took = t.elapsed();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.submissions_backfilled, 500);
    let mut ops: Vec<(String, usize)> = p
        .double
        .calls()
        .into_iter()
        .fold(std::collections::BTreeMap::new(), |mut m, c| {
            *m.entry(c.operation).or_insert(0) += 1;
            m
        })
        .into_iter()
        .collect();
    ops.sort();
    println!(
        "FIGURE first run after 500 submissions: {} MTurk calls {:?}, {:.2} s",
        report.mturk_calls,
        ops,
        took.as_secs_f64()
    );
}

#[tokio::test]
async fn a_ledger_outage_mid_backfill_loses_nothing() {
    let dir = std::env::temp_dir().join(testkit::unique_name("ddb-watch"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = testkit::dynamodb_local::DynamoDbLocal::start(&dir)
        .await
        .unwrap();
    let options = testkit::pipeline::Options {
        dynamodb_endpoint: Some(db.endpoint()),
        ..Default::default()
    };
    let p = Pipeline::with(options).await;
    let (hit, t) = post(&p, "Ledger outage", vec![]);
    let ws = workers("DBOUT", 3);
    submit_unnotified(&p, &hit, &ws).await;
    let s = Settings {
        concurrency: 1,
        ..settings(&p)
    };
    // The first worker's grant is held; DynamoDB freezes before it lands,
    // so the ledger cannot record what MTurk granted.
    let (running, gate) =
        run_held_at_first_grant(&p, &s, Instant::now() + Duration::from_secs(120)).await;
    db.freeze();
    gate.open();
    let first = running.await.unwrap();
    db.thaw();

    assert!(
        !first.errors.is_empty(),
        "the outage hit nothing: {first:?}"
    );
    assert!(first.backfilled_hit_types.is_empty(), "{first:?}");
    let sub = p.ledger.subscription(&hit_type(&t)).await.unwrap().unwrap();
    assert!(sub.backfill_due, "recorded as done before it was");

    // A grant window the outage kept open runs out by itself.
    tokio::time::sleep(p.config.grant_window).await;
    let second = run(&p, &s).await;
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert_eq!(second.backfilled_hit_types, [t.as_str()]);
    for w in &ws {
        assert!(p.granted(w), "{w} lost");
        let recorded = p
            .ledger
            .participations_of(&WorkerId::parse(w).unwrap())
            .await
            .unwrap();
        assert_eq!(recorded.len(), 1, "{w}: {recorded:?}");
    }
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn guarding_moves_an_unguarded_hit_subscribes_its_new_type_and_backfills_it_in_one_run() {
    let p = Pipeline::start().await;
    let (hit, old_type) = post(&p, "Pilot without the requirement", vec![]);
    let early = workers("GUARD", 3);
    submit_unnotified(&p, &hit, &early).await;
    let guarding = guarding(&p);

    let report = run(&p, &guarding).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let new_type = p.double.hit_type_of(&hit).unwrap();
    assert_ne!(new_type, old_type, "the HIT was not moved");
    let requirements = p.double.requirements_of(&hit).unwrap();
    assert!(
        requirements.contains(&does_not_exist(p.qualification.as_str())),
        "{requirements:?}"
    );
    assert_eq!(report.counts.live_unguarded, 0, "{report:?}");
    assert_eq!(report.counts.ours, 1, "{report:?}");
    assert!(report.live_unguarded.is_empty(), "{report:?}");
    assert_eq!(report.hit_types_subscribed, [new_type.as_str()]);
    assert_eq!(report.backfilled_hit_types, [new_type.as_str()]);
    let sub = p
        .ledger
        .subscription(&hit_type(&new_type))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.subscribed_by, SubscribedBy::Watch);
    assert!(!sub.backfill_due);
    for w in &early {
        assert!(p.granted(w), "{w} not excluded");
    }
    p.assert_every_grant_silent();
    // The old HIT type was never subscribed: CoverUnguardedHits is off.
    assert!(p
        .ledger
        .subscription(&hit_type(&old_type))
        .await
        .unwrap()
        .is_none());
}

/// An unguarded HIT whose properties match a HIT type the lab posted with
/// the requirement and subscribed: guarding moves it into that HIT type,
/// whose subscription stands, and the submissions it brings along (never
/// notified: its old HIT type was not covered) are backfilled all the same.
#[tokio::test]
async fn guarding_into_a_hit_type_the_lab_subscribed_backfills_the_moved_hits_workers() {
    let p = Pipeline::start().await;
    let (_, guarded_type) = post(
        &p,
        "Second wave",
        vec![does_not_exist(p.qualification.as_str())],
    );
    let l = lab(&p);
    let subscribed =
        subscribe::subscribe(&l.mturk, &l.ledger, &hit_type(&guarded_type), &p.queues.url)
            .await
            .unwrap();
    assert!(subscribed.subscribed, "{subscribed:?}");
    // The same study posted again without the requirement.
    let (hit, _) = post(&p, "Second wave", vec![]);
    let early = workers("MOVED", 3);
    submit_unnotified(&p, &hit, &early).await;
    let guarding = guarding(&p);

    let report = run(&p, &guarding).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        p.double.hit_type_of(&hit).unwrap(),
        guarded_type,
        "the premise: guarding gives the lab's HIT type"
    );
    let marked: Vec<_> = report
        .guarded
        .as_ref()
        .map(|g| g.marked_due.iter().map(|m| m.hit_type_id.clone()).collect())
        .unwrap_or_default();
    assert_eq!(marked, [guarded_type.as_str()], "{report:?}");
    assert!(report.hit_types_subscribed.is_empty(), "{report:?}");
    assert_eq!(report.backfilled_hit_types, [guarded_type.as_str()]);
    for w in &early {
        assert!(p.granted(w), "{w} not excluded");
    }
    p.assert_every_grant_silent();
    let sub = p
        .ledger
        .subscription(&hit_type(&guarded_type))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sub.subscribed_by,
        SubscribedBy::Lab,
        "the lab's record stands"
    );
    assert!(sub.active && !sub.backfill_due, "{sub:?}");
}

/// `coverage --fix` on the lab's machine moves a HIT into a HIT type while
/// the watch is backfilling that HIT type from a listing made before the
/// move. The run must not record the backfill as done: the next run goes
/// through the moved HIT's submissions.
#[tokio::test]
async fn a_hit_moved_into_a_hit_type_while_its_backfill_runs_is_backfilled_by_the_next_run() {
    let p = Pipeline::start().await;
    let (first_hit, t) = post(
        &p,
        "Third wave",
        vec![does_not_exist(p.qualification.as_str())],
    );
    let first = workers("FIRST", 2);
    submit_unnotified(&p, &first_hit, &first).await;
    // Posted again without the requirement; the watch does not cover it.
    let (moved_hit, _) = post(&p, "Third wave", vec![]);
    let moved = workers("LATER", 2);
    submit_unnotified(&p, &moved_hit, &moved).await;
    let s = Settings {
        cover_unguarded: false,
        concurrency: 1,
        ..settings(&p)
    };
    // The watch subscribes T and backfills it; its first grant waits.
    let (running, gate) =
        run_held_at_first_grant(&p, &s, Instant::now() + Duration::from_secs(60)).await;
    // Meanwhile the lab fixes the unguarded HIT: it moves into T.
    let l = lab(&p);
    let hits = l.mturk.hits().await.unwrap();
    let plan = coverage::plan_fix(
        hits.iter(),
        &coverage::PoolLists::own(p.qualification.clone()),
    );
    let fixed = coverage::fix(
        &l.mturk,
        &l.ledger,
        &p.qualification,
        &plan,
        &p.queues.url,
        SubscribedBy::Lab,
    )
    .await
    .unwrap();
    assert_eq!(fixed.guarded(), 1, "{fixed:?}");
    assert_eq!(p.double.hit_type_of(&moved_hit).unwrap(), t, "the premise");
    gate.open();
    let racing = running.await.unwrap();

    assert!(racing.errors.is_empty(), "{:?}", racing.errors);
    assert_eq!(racing.hit_types_subscribed, [t.as_str()]);
    assert!(
        racing.backfilled_hit_types.is_empty(),
        "recorded as done, past the moved HIT: {racing:?}"
    );
    assert_eq!(racing.backfill_left, [t.as_str()]);
    for w in &first {
        assert!(p.granted(w), "{w} not excluded");
    }
    let sub = p.ledger.subscription(&hit_type(&t)).await.unwrap().unwrap();
    assert!(sub.backfill_due, "{sub:?}");

    let next = run(&p, &s).await;
    assert!(next.errors.is_empty(), "{:?}", next.errors);
    assert_eq!(next.backfilled_hit_types, [t.as_str()], "{next:?}");
    for w in first.iter().chain(&moved) {
        assert!(p.granted(w), "{w} not excluded");
    }
    let sub = p.ledger.subscription(&hit_type(&t)).await.unwrap().unwrap();
    assert!(!sub.backfill_due, "{sub:?}");
    p.assert_every_grant_silent();
}

/// The lab unsubscribes a HIT type the watch is subscribing at that moment,
/// in the one order that used to lose the lab's word: the lab's call turns
/// MTurk's notifications off, the watch's turns them on and records its
/// subscription, and only then does the lab's answer come back. Every
/// order must end unsubscribed, at MTurk and in the ledger.
#[tokio::test]
async fn an_unsubscribe_racing_the_watchs_subscribe_stands() {
    const SETTINGS: &str = "UpdateNotificationSettings";
    let p = Pipeline::start().await;
    let (_, t) = post(
        &p,
        "Unsubscribed while the watch runs",
        vec![does_not_exist(p.qualification.as_str())],
    );
    // The watch's subscribe waits at MTurk's door.
    let gate = p.double.hold_next(SETTINGS, 1);
    let watching = tokio::spawn({
        let lab = lab(&p);
        let s = settings(&p);
        async move { watch::run(&lab, &s, Instant::now() + Duration::from_secs(60)).await }
    });
    tokio::time::timeout(Duration::from_secs(30), gate.arrived())
        .await
        .expect("the watch reached its subscribe");
    // The lab's unsubscribe takes effect at MTurk, but its answer comes back
    // late (within the SDK's attempt), after the watch's turn.
    let before = p.double.call_count(SETTINGS);
    p.double
        .fail_next(Some(SETTINGS), 1, Fault::Delay(Duration::from_millis(1200)));
    let unsubscribing = tokio::spawn({
        let lab = lab(&p);
        let t = hit_type(&t);
        async move { subscribe::unsubscribe(&lab.mturk, &lab.ledger, &t).await }
    });
    let took_effect = Instant::now() + Duration::from_secs(30);
    while p.double.call_count(SETTINGS) == before {
        assert!(Instant::now() < took_effect, "the lab's call never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gate.open();
    let report = watching.await.unwrap();
    let unsubscribed = unsubscribing.await.unwrap().unwrap();

    assert!(unsubscribed.unsubscribed, "{unsubscribed:?}");
    assert!(
        !report.hit_types_subscribed.contains(&t),
        "the watch counts a subscription the lab undid: {report:?}"
    );
    let setting = p.double.notification_setting(&t);
    assert!(
        setting.as_ref().is_none_or(|s| !s.active),
        "MTurk still notifies for a HIT type the lab unsubscribed: {setting:?}"
    );
    let sub = p.ledger.subscription(&hit_type(&t)).await.unwrap().unwrap();
    assert!(!sub.active, "{sub:?}");
    // And the next run leaves it alone.
    let next = run(&p, &settings(&p)).await;
    assert_eq!(next.left_unsubscribed, [t.as_str()], "{next:?}");
}

/// A lab that never runs `subscribe`: the watch asks MTurk for a test event
/// once, and learns the lab's CustomerId from it on a later run, so the
/// handler's filter of other requesters' documents is on.
#[tokio::test]
async fn the_watch_proves_the_path_once_and_learns_the_labs_customer_id() {
    let p = Pipeline::start().await;

    let first = run(&p, &settings(&p)).await;

    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert!(first.test_event_sent, "{first:?}");
    assert!(p.ledger.own_customer().await.unwrap().is_none());
    // Before the handler has seen it: nothing learned, nothing asked again.
    p.double.clear_calls();
    let waiting = run(&p, &settings(&p)).await;
    assert!(!waiting.test_event_sent && !waiting.customer_id_learned);
    assert_eq!(p.double.call_count("SendTestEventNotification"), 0);

    p.drain().await;
    let learned = run(&p, &settings(&p)).await;

    assert!(learned.errors.is_empty(), "{:?}", learned.errors);
    assert!(learned.customer_id_learned, "{learned:?}");
    let own = p.ledger.own_customer().await.unwrap().expect("learned");
    assert_eq!(own.customer_id, testkit::mturk_double::CUSTOMER_ID);
    // Known now: never asked again.
    p.double.clear_calls();
    let after = run(&p, &settings(&p)).await;
    assert!(!after.test_event_sent && !after.customer_id_learned);
    assert_eq!(p.double.call_count("SendTestEventNotification"), 0);
}
