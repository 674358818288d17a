//! The lab's history (`ops::history`): the watch covers from the pool's
//! start, leaves earlier submissions to unguarded HITs for the lab, and
//! `adopt` takes them in; an earlier list is carried over; the first run is
//! predicted before the deploy. Against the local services and the double.

use std::time::{Duration, SystemTime};

use mturk_exclusion::ids::QualificationTypeId;
use mturk_exclusion::ledger::{HistoryLeftOut, Subscription};
use mturk_exclusion::mturk::MturkEnvironment;
use mturk_exclusion::ops::coverage::PoolLists;
use mturk_exclusion::ops::history::{self, Covering};
use mturk_exclusion::ops::{status, watch, Quiet};
use testkit::mturk_double::AssignmentStatus;
use testkit::pipeline::{does_not_exist, Pipeline};

use super::watch::{guarding, hit_type, lab, post, run, settings, submit_unnotified, workers};
use mturk_exclusion::ops::subscribe;
use testkit::mturk_double::Fault;

/// Ten days before the pool was deployed (its table made).
fn before_the_pool() -> SystemTime {
    SystemTime::now() - Duration::from_secs(10 * 24 * 3600)
}

/// Workers who took part in `hit` before the pool existed.
fn seed_history(p: &Pipeline, hit: &str, workers: &[String]) {
    for w in workers {
        p.double
            .add_assignment_submitted_at(hit, w, AssignmentStatus::Approved, before_the_pool());
    }
}

#[tokio::test]
async fn an_unguarded_hits_history_is_left_out_counted_and_adopted_by_the_lab() {
    let p = Pipeline::start().await;
    let (pilot, pilot_type) = post(&p, "Norming survey (no requirement)", vec![]);
    let (study, study_type) = post(
        &p,
        "Study one (the pool's list)",
        vec![does_not_exist(p.qualification.as_str())],
    );
    let norming = workers("NORM", 3);
    seed_history(&p, &pilot, &norming);
    let early = workers("EARLY", 2);
    seed_history(&p, &study, &early);
    // Submitted after the deploy, before the HIT type was subscribed.
    let late = workers("LATE", 1);
    submit_unnotified(&p, &pilot, &late).await;

    let report = run(&p, &settings(&p)).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mut subscribed = report.hit_types_subscribed.clone();
    subscribed.sort();
    let mut both = vec![pilot_type.clone(), study_type.clone()];
    both.sort();
    assert_eq!(subscribed, both);
    for w in norming.iter() {
        assert!(
            !p.granted(w),
            "{w}'s norming survey was taken as the pool's"
        );
    }
    for w in early.iter().chain(&late) {
        assert!(p.granted(w), "{w} was not excluded");
    }
    assert_eq!(report.submissions_backfilled, 3, "{report:?}");
    assert_eq!(report.history_left_out.len(), 1, "{report:?}");
    assert_eq!(report.history_left_out[0].hit_type_id.as_str(), pilot_type);
    let left = HistoryLeftOut {
        hits: 1,
        submissions: 3,
    };
    let sub = recorded(&p, &pilot_type).await;
    assert_eq!(sub.history_left_out, left);
    assert!(!sub.backfill_due, "left out is not left due: {sub:?}");
    let watch_run = p.ledger.last_watch_run().await.unwrap().unwrap();
    assert_eq!(watch_run.counts.history_left_out, 3);

    // `status` shows it, with the pool's start.
    let shown = status::summary(&p.ledger, &p.clients.sqs, &status_request(&p))
        .await
        .unwrap();
    assert_eq!(shown.history.submissions, 3);
    assert_eq!((shown.history.hit_types, shown.history.hits), (1, 1));
    assert!(shown.history.pool_start.is_some());

    // A dry run predicts, changes nothing.
    let l = lab(&p);
    let plan = history::plan_adoption(&l, &[], &Quiet).await.unwrap();
    assert_eq!(plan.workers(), 3);
    assert_eq!(plan.submissions(), 3);
    let predicted = history::adopt(&l, plan, true, 4, &Quiet).await.unwrap();
    assert_eq!(predicted.tally.excluded, 3);
    for w in &norming {
        assert!(!p.granted(w), "a dry run granted {w}");
    }

    let plan = history::plan_adoption(&l, &[], &Quiet).await.unwrap();
    let adopted = history::adopt(&l, plan, false, 4, &Quiet).await.unwrap();

    assert!(adopted.failures.is_empty(), "{:?}", adopted.failures);
    assert_eq!(adopted.tally.excluded, 3);
    for w in &norming {
        assert!(p.granted(w), "{w} was not adopted");
    }
    p.assert_every_grant_silent();
    let sub = recorded(&p, &pilot_type).await;
    assert!(sub.history_left_out.is_empty(), "{sub:?}");
    assert!(sub.history_adopted_at.is_some());
    // Nothing is left to adopt; a second adopt does nothing.
    let again = history::plan_adoption(&l, &[], &Quiet).await.unwrap();
    assert_eq!(again.workers(), 0);
}

