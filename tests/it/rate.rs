//! The rate limit on the wire: every MTurk call through `Mturk` waits for
//! the limiter, a throttled call is retried in-process (not by the SDK)
//! until the deadline, and the limiter hears every throttle.

use std::sync::Arc;
use std::time::Duration;

use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::ids::AssignmentId;
use mturk_exclusion::mturk::{retrying_throttles_until, Mturk, MturkEnvironment, MturkErrorKind};
use mturk_exclusion::rate::RateLimiter;
use testkit::mturk_double::{Fault, MturkDouble};
use tokio::time::Instant;

async fn setup(limiter: RateLimiter) -> (MturkDouble, Mturk, AssignmentId) {
    let double = MturkDouble::start(None).await.expect("double");
    let sdk = aws::load(
        None,
        Limits {
            initial_backoff: Duration::from_millis(10),
            ..Limits::default()
        },
    )
    .await;
    let client = aws::mturk_client(&sdk, MturkEnvironment::Sandbox, Some(&double.endpoint()));
    let hit_type = double.new_hit_type_id();
    let hit = double.create_hit(&hit_type);
    let submitted = double
        .submit_assignment(&hit, "A1RATEWORKER")
        .await
        .expect("submit");
    let id = AssignmentId::parse(&submitted.assignment_id).unwrap();
    double.clear_calls();
    (double, Mturk::new(client, Arc::new(limiter)), id)
}

#[tokio::test]
async fn a_throttled_call_waits_for_its_next_slot_and_succeeds() {
    let (double, mturk, id) = setup(RateLimiter::per_second(50.0)).await;
    double.fail_next(Some("GetAssignment"), 3, Fault::Throttle);
    let a = mturk
        .assignment(&id)
        .await
        .expect("retried past the throttles");
    assert_eq!(a.worker_id.as_str(), "A1RATEWORKER");
    // Three throttled attempts and the one that worked: the SDK retried none
    // of them on its own (it would have made more, unspaced).
    assert_eq!(double.call_count("GetAssignment"), 4);
    let seen = mturk.limiter().snapshot();
    assert_eq!(seen.throttles, 3);
    assert!(seen.cuts >= 1 && !seen.slow_start, "{seen:?}");
}

#[tokio::test]
async fn throttles_past_the_deadline_fail_as_throttled() {
    let (double, mturk, id) = setup(RateLimiter::per_second(4.0)).await;
    double.fail_next(Some("GetAssignment"), 1000, Fault::Throttle);
    let started = Instant::now();
    let err = retrying_throttles_until(started + Duration::from_secs(5), mturk.assignment(&id))
        .await
        .expect_err("throttled throughout");
    assert_eq!(err.kind, MturkErrorKind::Throttled);
    let calls = double.call_count("GetAssignment");
    assert!((2..50).contains(&calls), "{calls} attempts in 5 s");
    // It gave up when its next slot came too late, not after the deadline.
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// AWS refusing the caller (here its credentials) is told apart where the
/// error is read, so the CLI can point at the setup; it is not retried.
#[tokio::test]
async fn a_refused_caller_is_denied_and_not_retried() {
    let (double, mturk, id) = setup(RateLimiter::per_second(50.0)).await;
    double.fail_next(Some("GetAssignment"), 5, Fault::Unrecognized);
    let err = mturk.assignment(&id).await.expect_err("refused");
    assert_eq!(err.kind, MturkErrorKind::Denied, "{err}");
    assert_eq!(double.call_count("GetAssignment"), 1);
}

#[tokio::test]
async fn pages_wait_for_the_limiter_and_survive_throttling() {
    let (double, mturk, _) = setup(RateLimiter::per_second(50.0)).await;
    let qualification = double.create_qualification_type("Rate test");
    let q = mturk_exclusion::ids::QualificationTypeId::parse(&qualification).unwrap();
    for n in 0..250 {
        let w = mturk_exclusion::ids::WorkerId::parse(&format!("A{n:05}PAGES")).unwrap();
        mturk.exclude(&w, &q).await.unwrap();
    }
    double.clear_calls();
    double.fail_next(Some("ListWorkersWithQualificationType"), 2, Fault::Throttle);
    let (workers, odd) = mturk.workers_with(&q).await.expect("all pages");
    assert_eq!((workers.len(), odd.len()), (250, 0));
    // Three pages of at most 100, two throttled attempts retried.
    assert_eq!(double.call_count("ListWorkersWithQualificationType"), 5);
    assert_eq!(mturk.limiter().snapshot().throttles, 2);
}
