//! The AWS JSON 1.1 framing, checked with raw HTTP so that nothing in the SDK
//! papers over a mistake.

use crate::common::{raw, raw_call};
use mturk_double::{Fault, MturkDouble, Outcome};
use serde_json::json;

async fn double() -> MturkDouble {
    MturkDouble::start(None).await.expect("start the double")
}

#[tokio::test]
async fn success_has_json_content_type_and_request_id() {
    let double = double().await;
    let response = raw_call(&double, "GetAccountBalance", "{}")
        .await
        .expect("an answer");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    let request_id = response.header("x-amzn-requestid").expect("request id");
    assert_eq!(request_id.len(), 36);
    assert_eq!(response.json(), json!({"AvailableBalance": "10000.00"}));
}

#[tokio::test]
async fn empty_body_counts_as_empty_object() {
    let double = double().await;
    let response = raw_call(&double, "GetAccountBalance", "")
        .await
        .expect("answer");
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn unknown_operation_is_a_400_unknown_operation_exception() {
    let double = double().await;
    let response = raw_call(&double, "CreateHIT", "{}").await.expect("answer");
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["__type"], "UnknownOperationException");

    let response = raw(
        &double,
        "POST",
        "/",
        &[("Content-Type", "application/x-amz-json-1.1")],
        b"{}",
    )
    .await
    .expect("answer");
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["__type"], "UnknownOperationException");

    let response = raw(
        &double,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "DynamoDB_20120810.GetItem"),
        ],
        b"{}",
    )
    .await
    .expect("answer");
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["__type"], "UnknownOperationException");
    assert_eq!(double.calls()[2].operation, "DynamoDB_20120810.GetItem");
}