/// `coverage --first-run`'s prediction for a pool deployed now with `s`.
async fn predict(p: &Pipeline, s: &watch::Settings) -> history::FirstRun {
    let covering = Covering {
        cover_unguarded: s.cover_unguarded,
        guard_unguarded: s.guard_unguarded,
    };
    history::first_run(
        &lab(p).mturk,
        &PoolLists::own(p.qualification.clone()),
        covering,
        time::OffsetDateTime::now_utc(),
        &Quiet,
    )
    .await
    .unwrap()
}

/// The ledger's subscription record of a HIT type, which must exist.
async fn recorded(p: &Pipeline, hit_type_id: &str) -> Subscription {
    p.ledger
        .subscription(&hit_type(hit_type_id))
        .await
        .unwrap()
        .expect("the HIT type has a subscription record")
}

fn status_request(p: &Pipeline) -> status::Request {
    status::Request {
        environment: MturkEnvironment::Sandbox,
        qualification: Some(p.qualification.clone()),
        queue_url: Some(p.queues.url.clone()),
        dlq_url: None,
        failures: 5,
        alarm_email: None,
    }
}

/// The watch's guard adds the pool's requirement to a live unguarded HIT,
/// moving it into a guarded HIT type: what was submitted to it before the
/// pool's start stays the lab's history; what came after is covered.
#[tokio::test]
async fn a_requirement_the_guard_added_does_not_make_a_hits_history_the_pools() {
    let p = Pipeline::start().await;
    let (hit, _) = post(&p, "Pilot, guarded later", vec![]);
    let before = workers("GBEFORE", 2);
    seed_history(&p, &hit, &before);
    let after = workers("GAFTER", 2);
    submit_unnotified(&p, &hit, &after).await;

    let report = run(&p, &guarding(&p)).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let new_type = p.double.hit_type_of(&hit).unwrap();
    assert_eq!(report.backfilled_hit_types, [new_type.as_str()]);
    for w in &after {
        assert!(
            p.granted(w),
            "{w} submitted after the start and was not excluded"
        );
    }
    for w in &before {
        assert!(
            !p.granted(w),
            "the guard made {w}'s earlier work the pool's"
        );
    }
    let sub = recorded(&p, &new_type).await;
    let moved = p.ledger.lists().await.unwrap().moved;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved.iter().next().unwrap().as_str(), hit);
    assert_eq!(
        sub.history_left_out,
        HistoryLeftOut {
            hits: 1,
            submissions: 2
        }
    );

    // Adopting that HIT type by name takes them in.
    let l = lab(&p);
    let plan = history::plan_adoption(&l, &[hit_type(&new_type)], &Quiet)
        .await
        .unwrap();
    assert_eq!(plan.workers(), 2);
    let adopted = history::adopt(&l, plan, false, 4, &Quiet).await.unwrap();
    assert!(adopted.failures.is_empty(), "{:?}", adopted.failures);
    for w in &before {
        assert!(p.granted(w), "{w} was not adopted");
    }
    // A HIT type the pool does not cover is refused, naming `exclude`.
    let (_, stranger) = post(
        &p,
        "Never covered",
        vec![does_not_exist("3SOMEONEELSESLIST")],
    );
    let refused = history::plan_adoption(&l, &[hit_type(&stranger)], &Quiet)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("exclude --hit-type"),
        "{refused}"
    );
}

