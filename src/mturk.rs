//! The lab's MTurk account, as the pipeline and the CLI use it.
//!
//! A concrete wrapper over `aws_sdk_mturk::Client` that owns three promises:
//! every call waits for the per-instance rate limit; a grant never emails the
//! worker (`SendNotification=false`, set here and nowhere else); and every
//! failure is classified as throttling, transient, or MTurk refusing the
//! request, so callers decide between retrying and giving up.

use std::error::Error as StdError;
use std::sync::Arc;

use aws_sdk_mturk::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_mturk::operation::associate_qualification_with_worker::AssociateQualificationWithWorkerError;
use aws_sdk_mturk::operation::get_assignment::GetAssignmentError;
use time::OffsetDateTime;

use crate::ids::{AssignmentId, HitId, HitTypeId, InvalidId, QualificationTypeId, WorkerId};
use crate::rate::RateLimiter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MturkEnvironment {
    Sandbox,
    Production,
}

impl MturkEnvironment {
    pub fn endpoint(self) -> &'static str {
        match self {
            MturkEnvironment::Sandbox => "https://mturk-requester-sandbox.us-east-1.amazonaws.com",
            MturkEnvironment::Production => "https://mturk-requester.us-east-1.amazonaws.com",
        }
    }
}

/// A submitted (or approved, or rejected) assignment, as MTurk reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub assignment_id: AssignmentId,
    pub worker_id: WorkerId,
    pub hit_id: HitId,
    pub hit_type_id: Option<HitTypeId>,
    pub status: String,
    pub submit_time: Option<OffsetDateTime>,
}

/// What went wrong talking to MTurk, in the terms a caller acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MturkErrorKind {
    /// "Rate exceeded": retry later, more slowly.
    Throttled,
    /// ServiceFault, 5xx, timeouts, broken connections: retry later.
    Transient,
    /// MTurk refused the request (RequestError, ParameterValidationError):
    /// retrying the same request will not help.
    Rejected { turk_error_code: Option<String> },
    /// MTurk answered with something we cannot use (for example an id that
    /// is not a plausible MTurk id).
    Unusable,
}

#[derive(Debug, thiserror::Error)]
#[error("MTurk {operation}: {message}")]
pub struct MturkError {
    pub operation: &'static str,
    pub kind: MturkErrorKind,
    pub message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl MturkError {
    pub fn turk_error_code(&self) -> Option<&str> {
        match &self.kind {
            MturkErrorKind::Rejected { turk_error_code } => turk_error_code.as_deref(),
            _ => None,
        }
    }

    fn unusable(operation: &'static str, err: InvalidId) -> Self {
        MturkError {
            operation,
            kind: MturkErrorKind::Unusable,
            message: format!("answer contains an unusable id: {err}"),
            source: Some(Box::new(err)),
        }
    }
}

/// The `TurkErrorCode` that MTurk's RequestError and ServiceFault carry.
trait TurkCoded {
    fn turk_error_code(&self) -> Option<&str>;
}

macro_rules! turk_coded {
    ($($error:ty),* $(,)?) => {$(
        impl TurkCoded for $error {
            fn turk_error_code(&self) -> Option<&str> {
                match self {
                    Self::RequestError(e) => e.turk_error_code(),
                    Self::ServiceFault(e) => e.turk_error_code(),
                    _ => None,
                }
            }
        }
    )*};
}

turk_coded!(GetAssignmentError, AssociateQualificationWithWorkerError);

fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> MturkError
where
    E: ProvideErrorMetadata + TurkCoded + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let code = e.code().unwrap_or_default();
            let message = e.message().unwrap_or("no message").to_owned();
            let turk_error_code = e.turk_error_code().map(str::to_owned);
            let kind = if code.contains("Throttl") || message.contains("Rate exceeded") {
                MturkErrorKind::Throttled
            } else if code == "ServiceFault" || code == "InternalFailure" || code.is_empty() {
                // An empty code means a body we could not read as an MTurk
                // error, such as a bare 5xx from a load balancer.
                MturkErrorKind::Transient
            } else {
                MturkErrorKind::Rejected { turk_error_code }
            };
            let shown_code = e.turk_error_code().unwrap_or(code);
            (kind, format!("{shown_code}: {message}"))
        }
        SdkError::TimeoutError(_) => (MturkErrorKind::Transient, "timed out".to_owned()),
        SdkError::DispatchFailure(d) => (
            MturkErrorKind::Transient,
            format!("could not reach MTurk ({d:?})"),
        ),
        SdkError::ResponseError(_) => (MturkErrorKind::Transient, "unreadable response".to_owned()),
        _ => (
            MturkErrorKind::Rejected {
                turk_error_code: None,
            },
            err.to_string(),
        ),
    };
    MturkError {
        operation,
        kind,
        message,
        source: Some(Box::new(err)),
    }
}

#[derive(Clone)]
pub struct Mturk {
    client: aws_sdk_mturk::Client,
    limiter: Arc<RateLimiter>,
}

impl Mturk {
    pub fn new(client: aws_sdk_mturk::Client, limiter: Arc<RateLimiter>) -> Self {
        Mturk { client, limiter }
    }

    /// Who did an assignment. MTurk only answers for Submitted, Approved or
    /// Rejected assignments.
    pub async fn assignment(&self, id: &AssignmentId) -> Result<Assignment, MturkError> {
        const OP: &str = "GetAssignment";
        self.limiter.acquire().await;
        let out = self
            .client
            .get_assignment()
            .assignment_id(id.as_str())
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        let missing = |what: &str| MturkError {
            operation: OP,
            kind: MturkErrorKind::Unusable,
            message: format!("answer for assignment {id} has no {what}"),
            source: None,
        };
        let a = out.assignment.ok_or_else(|| missing("Assignment"))?;
        let worker = a.worker_id.as_deref().ok_or_else(|| missing("WorkerId"))?;
        let hit = a.hit_id.as_deref().ok_or_else(|| missing("HITId"))?;
        let hit_type_id = out
            .hit
            .and_then(|h| h.hit_type_id)
            .map(|t| HitTypeId::parse(&t))
            .transpose()
            .map_err(|e| MturkError::unusable(OP, e))?;
        Ok(Assignment {
            assignment_id: id.clone(),
            worker_id: WorkerId::parse(worker).map_err(|e| MturkError::unusable(OP, e))?,
            hit_id: HitId::parse(hit).map_err(|e| MturkError::unusable(OP, e))?,
            hit_type_id,
            status: a
                .assignment_status
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            submit_time: a
                .submit_time
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
        })
    }

    /// Grants the exclusion qualification, silently.
    ///
    /// `SendNotification` defaults to true on MTurk, which emails the worker;
    /// this is the only place the project grants, and it always says false.
    /// Granting again is harmless, which is what makes redelivery safe.
    pub async fn exclude(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
    ) -> Result<(), MturkError> {
        self.limiter.acquire().await;
        self.client
            .associate_qualification_with_worker()
            .qualification_type_id(qualification.as_str())
            .worker_id(worker.as_str())
            .integer_value(1)
            .send_notification(false)
            .send()
            .await
            .map_err(|e| classify("AssociateQualificationWithWorker", e))?;
        Ok(())
    }
}
