//! What went wrong talking to MTurk: every SDK failure classified as
//! throttling, transient, refused or denied, MTurk's own text bounded and
//! kept free of worker ids.

use std::error::Error as StdError;

use aws_sdk_mturk::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::calls::is_throttling;
use crate::ids::{InvalidId, WorkerId};

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
    /// AWS refused the caller, not the request: no credentials, credentials
    /// it does not know or that expired, or an identity not allowed to call
    /// MTurk. Fixed by the lab's setup (profile, role, requester account
    /// link), after which the same request works.
    Denied,
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
    pub(super) source: Option<Box<dyn StdError + Send + Sync>>,
}

impl MturkError {
    pub fn turk_error_code(&self) -> Option<&str> {
        match &self.kind {
            MturkErrorKind::Rejected { turk_error_code } => turk_error_code.as_deref(),
            _ => None,
        }
    }

    /// MTurk no longer knows the HIT asked about: disposed (120 days after
    /// creation, or deleted), or it never existed.
    pub fn is_hit_gone(&self) -> bool {
        self.turk_error_code() == Some("AWS.MechanicalTurk.HITDoesNotExist")
    }

    /// The same error with the worker's id taken out of MTurk's text.
    /// MTurk echoes the ids it was sent (`"A1… is not a valid worker ID."`),
    /// and worker ids are personal data that must not reach the logs.
    pub(super) fn without_worker(mut self, worker: &WorkerId) -> Self {
        self.message = redact_worker(&self.message, worker);
        self
    }

    pub(super) fn unusable(operation: &'static str, err: InvalidId) -> Self {
        MturkError {
            operation,
            kind: MturkErrorKind::Unusable,
            message: format!("answer contains an unusable id: {err}"),
            source: Some(Box::new(err)),
        }
    }
}

/// The `TurkErrorCode` that MTurk's RequestError and ServiceFault carry.
pub(super) trait TurkCoded {
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

/// Calls `$apply!` with the error type of every MTurk operation this crate
/// uses: the one list that both `turk_coded!` and the retry classifier's
/// `throttled!` must cover, so a new operation cannot be missed by one.
macro_rules! each_operation_error {
    ($apply:ident) => {
        $apply!(
            aws_sdk_mturk::operation::get_assignment::GetAssignmentError,
            aws_sdk_mturk::operation::associate_qualification_with_worker::AssociateQualificationWithWorkerError,
            aws_sdk_mturk::operation::create_hit_type::CreateHITTypeError,
            aws_sdk_mturk::operation::create_hit_with_hit_type::CreateHITWithHITTypeError,
            aws_sdk_mturk::operation::create_qualification_type::CreateQualificationTypeError,
            aws_sdk_mturk::operation::disassociate_qualification_from_worker::DisassociateQualificationFromWorkerError,
            aws_sdk_mturk::operation::get_account_balance::GetAccountBalanceError,
            aws_sdk_mturk::operation::get_hit::GetHITError,
            aws_sdk_mturk::operation::get_qualification_type::GetQualificationTypeError,
            aws_sdk_mturk::operation::list_assignments_for_hit::ListAssignmentsForHITError,
            aws_sdk_mturk::operation::list_hits::ListHITsError,
            aws_sdk_mturk::operation::list_qualification_types::ListQualificationTypesError,
            aws_sdk_mturk::operation::list_workers_with_qualification_type::ListWorkersWithQualificationTypeError,
            aws_sdk_mturk::operation::send_test_event_notification::SendTestEventNotificationError,
            aws_sdk_mturk::operation::update_hit_type_of_hit::UpdateHITTypeOfHITError,
            aws_sdk_mturk::operation::update_notification_settings::UpdateNotificationSettingsError,
        );
    };
}

pub(super) use each_operation_error;

each_operation_error!(turk_coded);

pub(super) fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> MturkError
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
            let kind = if is_throttling(Some(code), Some(&message)) {
                MturkErrorKind::Throttled
            } else if DENIED_CODES.contains(&code) {
                MturkErrorKind::Denied
            } else if code == "ServiceFault" || code == "InternalFailure" || code.is_empty() {
                // An empty code means a body we could not read as an MTurk
                // error, such as a bare 5xx from a load balancer.
                MturkErrorKind::Transient
            } else {
                MturkErrorKind::Rejected { turk_error_code }
            };
            let shown_code = e.turk_error_code().unwrap_or(code);
            (kind, format!("{shown_code}: {}", bounded(&message)))
        }
        SdkError::TimeoutError(_) => (MturkErrorKind::Transient, "timed out".to_owned()),
        SdkError::DispatchFailure(d) => (
            MturkErrorKind::Transient,
            format!("could not reach MTurk ({d:?})"),
        ),
        SdkError::ResponseError(_) => (MturkErrorKind::Transient, "unreadable response".to_owned()),
        // The request was never sent because no credentials could be found.
        SdkError::ConstructionFailure(_) if caused_by_credentials(&err) => (
            MturkErrorKind::Denied,
            DisplayErrorContext(&err).to_string(),
        ),
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

/// The error codes AWS answers when it refuses the caller rather than the
/// request (signature, token, identity, IAM).
const DENIED_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredTokenException",
    "ExpiredToken",
    "AccessDeniedException",
    "AccessDenied",
];

/// Whether a request could not be built for want of credentials.
fn caused_by_credentials(err: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// How much of MTurk's own error text is kept: enough to read, bounded
/// whatever the service answers.
const MESSAGE_LIMIT: usize = 300;

fn bounded(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}\u{2026}", &message[..cut]),
        None => message.to_owned(),
    }
}

/// `text` with every occurrence of the worker's id replaced by `<worker>`.
pub fn redact_worker(text: &str, worker: &WorkerId) -> String {
    text.replace(worker.as_str(), "<worker>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::error::CredentialsError;
    use aws_sdk_mturk::config::http::HttpResponse;
    use aws_sdk_mturk::operation::get_assignment::GetAssignmentError;

    #[test]
    fn a_hit_is_gone_only_when_mturk_says_it_does_not_exist() {
        let rejected = |code: Option<&str>| MturkError {
            operation: "GetHIT",
            kind: MturkErrorKind::Rejected {
                turk_error_code: code.map(str::to_owned),
            },
            message: String::new(),
            source: None,
        };
        assert!(rejected(Some("AWS.MechanicalTurk.HITDoesNotExist")).is_hit_gone());
        assert!(!rejected(Some("AWS.MechanicalTurk.QualificationDoesNotExist")).is_hit_gone());
        assert!(!rejected(None).is_hit_gone());
    }

    /// "No credentials" never reaches MTurk: the SDK fails to build the
    /// request. It is a setup problem like a refused signature, told by its
    /// type whatever the SDK's wording.
    #[test]
    fn missing_credentials_are_denied() {
        let err = SdkError::<GetAssignmentError, HttpResponse>::construction_failure(
            CredentialsError::not_loaded("no profile, no environment variables"),
        );
        assert_eq!(classify("GetAssignment", err).kind, MturkErrorKind::Denied);
        let other = SdkError::<GetAssignmentError, HttpResponse>::construction_failure(
            std::io::Error::other("something else"),
        );
        assert!(matches!(
            classify("GetAssignment", other).kind,
            MturkErrorKind::Rejected { .. }
        ));
    }
}