/// A lab with its own exclusion qualification from before: its holders are
/// carried into the pool, and the HITs it guards count as the pool's, so
/// their earlier workers are excluded as the pool's own.
#[tokio::test]
async fn an_earlier_list_is_carried_over_and_the_hits_it_guards_become_the_pools() {
    let p = Pipeline::start().await;
    let old = p
        .double
        .create_qualification_type("The lab's old exclusion list");
    let holders = workers("OLDLIST", 3);
    for w in &holders {
        p.double.grant(&old, w, 1);
    }
    let (old_hit, old_type) = post(
        &p,
        "Study guarded by the old list",
        vec![does_not_exist(&old)],
    );
    let earlier = workers("OLDHIT", 2);
    seed_history(&p, &old_hit, &earlier);
    // Another study under the old list, which the lab had subscribed by hand.
    let (second_hit, second_type) = post(
        &p,
        "Second study guarded by the old list",
        vec![does_not_exist(&old)],
    );
    let second = workers("OLDSUB", 2);
    seed_history(&p, &second_hit, &second);
    let old_q = QualificationTypeId::parse(&old).unwrap();
    let l = lab(&p);
    subscribe::subscribe(&l.mturk, &l.ledger, &hit_type(&second_type), &p.queues.url)
        .await
        .unwrap();

    // Before: the old list's HITs are another list's, left alone.
    let report = run(&p, &settings(&p)).await;
    assert!(report.hit_types_subscribed.is_empty(), "{report:?}");
    assert!(report.backfilled_hit_types.is_empty(), "{report:?}");

    let carry = |dry_run: bool| {
        let (l, old_q) = (&l, &old_q);
        async move {
            let holders = history::holders_of(l, old_q).await.unwrap();
            history::carry_over(l, old_q, holders, dry_run, 4, &Quiet)
                .await
                .unwrap()
        }
    };
    let dry = carry(true).await;
    assert_eq!(dry.holders, 3);
    assert_eq!(dry.tally.excluded, 3);
    assert!(
        p.ledger.lists().await.unwrap().carried.is_empty(),
        "a dry run recorded the list"
    );
    assert!(!holders.iter().any(|w| p.granted(w)), "a dry run granted");

    let carried = carry(false).await;

    assert!(carried.failures.is_empty(), "{:?}", carried.failures);
    assert_eq!(carried.tally.excluded, 3);
    for w in &holders {
        assert!(p.granted(w), "{w} was not carried over");
    }
    assert_eq!(p.ledger.lists().await.unwrap().carried, [old_q]);
    assert_eq!(carried.marked_due, [hit_type(&second_type)]);
    // The pool's own list is refused.
    assert!(history::holders_of(&l, &p.qualification).await.is_err());

    let report = run(&p, &settings(&p)).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.hit_types_subscribed, [old_type.as_str()]);
    let mut backfilled = report.backfilled_hit_types.clone();
    backfilled.sort();
    let mut both = vec![old_type.clone(), second_type.clone()];
    both.sort();
    assert_eq!(backfilled, both);
    for w in earlier.iter().chain(&second) {
        assert!(
            p.granted(w),
            "{w}, of a HIT the old list guarded, was not excluded"
        );
    }
    assert!(report.history_left_out.is_empty(), "{report:?}");
    // The old list does not keep out whom the pool excludes from now on:
    // its live HITs still count as unguarded, for `coverage --fix`.
    assert_eq!(report.counts.carried, 2, "{report:?}");
    assert_eq!(report.counts.live_unguarded, 2, "{report:?}");
    p.assert_every_grant_silent();
}

