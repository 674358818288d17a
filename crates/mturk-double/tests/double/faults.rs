//! How the real SDK sees each error and fault: variants, codes, retries,
//! dispatch failures and timeouts.

use std::time::{Duration, Instant};

use crate::common::{error_code, mturk, mturk_with, quick_retries};
use aws_sdk_mturk::config::retry::RetryConfig;
use aws_sdk_mturk::config::timeout::TimeoutConfig;
use aws_sdk_mturk::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_mturk::operation::associate_qualification_with_worker::AssociateQualificationWithWorkerError;
use mturk_double::{Fault, MturkDouble, Outcome};

async fn double() -> MturkDouble {
    MturkDouble::start(None).await.expect("start the double")
}

fn request_error(code: &str) -> Fault {
    Fault::RequestError {
        code: code.to_owned(),
        message: format!("injected {code}"),
    }
}

#[tokio::test]
async fn sdk_maps_each_error_shape_to_its_variant() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("took-part");
    let associate = || {
        client
            .associate_qualification_with_worker()
            .qualification_type_id(&qual)
            .worker_id("A1WORKER")
            .send()
    };

    double.fail_next(None, 1, request_error("QualificationTypeDoesNotExist"));
    let err = associate().await.expect_err("RequestError");
    assert!(matches!(err, SdkError::ServiceError(_)));
    match err.into_service_error() {
        AssociateQualificationWithWorkerError::RequestError(e) => {
            assert_eq!(e.code(), Some("RequestError"));
            assert_eq!(
                e.turk_error_code(),
                Some("AWS.MechanicalTurk.QualificationTypeDoesNotExist")
            );
            assert_eq!(e.message(), Some("injected QualificationTypeDoesNotExist"));
        }
        other => panic!("expected RequestError, got {other:?}"),
    }

    double.fail_next(None, 1, Fault::ServiceFault);
    let err = associate().await.expect_err("ServiceFault");
    match err.into_service_error() {
        AssociateQualificationWithWorkerError::ServiceFault(e) => {
            assert_eq!(e.code(), Some("ServiceFault"));
            assert_eq!(e.turk_error_code(), Some("AWS.MechanicalTurk.ServiceFault"));
        }
        other => panic!("expected ServiceFault, got {other:?}"),
    }

    double.fail_next(None, 1, Fault::Throttle);
    let err = associate().await.expect_err("throttled");
    let service = err.into_service_error();
    // Not a modelled MTurk error: the SDK keeps it generic, identified by code.
    assert!(!matches!(
        service,
        AssociateQualificationWithWorkerError::RequestError(_)
            | AssociateQualificationWithWorkerError::ServiceFault(_)
    ));
    assert_eq!(service.code(), Some("ThrottlingException"));
    assert_eq!(service.message(), Some("Rate exceeded"));

    double.fail_next(None, 1, Fault::ParameterValidation);
    let err = associate().await.expect_err("validation");
    assert_eq!(
        err.into_service_error().code(),
        Some("ParameterValidationError")
    );

    double.fail_next(None, 1, Fault::Http500);
    let err = associate().await.expect_err("bare 500");
    match &err {
        SdkError::ServiceError(context) => assert_eq!(context.raw().status().as_u16(), 500),
        other => panic!("expected a service error, got {other:?}"),
    }
    assert_eq!(err.into_service_error().code(), None);

    associate().await.expect("no faults left");
    let outcomes: Vec<_> = double.calls().into_iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Fault("RequestError".to_owned()),
            Outcome::Fault("ServiceFault".to_owned()),
            Outcome::Fault("Throttle".to_owned()),
            Outcome::Fault("ParameterValidation".to_owned()),
            Outcome::Fault("Http500".to_owned()),
            Outcome::Answered,
        ]
    );
}

#[tokio::test]
async fn the_request_id_reaches_the_sdk() {
    use aws_sdk_mturk::operation::RequestId;
    let double = double().await;
    let out = mturk(&double)
        .get_account_balance()
        .send()
        .await
        .expect("balance");
    let expected = double.calls()[0].request_id.clone();
    assert_eq!(out.request_id().map(str::to_owned), expected);
}

