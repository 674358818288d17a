//! Errors: the ones the double answers on the wire, and the ones its Rust
//! seeding API returns.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// An error answer, in the shapes MTurk's AWS JSON 1.1 endpoint uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApiError {
    /// HTTP 400 `RequestError` with a `TurkErrorCode`.
    Request { code: String, message: String },
    /// HTTP 400: a parameter broke the model's constraints.
    ParameterValidation(String),
    /// HTTP 400: the body is not JSON of the right shape.
    Serialization(String),
    /// HTTP 400: no such operation, or not an AWS JSON 1.1 request at all.
    UnknownOperation(String),
    /// HTTP 500 `ServiceFault`.
    ServiceFault(String),
    /// HTTP 400 `ThrottlingException`.
    Throttling,
    /// HTTP 400 `UnrecognizedClientException`: the request's credentials
    /// are not an AWS account's (a common AWS error, not MTurk's own).
    UnrecognizedClient,
}

/// MTurk appends the server's clock in milliseconds to its messages; clients
/// that match on messages have to cope with it, so the double does it too.
fn stamped(message: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{message} ({millis})")
}

impl ApiError {
    /// A `RequestError`; `code` is the part after `AWS.MechanicalTurk.`.
    pub(crate) fn request(code: &str, message: impl AsRef<str>) -> Self {
        ApiError::Request {
            code: turk_code(code),
            message: stamped(message.as_ref()),
        }
    }

    pub(crate) fn service_fault() -> Self {
        ApiError::ServiceFault(stamped(
            "We encountered an internal error. Please try the request again.",
        ))
    }

    /// Coral's wording for a member that breaks a constraint.
    pub(crate) fn invalid(field: &str, value: impl fmt::Display, constraint: &str) -> Self {
        ApiError::ParameterValidation(format!(
            "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: {constraint}",
            lower_first(field)
        ))
    }

    pub(crate) fn missing(field: &str) -> Self {
        ApiError::ParameterValidation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(field)
        ))
    }

    pub(crate) fn status(&self) -> u16 {
        match self {
            ApiError::ServiceFault(_) => 500,
            _ => 400,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ApiError::Request { .. } => "RequestError",
            ApiError::ParameterValidation(_) => "ParameterValidationError",
            ApiError::Serialization(_) => "SerializationException",
            ApiError::UnknownOperation(_) => "UnknownOperationException",
            ApiError::ServiceFault(_) => "ServiceFault",
            ApiError::Throttling => "ThrottlingException",
            ApiError::UnrecognizedClient => "UnrecognizedClientException",
        }
    }

    pub(crate) fn body(&self) -> Value {
        match self {
            ApiError::Request { code, message } => json!({
                "__type": "RequestError",
                "Message": message,
                "TurkErrorCode": code,
            }),
            ApiError::ServiceFault(message) => json!({
                "__type": "ServiceFault",
                "Message": message,
                "TurkErrorCode": "AWS.MechanicalTurk.ServiceFault",
            }),
            ApiError::Throttling => json!({
                "__type": "ThrottlingException",
                "Message": "Rate exceeded",
            }),
            ApiError::UnrecognizedClient => json!({
                "__type": "UnrecognizedClientException",
                "message": "The security token included in the request is invalid.",
            }),
            ApiError::ParameterValidation(message)
            | ApiError::Serialization(message)
            | ApiError::UnknownOperation(message) => json!({
                "__type": self.kind(),
                "Message": message,
            }),
        }
    }
}

pub(crate) fn turk_code(code: &str) -> String {
    if code.starts_with("AWS.") {
        code.to_owned()
    } else {
        format!("AWS.MechanicalTurk.{code}")
    }
}

/// Coral names members in camelCase in its messages (`'workerId'`).
fn lower_first(field: &str) -> String {
    let mut chars = field.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Why a seeding call such as [`crate::MturkDouble::submit_assignment`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoubleError {
    /// No HIT with this id was ever created.
    UnknownHit(String),
    /// The HIT has been disposed of; workers can no longer reach it.
    HitDisposed(String),
    /// The worker already has an assignment on this HIT (MTurk lets a worker
    /// work on a HIT once).
    AlreadyWorked { hit_id: String, worker_id: String },
    /// Not a worker id MTurk would issue (`A` followed by upper-case letters and digits).
    InvalidWorkerId(String),
}

impl fmt::Display for DoubleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DoubleError::UnknownHit(id) => write!(f, "no HIT {id} in the double"),
            DoubleError::HitDisposed(id) => write!(f, "HIT {id} has been disposed of"),
            DoubleError::AlreadyWorked { hit_id, worker_id } => {
                write!(
                    f,
                    "worker {worker_id} already has an assignment on HIT {hit_id}"
                )
            }
            DoubleError::InvalidWorkerId(id) => write!(f, "{id:?} is not an MTurk worker id"),
        }
    }
}

impl std::error::Error for DoubleError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_get_the_mturk_prefix_once() {
        assert_eq!(
            turk_code("HITDoesNotExist"),
            "AWS.MechanicalTurk.HITDoesNotExist"
        );
        assert_eq!(
            turk_code("AWS.MechanicalTurk.HITDoesNotExist"),
            "AWS.MechanicalTurk.HITDoesNotExist"
        );
    }

    #[test]
    fn validation_messages_name_members_in_camel_case() {
        match ApiError::missing("WorkerId") {
            ApiError::ParameterValidation(m) => assert!(m.contains("'workerId'"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