/// `coverage --first-run` before the deploy: its prediction is what the
/// watch's first run then does.
#[tokio::test]
async fn the_first_run_predicted_before_the_deploy_is_the_first_run() {
    let p = Pipeline::start().await;
    let (ours, _) = post(&p, "Ours", vec![does_not_exist(p.qualification.as_str())]);
    seed_history(&p, &ours, &workers("PREOURS", 4));
    let (pilot, pilot_type) = post(&p, "Pilot", vec![]);
    seed_history(&p, &pilot, &workers("PREPILOT", 3));
    // A worker in both: excluded once.
    seed_history(&p, &ours, &workers("PREPILOT", 1));
    let (other, _) = post(
        &p,
        "Another list's",
        vec![does_not_exist("3ANOTHERLABSLIST")],
    );
    seed_history(&p, &other, &workers("PREOTHER", 2));
    let s = settings(&p);

    let predicted = predict(&p, &s).await;
    let report = run(&p, &s).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(predicted.failures.is_empty());
    let mut subscribed = report.hit_types_subscribed.clone();
    subscribed.sort();
    let mut predicted_types: Vec<String> = predicted
        .hit_types
        .iter()
        .filter(|t| t.covered)
        .map(|t| t.hit_type_id.to_string())
        .collect();
    predicted_types.sort();
    assert_eq!(predicted_types, subscribed);
    assert_eq!(predicted.subscribed, 2);
    assert_eq!(predicted.submissions, report.submissions_backfilled as u64);
    assert_eq!(predicted.submissions, 5);
    assert_eq!(predicted.workers, report.newly_excluded);
    assert_eq!(
        predicted.left_out,
        HistoryLeftOut {
            hits: 1,
            submissions: 3
        }
    );
    let recorded = recorded(&p, &pilot_type).await;
    assert_eq!(recorded.history_left_out, predicted.left_out);
}

/// `adopt` and a watch run take in the same history at once: the adoption
/// is recorded before its first grant, so the watch's backfill (due again
/// meanwhile) takes the history in too. Each worker is granted once, and
/// once both are done nothing is left out or due.
#[tokio::test]
async fn adopt_racing_a_watch_run_grants_each_worker_once() {
    let p = Pipeline::start().await;
    let (pilot, pilot_type) = post(&p, "Pilot adopted while the watch runs", vec![]);
    let history_workers = workers("RACE", 4);
    seed_history(&p, &pilot, &history_workers);
    assert!(run(&p, &settings(&p)).await.errors.is_empty());
    let t = hit_type(&pilot_type);
    p.ledger.record_backfill_due(&t).await.unwrap();
    let l = lab(&p);
    let plan = history::plan_adoption(&l, &[], &Quiet).await.unwrap();
    assert_eq!(plan.workers(), 4);

    let gate = p.double.hold_next("AssociateQualificationWithWorker", 1);
    let adopting = tokio::spawn({
        let l = l.clone();
        async move { history::adopt(&l, plan, false, 4, &Quiet).await }
    });
    tokio::time::timeout(Duration::from_secs(30), gate.arrived())
        .await
        .expect("adopt reached its first grant");
    let racing = run(&p, &settings(&p)).await;
    gate.open();
    let adopted = adopting.await.unwrap().unwrap();

    assert!(adopted.failures.is_empty(), "{:?}", adopted.failures);
    for w in &history_workers {
        assert!(p.granted(w), "{w} was not excluded");
        let grants = p
            .double
            .calls_to("AssociateQualificationWithWorker")
            .iter()
            .filter(|c| c.request.get("WorkerId").and_then(|v| v.as_str()) == Some(w))
            .count();
        assert_eq!(grants, 1, "{w} granted {grants} times");
    }
    assert!(racing.history_left_out.is_empty(), "{racing:?}");
    // The premise: the racing run went for the adopted history too, and a
    // worker whose grant adopt had in flight was left for a later run.
    assert!(
        racing.backfilled_hit_types.contains(&pilot_type)
            || racing.backfill_left.contains(&pilot_type),
        "{racing:?}"
    );
    assert!(
        racing
            .errors
            .iter()
            .all(|e| e.contains("another attempt is under way")),
        "{:?}",
        racing.errors
    );
    assert_eq!(adopted.tally.excluded + racing.newly_excluded, 4);
    // Whatever the racing run could not settle, the next one does.
    let next = run(&p, &settings(&p)).await;
    assert!(next.errors.is_empty(), "{:?}", next.errors);
    let sub = p.ledger.subscription(&t).await.unwrap().unwrap();
    assert!(!sub.backfill_due, "{sub:?}");
    assert!(sub.history_left_out.is_empty(), "{sub:?}");
    assert!(sub.history_adopted_at.is_some());
    p.assert_every_grant_silent();
}