#[tokio::test]
async fn throttling_is_retried_by_standard_retries() {
    let double = double().await;
    let client = mturk_with(&double, quick_retries(3), None);
    double.fail_next(Some("GetAccountBalance"), 2, Fault::Throttle);
    client
        .get_account_balance()
        .send()
        .await
        .expect("succeeds on attempt 3");
    let calls = double.calls_to("GetAccountBalance");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].outcome, Outcome::Fault("Throttle".to_owned()));
    assert_eq!(calls[1].outcome, Outcome::Fault("Throttle".to_owned()));
    assert_eq!(calls[2].outcome, Outcome::Answered);

    // Three throttles exhaust three attempts.
    double.fail_next(Some("GetAccountBalance"), 3, Fault::Throttle);
    let err = client
        .get_account_balance()
        .send()
        .await
        .expect_err("exhausted");
    assert_eq!(error_code(err).as_deref(), Some("ThrottlingException"));
    assert_eq!(double.call_count("GetAccountBalance"), 6);
}

#[tokio::test]
async fn throttling_with_retries_disabled_is_one_attempt() {
    let double = double().await;
    let client = mturk_with(&double, RetryConfig::disabled(), None);
    double.fail_next(None, 1, Fault::Throttle);
    let err = client
        .get_account_balance()
        .send()
        .await
        .expect_err("throttled");
    match err.into_service_error() {
        e if e.code() == Some("ThrottlingException") => {
            assert_eq!(e.message(), Some("Rate exceeded"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(double.call_count("GetAccountBalance"), 1);
}

#[tokio::test]
async fn transient_faults_are_retried_but_request_errors_are_not() {
    let double = double().await;
    let client = mturk_with(&double, quick_retries(3), None);
    double.fail_next(None, 1, Fault::ServiceFault);
    double.fail_next(None, 1, Fault::Http500);
    client
        .get_account_balance()
        .send()
        .await
        .expect("third attempt");
    assert_eq!(double.call_count("GetAccountBalance"), 3);

    double.clear_calls();
    double.fail_next(None, 1, request_error("HITDoesNotExist"));
    let err = client
        .get_account_balance()
        .send()
        .await
        .expect_err("not retried");
    assert_eq!(error_code(err).as_deref(), Some("RequestError"));
    assert_eq!(double.call_count("GetAccountBalance"), 1);

    double.fail_next(None, 1, Fault::ParameterValidation);
    client
        .get_account_balance()
        .send()
        .await
        .expect_err("not retried");
    assert_eq!(double.call_count("GetAccountBalance"), 2);
}

#[tokio::test]
async fn drop_surfaces_as_a_dispatch_failure() {
    let double = double().await;
    let client = mturk(&double);
    double.fail_next(Some("GetAccountBalance"), 1, Fault::Drop);
    let err = client
        .get_account_balance()
        .send()
        .await
        .expect_err("dropped");
    match &err {
        SdkError::DispatchFailure(failure) => {
            // hyper reports the half-answered request as an incomplete
            // message, which the SDK files as a transient connector error.
            assert!(failure.is_io() || failure.is_other(), "{failure:?}");
            assert!(
                format!("{failure:?}").contains("IncompleteMessage"),
                "{failure:?}"
            );
        }
        other => panic!("expected DispatchFailure, got {other:?}"),
    }
    assert_eq!(double.calls()[0].outcome, Outcome::Dropped);
    // The next request works (the SDK opens a new connection).
    client
        .get_account_balance()
        .send()
        .await
        .expect("after drop");
}

#[tokio::test]
async fn drop_is_retried_by_standard_retries_without_applying_the_request() {
    let double = double().await;
    let client = mturk_with(&double, quick_retries(3), None);
    let qual = double.create_qualification_type("took-part");
    double.fail_next(Some("AssociateQualificationWithWorker"), 1, Fault::Drop);
    client
        .associate_qualification_with_worker()
        .qualification_type_id(&qual)
        .worker_id("A1WORKER")
        .send()
        .await
        .expect("second attempt");
    assert_eq!(double.call_count("AssociateQualificationWithWorker"), 2);
    assert!(double.qualification(&qual, "A1WORKER").is_some());
}

#[tokio::test]
async fn delay_beyond_the_attempt_timeout_is_a_timeout_but_takes_effect() {
    let double = double().await;
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_millis(200))
        .build();
    let client = mturk_with(&double, RetryConfig::disabled(), Some(timeouts));
    let qual = double.create_qualification_type("took-part");
    double.fail_next(None, 1, Fault::Delay(Duration::from_secs(2)));
    let started = Instant::now();
    let err = client
        .associate_qualification_with_worker()
        .qualification_type_id(&qual)
        .worker_id("A1SLOW")
        .send()
        .await
        .expect_err("timeout");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The grant happened even though the answer never arrived in time: the
    // ambiguous case a retrying client has to be idempotent about.
    assert!(double.qualification(&qual, "A1SLOW").is_some());
    assert_eq!(
        double.calls()[0].outcome,
        Outcome::Fault("Delay".to_owned())
    );
}

#[tokio::test]
async fn delay_shorter_than_the_timeout_answers_normally() {
    let double = double().await;
    let client = mturk(&double);
    double.fail_next(None, 1, Fault::Delay(Duration::from_millis(150)));
    let started = Instant::now();
    client
        .get_account_balance()
        .send()
        .await
        .expect("slow but fine");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn latency_is_added_to_every_answer() {
    let double = double().await;
    let client = mturk(&double);
    double.set_latency(Duration::from_millis(100));
    let started = Instant::now();
    client.get_account_balance().send().await.expect("one");
    client.get_account_balance().send().await.expect("two");
    assert!(started.elapsed() >= Duration::from_millis(200));
    double.clear_faults();
    let started = Instant::now();
    client.get_account_balance().send().await.expect("three");
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn the_token_bucket_throttles_bursts_above_the_rate() {
    let double = double().await;
    let client = mturk(&double);
    double.throttle_above(Some(5.0));
    let started = Instant::now();
    let mut admitted = 0;
    for _ in 0..15 {
        match client.get_account_balance().send().await {
            Ok(_) => admitted += 1,
            Err(err) => assert_eq!(error_code(err).as_deref(), Some("ThrottlingException")),
        }
    }
    // A burst of 5, plus whatever refilled at 5/s while the loop ran.
    let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(admitted >= 5, "{admitted} admitted");
    assert!(
        admitted <= 5 + refilled,
        "{admitted} admitted, {refilled} refilled"
    );
    assert!(admitted < 15, "nothing was throttled");
    tokio::time::sleep(Duration::from_millis(450)).await;
    client.get_account_balance().send().await.expect("refilled");

    double.throttle_above(None);
    for _ in 0..10 {
        client.get_account_balance().send().await.expect("no limit");
    }
}

#[tokio::test]
async fn the_token_bucket_holds_a_steady_client_to_the_rate() {
    let double = double().await;
    // Standard retries back off on throttling; the client ends up at the rate.
    let retries = RetryConfig::standard()
        .with_max_attempts(10)
        .with_initial_backoff(Duration::from_millis(25))
        .with_max_backoff(Duration::from_millis(60));
    let client = mturk_with(&double, retries, None);
    double.throttle_above(Some(20.0));
    let started = Instant::now();
    for _ in 0..40 {
        client
            .get_account_balance()
            .send()
            .await
            .expect("eventually");
    }
    // 20 of burst, then 20 more at 20/s: about a second.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    let answered = double
        .calls()
        .iter()
        .filter(|c| c.outcome == Outcome::Answered)
        .count();
    assert_eq!(answered, 40);
    assert!(
        double.call_count("GetAccountBalance") > 40,
        "some attempts were throttled"
    );
}

#[tokio::test]
async fn fail_fraction_is_deterministic_per_seed() {
    async fn run(seed: u64) -> Vec<bool> {
        let double = double().await;
        let client = mturk(&double);
        double.fail_fraction(Some("GetAccountBalance"), 0.3, Fault::ServiceFault, seed);
        let mut failed = Vec::new();
        for _ in 0..60 {
            failed.push(client.get_account_balance().send().await.is_err());
        }
        // Other operations are untouched.
        client
            .list_hits()
            .send()
            .await
            .expect("ListHITs is not faulted");
        failed
    }
    let first = run(7).await;
    assert_eq!(first, run(7).await);
    assert_ne!(first, run(8).await);
    let failures = first.iter().filter(|f| **f).count();
    assert!((8..=30).contains(&failures), "{failures} of 60");
}

#[tokio::test]
async fn bodies_can_be_left_unrecorded_while_counts_continue() {
    let double = double().await;
    let client = mturk(&double);
    double.set_record_bodies(false);
    double.fail_next(None, 1, Fault::Throttle);
    let _ = client.get_account_balance().send().await;
    client.get_account_balance().send().await.expect("ok");
    let calls = double.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.request.is_null()));
    assert_eq!(calls[0].outcome, Outcome::Fault("Throttle".to_owned()));
    assert_eq!(double.call_count("GetAccountBalance"), 2);
    assert_eq!(double.total_calls(), 2);
}