#[tokio::test]
async fn wrong_method_path_or_content_type_is_rejected() {
    let double = double().await;
    let target = [
        ("Content-Type", "application/x-amz-json-1.1"),
        (
            "X-Amz-Target",
            "MTurkRequesterServiceV20170117.GetAccountBalance",
        ),
    ];
    for (method, path) in [("GET", "/"), ("PUT", "/"), ("POST", "/other")] {
        let response = raw(&double, method, path, &target, b"{}")
            .await
            .expect("answer");
        assert_eq!(response.status, 400, "{method} {path}");
        assert_eq!(response.json()["__type"], "UnknownOperationException");
    }
    let response = raw(
        &double,
        "POST",
        "/",
        &[
            ("Content-Type", "text/plain"),
            (
                "X-Amz-Target",
                "MTurkRequesterServiceV20170117.GetAccountBalance",
            ),
        ],
        b"{}",
    )
    .await
    .expect("answer");
    assert_eq!(response.status, 400);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_serialization_exceptions() {
    let double = double().await;
    for body in [
        "{not json",
        "[1,2]",
        "\"text\"",
        "{\"MaxResults\":\"ten\"}",
        "{\"MaxResults\":1.5}",
    ] {
        let response = raw_call(&double, "ListHITs", body).await.expect("answer");
        assert_eq!(response.status, 400, "{body}");
        assert_eq!(
            response.json()["__type"],
            "SerializationException",
            "{body}"
        );
    }
    let response = raw_call(
        &double,
        "AssociateQualificationWithWorker",
        r#"{"QualificationTypeId":"3Q","WorkerId":"A1","SendNotification":"yes"}"#,
    )
    .await
    .expect("answer");
    assert_eq!(response.json()["__type"], "SerializationException");
    // Calls are recorded as sent, even when they are not JSON.
    assert_eq!(double.calls()[0].request, json!("{not json"));
}

#[tokio::test]
async fn invalid_bytes_do_not_break_the_server() {
    let double = double().await;
    let response = raw(
        &double,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "MTurkRequesterServiceV20170117.ListHITs"),
        ],
        &[0xff, 0xfe, 0x00, b'{'],
    )
    .await
    .expect("answer");
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["__type"], "SerializationException");
    let response = raw_call(&double, "GetAccountBalance", "{}")
        .await
        .expect("answer");
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn missing_required_members_are_parameter_validation_errors() {
    let double = double().await;
    for (operation, body) in [
        ("GetAssignment", "{}"),
        ("AssociateQualificationWithWorker", r#"{"WorkerId":"A1"}"#),
        ("ListQualificationTypes", "{}"),
        ("ListAssignmentsForHIT", r#"{"HITId":null}"#),
    ] {
        let response = raw_call(&double, operation, body).await.expect("answer");
        assert_eq!(response.status, 400, "{operation}");
        let error = response.json();
        assert_eq!(error["__type"], "ParameterValidationError", "{operation}");
        assert!(error["Message"]
            .as_str()
            .is_some_and(|m| m.contains("must not be null")));
    }
}

#[tokio::test]
async fn faults_on_the_wire() {
    let double = double().await;
    let cases = [
        (Fault::Throttle, 400, Some("ThrottlingException")),
        (Fault::ServiceFault, 500, Some("ServiceFault")),
        (
            Fault::ParameterValidation,
            400,
            Some("ParameterValidationError"),
        ),
        (
            Fault::RequestError {
                code: "HITDoesNotExist".to_owned(),
                message: "gone".to_owned(),
            },
            400,
            Some("RequestError"),
        ),
        (Fault::Http500, 500, None),
    ];
    for (fault, status, error_type) in cases {
        double.fail_next(Some("ListHITs"), 1, fault.clone());
        let response = raw_call(&double, "ListHITs", "{}").await.expect("answer");
        assert_eq!(response.status, status, "{fault:?}");
        match error_type {
            Some(error_type) => {
                let body = response.json();
                assert_eq!(body["__type"], error_type, "{fault:?}");
                assert!(response.header("x-amzn-requestid").is_some());
            }
            None => {
                assert!(response
                    .header("content-type")
                    .is_some_and(|ct| ct.starts_with("text/plain")));
                assert_eq!(response.body, "Internal Server Error");
            }
        }
    }
    let calls = double.calls();
    let throttled = raw_call(&double, "GetAccountBalance", "{}")
        .await
        .expect("answer");
    assert_eq!(throttled.status, 200, "faults were for ListHITs only");
    assert_eq!(calls[0].outcome, Outcome::Fault("Throttle".to_owned()));
    assert_eq!(calls[4].outcome, Outcome::Fault("Http500".to_owned()));

    double.fail_next(
        Some("ListHITs"),
        1,
        Fault::RequestError {
            code: "HITDoesNotExist".to_owned(),
            message: "gone".to_owned(),
        },
    );
    let body = raw_call(&double, "ListHITs", "{}")
        .await
        .expect("answer")
        .json();
    assert_eq!(body["TurkErrorCode"], "AWS.MechanicalTurk.HITDoesNotExist");
    assert_eq!(body["Message"], "gone");
    let body = raw_call(&double, "ListHITs", "{}")
        .await
        .expect("answer")
        .json();
    assert_eq!(body["NumResults"], 0);
}

#[tokio::test]
async fn drop_closes_without_a_response_and_is_recorded() {
    let double = double().await;
    double.fail_next(None, 1, Fault::Drop);
    assert!(raw_call(&double, "GetAccountBalance", "{}").await.is_none());
    let calls = double.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, Outcome::Dropped);
    assert_eq!(calls[0].status, None);
    assert!(raw_call(&double, "GetAccountBalance", "{}").await.is_some());
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let double = double().await;
    assert!(raw_call(&double, "GetAccountBalance", "{}").await.is_some());
    double.shutdown();
    // Aborting is asynchronous; give the runtime a moment to drop the listener.
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        if tokio::net::TcpStream::connect(double.local_addr())
            .await
            .is_err()
        {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the double still accepts connections after shutdown"
    );
}