/// The pool's start is when its ledger table was made: exact to the second
/// below, and the same on every read.
#[tokio::test]
async fn the_pools_start_is_when_its_table_was_made() {
    let before = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let p = Pipeline::start().await;
    let after = time::OffsetDateTime::now_utc();
    // Read later than a second after: "now" would not pass for the start.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let start = p.ledger.pool_start().await.unwrap();

    assert!(
        start >= before && start <= after,
        "{before} <= {start} <= {after}"
    );
    assert_eq!(start.nanosecond(), 0);
    assert_eq!(p.ledger.pool_start().await.unwrap(), start);
}

/// A guard moved a HIT, then subscribing its new HIT type failed: the move
/// was recorded before it was made, so the run that subscribes the new HIT
/// type later still leaves the HIT's history out.
#[tokio::test]
async fn a_hit_moved_by_a_guard_stays_moved_when_its_subscription_failed() {
    let p = Pipeline::start().await;
    let (hit, _) = post(&p, "Pilot, guard half done", vec![]);
    let before = workers("HALF", 2);
    seed_history(&p, &hit, &before);
    p.double.fail_next(
        Some("UpdateNotificationSettings"),
        2,
        Fault::ParameterValidation,
    );

    let first = run(&p, &guarding(&p)).await;

    // The guard's subscription of the new HIT type failed, and so did the
    // run's own attempt at the HIT type it found without a record.
    assert!(!first.errors.is_empty(), "the premise: subscribing failed");
    let new_type = p.double.hit_type_of(&hit).unwrap();
    assert!(
        p.ledger
            .subscription(&hit_type(&new_type))
            .await
            .unwrap()
            .is_none(),
        "the premise: the new HIT type has no record"
    );
    let second = run(&p, &guarding(&p)).await;
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert_eq!(second.hit_types_subscribed, [new_type.as_str()]);
    for w in &before {
        assert!(!p.granted(w), "{w}'s earlier work was taken as the pool's");
    }
    let sub = recorded(&p, &new_type).await;
    assert_eq!(
        sub.history_left_out,
        HistoryLeftOut {
            hits: 1,
            submissions: 2
        }
    );
}

/// A watch run that read the subscriptions before `adopt` recorded the
/// adoption must not write its count of history left out over the
/// adoption's, nor record its backfill done: the next run finishes.
#[tokio::test]
async fn a_watch_run_that_read_before_an_adoption_does_not_undo_it() {
    let p = Pipeline::start().await;
    let (pilot, pilot_type) = post(&p, "Pilot adopted under a running watch", vec![]);
    let history_workers = workers("UNDER", 3);
    seed_history(&p, &pilot, &history_workers);
    assert!(run(&p, &settings(&p)).await.errors.is_empty());
    let t = hit_type(&pilot_type);
    // A later submission the watch will backfill: its grant is held.
    p.double
        .add_assignment(&pilot, "A1UNDERLATER", AssignmentStatus::Submitted);
    p.ledger.record_backfill_due(&t).await.unwrap();
    let gate = p.double.hold_next("AssociateQualificationWithWorker", 1);
    let watching = tokio::spawn({
        let l = lab(&p);
        let s = settings(&p);
        async move {
            watch::run(
                &l,
                &s,
                tokio::time::Instant::now() + Duration::from_secs(60),
            )
            .await
        }
    });
    tokio::time::timeout(Duration::from_secs(30), gate.arrived())
        .await
        .expect("the watch reached its grant");

    let l = lab(&p);
    let plan = history::plan_adoption(&l, &[], &Quiet).await.unwrap();
    let adopted = history::adopt(&l, plan, false, 4, &Quiet).await.unwrap();
    assert!(adopted.failures.is_empty(), "{:?}", adopted.failures);
    gate.open();
    let stale = watching.await.unwrap();

    assert!(stale.errors.is_empty(), "{:?}", stale.errors);
    assert!(
        !stale.backfilled_hit_types.contains(&pilot_type),
        "a run that read before the adoption recorded its backfill done: {stale:?}"
    );
    let sub = p.ledger.subscription(&t).await.unwrap().unwrap();
    assert!(
        sub.history_left_out.is_empty(),
        "the adoption was undone: {sub:?}"
    );
    assert!(sub.backfill_due);
    for w in history_workers
        .iter()
        .map(String::as_str)
        .chain(["A1UNDERLATER"])
    {
        assert!(p.granted(w), "{w} not excluded");
    }
    let next = run(&p, &settings(&p)).await;
    assert!(next.errors.is_empty(), "{:?}", next.errors);
    let sub = p.ledger.subscription(&t).await.unwrap().unwrap();
    assert!(
        !sub.backfill_due && sub.history_left_out.is_empty(),
        "{sub:?}"
    );
}

/// The prediction with `GuardUnguardedHits` on: the live pilot is moved
/// into a new HIT type (subscribed, its history still left out), the
/// finished one is left alone (CoverUnguardedHits off).
#[tokio::test]
async fn the_first_run_predicted_with_the_guard_on_is_the_first_run() {
    let p = Pipeline::start().await;
    let (ours, _) = post(&p, "Ours", vec![does_not_exist(p.qualification.as_str())]);
    seed_history(&p, &ours, &workers("GOURS", 2));
    let (pilot, _) = post(&p, "Pilot to guard", vec![]);
    seed_history(&p, &pilot, &workers("GPILOT", 3));
    let (done, _) = post(&p, "Finished pilot", vec![]);
    seed_history(&p, &done, &workers("GDONE", 1));
    p.double.expire_hit(&done);
    let s = guarding(&p);
    let predicted = predict(&p, &s).await;
    // Submitted after the deploy (the prediction is made before it).
    submit_unnotified(&p, &pilot, &workers("GLATE", 1)).await;

    let report = run(&p, &s).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(predicted.subscribed, 2, "{predicted:?}");
    assert_eq!(predicted.subscribed, report.hit_types_subscribed.len());
    assert_eq!(predicted.submissions, 2);
    assert_eq!(
        report.submissions_backfilled, 3,
        "the two, and the later one"
    );
    assert_eq!(predicted.workers, 2);
    let left: u64 = report
        .history_left_out
        .iter()
        .map(|l| l.left_out.submissions)
        .sum();
    assert_eq!(predicted.left_out.submissions, 3);
    assert_eq!(left, predicted.left_out.submissions);
    assert!(
        !p.granted("A1GDONE0000"),
        "a finished unguarded HIT was covered"
    );
}
