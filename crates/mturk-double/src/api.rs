//! The operations: request JSON in, response JSON (or an MTurk error) out.
//!
//! Every handler runs with the state lock held and must not block; anything
//! that has to wait (notification delivery) is handed back as a
//! [`PendingDelivery`] for the caller to perform after the lock is released.

use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::ids::{decode_token, encode_token};
use crate::model::{
    assignment_json, hit_json, qual_type_json, qualification_json, AssignmentStatus, GrantStatus,
    HitTypeProps, Model, NotificationSetting, QualType,
};
use crate::notify::{document, EventIds, PendingDelivery, EVENT_DOC_VERSION, EVENT_TYPES};

/// The operations the double implements, by their `X-Amz-Target` suffix.
pub const OPERATIONS: &[&str] = &[
    "GetAssignment",
    "GetHIT",
    "AssociateQualificationWithWorker",
    "DisassociateQualificationFromWorker",
    "ListAssignmentsForHIT",
    "ListWorkersWithQualificationType",
    "ListHITs",
    "CreateQualificationType",
    "GetQualificationType",
    "ListQualificationTypes",
    "UpdateNotificationSettings",
    "SendTestEventNotification",
    "GetAccountBalance",
    "CreateHITType",
    "CreateHITWithHITType",
    "UpdateHITTypeOfHIT",
];

pub(crate) struct Reply {
    pub body: Value,
    pub deliveries: Vec<PendingDelivery>,
}

impl From<Value> for Reply {
    fn from(body: Value) -> Self {
        Reply {
            body,
            deliveries: Vec::new(),
        }
    }
}

/// `input` is a JSON object (the wire layer has checked).
pub(crate) fn dispatch(
    model: &mut Model,
    operation: &str,
    input: Value,
    now: SystemTime,
) -> Result<Reply, ApiError> {
    let body = match operation {
        "GetAssignment" => get_assignment(model, parse(input)?, now)?,
        "GetHIT" => get_hit(model, parse(input)?, now)?,
        "AssociateQualificationWithWorker" => associate(model, parse(input)?, now)?,
        "DisassociateQualificationFromWorker" => disassociate(model, parse(input)?)?,
        "ListAssignmentsForHIT" => list_assignments_for_hit(model, parse(input)?)?,
        "ListWorkersWithQualificationType" => list_workers_with(model, parse(input)?)?,
        "ListHITs" => list_hits(model, parse(input)?, now)?,
        "CreateQualificationType" => create_qualification_type(model, parse(input)?, now)?,
        "GetQualificationType" => get_qualification_type(model, parse(input)?)?,
        "ListQualificationTypes" => list_qualification_types(model, parse(input)?)?,
        "UpdateNotificationSettings" => update_notification_settings(model, parse(input)?)?,
        "SendTestEventNotification" => {
            return send_test_event_notification(model, parse(input)?, now)
        }
        "GetAccountBalance" => json!({ "AvailableBalance": "10000.00" }),
        "CreateHITType" => create_hit_type(model, parse(input)?)?,
        "CreateHITWithHITType" => create_hit_with_hit_type(model, parse(input)?, now)?,
        "UpdateHITTypeOfHIT" => update_hit_type_of_hit(model, parse(input)?)?,
        other => {
            return Err(ApiError::UnknownOperation(format!(
                "Operation {other} is not supported by MTurkRequesterServiceV20170117."
            )))
        }
    };
    Ok(body.into())
}

fn parse<T: DeserializeOwned>(input: Value) -> Result<T, ApiError> {
    serde_json::from_value(input)
        .map_err(|e| ApiError::Serialization(format!("Could not read the request: {e}")))
}

fn required<'a>(field: &str, value: &'a Option<String>) -> Result<&'a str, ApiError> {
    value.as_deref().ok_or_else(|| ApiError::missing(field))
}

fn upper_alnum(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// MTurk's `EntityId`: 1 to 64 of `[A-Z0-9]`.
fn entity<'a>(field: &str, value: &'a Option<String>) -> Result<&'a str, ApiError> {
    let id = required(field, value)?;
    if id.is_empty() || id.len() > 64 || !upper_alnum(id) {
        return Err(ApiError::invalid(
            field,
            id,
            "Member must satisfy regular expression pattern: ^[A-Z0-9]+$",
        ));
    }
    Ok(id)
}

pub(crate) fn is_worker_id(id: &str) -> bool {
    id.len() >= 2 && id.len() <= 64 && id.starts_with('A') && upper_alnum(id)
}

/// MTurk's `CustomerId`: `A` then upper-case letters and digits.
fn worker<'a>(model: &Model, field: &str, value: &'a Option<String>) -> Result<&'a str, ApiError> {
    let id = required(field, value)?;
    if !is_worker_id(id) {
        return Err(ApiError::invalid(
            field,
            id,
            "Member must satisfy regular expression pattern: ^A[A-Z0-9]+$",
        ));
    }
    if model.foreign_workers.contains(id) {
        // What a production worker id gets in the sandbox, and vice versa.
        return Err(ApiError::ParameterValidation(format!(
            "{id} is not a valid worker ID."
        )));
    }
    Ok(id)
}

fn max_results(value: Option<i32>) -> Result<usize, ApiError> {
    match value {
        None => Ok(10),
        Some(n) if n < 1 => Err(ApiError::invalid(
            "MaxResults",
            n,
            "Member must have value greater than or equal to 1",
        )),
        Some(n) if n > 100 => Err(ApiError::invalid(
            "MaxResults",
            n,
            "Member must have value less than or equal to 100",
        )),
        Some(n) => Ok(n as usize),
    }
}

fn start(token: &Option<String>, listing: &str, scope: &str) -> Result<usize, ApiError> {
    match token {
        None => Ok(0),
        Some(token) => decode_token(token, listing, scope).ok_or_else(|| {
            ApiError::request(
                "InvalidParameterValue",
                "The value of NextToken is not valid for this request.",
            )
        }),
    }
}

/// Takes up to `max` items and reports where the next page starts.
fn page<T>(mut matching: impl Iterator<Item = (usize, T)>, max: usize) -> (Vec<T>, Option<usize>) {
    let items: Vec<T> = matching.by_ref().take(max).map(|(_, item)| item).collect();
    let next = matching.next().map(|(position, _)| position);
    (items, next)
}

fn listing(
    key: &str,
    items: Vec<Value>,
    next: Option<usize>,
    listing_name: &str,
    scope: &str,
) -> Value {
    let mut out = Map::new();
    out.insert("NumResults".into(), json!(items.len()));
    out.insert(key.into(), Value::Array(items));
    if let Some(position) = next {
        out.insert(
            "NextToken".into(),
            json!(encode_token(listing_name, scope, position)),
        );
    }
    Value::Object(out)
}

fn qual_type_missing(id: &str) -> ApiError {
    ApiError::request(
        "QualificationTypeDoesNotExist",
        format!("QualificationType {id} does not exist."),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetAssignmentInput {
    assignment_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetHitInput {
    #[serde(rename = "HITId")]
    hit_id: Option<String>,
}

/// `GetHIT`: a disposed or unknown HIT is `AWS.MechanicalTurk.HITDoesNotExist`.
fn get_hit(model: &Model, input: GetHitInput, now: SystemTime) -> Result<Value, ApiError> {
    let id = entity("HITId", &input.hit_id)?;
    let hit = model
        .live_hit(id)
        .ok_or_else(|| ApiError::request("HITDoesNotExist", format!("Hit {id} does not exist.")))?;
    Ok(json!({ "HIT": hit_json(hit, now) }))
}

fn get_assignment(
    model: &Model,
    input: GetAssignmentInput,
    now: SystemTime,
) -> Result<Value, ApiError> {
    let id = entity("AssignmentId", &input.assignment_id)?;
    let missing = || {
        ApiError::request(
            "AssignmentDoesNotExist",
            format!("Assignment {id} does not exist."),
        )
    };
    let assignment = model
        .assignments
        .get(id)
        .filter(|a| a.status.visible())
        .ok_or_else(missing)?;
    let hit = model.live_hit(&assignment.hit_id).ok_or_else(missing)?;
    Ok(json!({
        "Assignment": assignment_json(assignment, hit),
        "HIT": hit_json(hit, now),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssociateInput {
    qualification_type_id: Option<String>,
    worker_id: Option<String>,
    integer_value: Option<i32>,
    // Read only so that a value of the wrong type is refused like MTurk does.
    #[allow(dead_code)]
    send_notification: Option<bool>,
}

fn associate(model: &mut Model, input: AssociateInput, now: SystemTime) -> Result<Value, ApiError> {
    let qual_id = entity("QualificationTypeId", &input.qualification_type_id)?;
    let worker_id = worker(model, "WorkerId", &input.worker_id)?;
    if model.qual_type(qual_id).is_none() {
        return Err(qual_type_missing(qual_id));
    }
    // MTurk's documented default when the value is left out.
    let value = input.integer_value.unwrap_or(1);
    model.grant(qual_id, worker_id, value, now);
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DisassociateInput {
    worker_id: Option<String>,
    qualification_type_id: Option<String>,
    // Read only so that a value of the wrong type is refused like MTurk does.
    #[allow(dead_code)]
    reason: Option<String>,
}

fn disassociate(model: &mut Model, input: DisassociateInput) -> Result<Value, ApiError> {
    let qual_id = entity("QualificationTypeId", &input.qualification_type_id)?;
    let worker_id = worker(model, "WorkerId", &input.worker_id)?;
    if model.qual_type(qual_id).is_none() {
        return Err(qual_type_missing(qual_id));
    }
    if !model.revoke(qual_id, worker_id) {
        return Err(ApiError::request(
            "QualificationDoesNotExist",
            format!("You requested a Qualification that does not exist: worker {worker_id} does not hold {qual_id}."),
        ));
    }
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAssignmentsInput {
    #[serde(rename = "HITId")]
    hit_id: Option<String>,
    next_token: Option<String>,
    max_results: Option<i32>,
    assignment_statuses: Option<Vec<String>>,
}

fn list_assignments_for_hit(model: &Model, input: ListAssignmentsInput) -> Result<Value, ApiError> {
    let hit_id = entity("HITId", &input.hit_id)?;
    let max = max_results(input.max_results)?;
    let mut statuses = Vec::new();
    for status in input.assignment_statuses.iter().flatten() {
        let parsed = AssignmentStatus::from_api(status).ok_or_else(|| {
            ApiError::invalid(
                "AssignmentStatuses",
                status,
                "Member must satisfy enum value set: [Submitted, Approved, Rejected]",
            )
        })?;
        if !statuses.contains(&parsed) {
            statuses.push(parsed);
        }
    }
    let scope = format!(
        "{hit_id}|{}",
        statuses
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let from = start(&input.next_token, "ListAssignmentsForHIT", &scope)?;
    let hit = model.live_hit(hit_id).ok_or_else(|| {
        ApiError::request("HITDoesNotExist", format!("Hit {hit_id} does not exist."))
    })?;
    let matching = hit
        .assignments
        .iter()
        .enumerate()
        .skip(from)
        .filter_map(|(position, id)| model.assignments.get(id).map(|a| (position, a)))
        .filter(|(_, a)| {
            a.status.visible() && (statuses.is_empty() || statuses.contains(&a.status))
        });
    let (items, next) = page(matching, max);
    let items = items.into_iter().map(|a| assignment_json(a, hit)).collect();
    Ok(listing(
        "Assignments",
        items,
        next,
        "ListAssignmentsForHIT",
        &scope,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListWorkersInput {
    qualification_type_id: Option<String>,
    status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i32>,
}

fn list_workers_with(model: &Model, input: ListWorkersInput) -> Result<Value, ApiError> {
    let qual_id = entity("QualificationTypeId", &input.qualification_type_id)?;
    let max = max_results(input.max_results)?;
    // Without a Status, MTurk lists the workers who hold the qualification now.
    let status = match input.status.as_deref() {
        None | Some("Granted") => GrantStatus::Granted,
        Some("Revoked") => GrantStatus::Revoked,
        Some(other) => {
            return Err(ApiError::invalid(
                "Status",
                other,
                "Member must satisfy enum value set: [Granted, Revoked]",
            ))
        }
    };
    let scope = format!("{qual_id}|{}", status.as_str());
    let from = start(
        &input.next_token,
        "ListWorkersWithQualificationType",
        &scope,
    )?;
    if model.qual_type(qual_id).is_none() {
        return Err(qual_type_missing(qual_id));
    }
    let (items, next) =
        match model.holders.get(qual_id) {
            Some(holders) => {
                let matching = holders.order.iter().enumerate().skip(from).filter_map(
                    |(position, worker_id)| {
                        holders
                            .grants
                            .get(worker_id)
                            .filter(|grant| grant.status == status)
                            .map(|grant| (position, qualification_json(qual_id, worker_id, grant)))
                    },
                );
                page(matching, max)
            }
            None => (Vec::new(), None),
        };
    Ok(listing(
        "Qualifications",
        items,
        next,
        "ListWorkersWithQualificationType",
        &scope,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListHitsInput {
    next_token: Option<String>,
    max_results: Option<i32>,
}

fn list_hits(model: &Model, input: ListHitsInput, now: SystemTime) -> Result<Value, ApiError> {
    let max = max_results(input.max_results)?;
    let from = start(&input.next_token, "ListHITs", "")?;
    let matching = model
        .hits
        .iter()
        .enumerate()
        .skip(from)
        .filter(|(_, hit)| !hit.disposed);
    let (items, next) = page(matching, max);
    let items = items.into_iter().map(|hit| hit_json(hit, now)).collect();
    Ok(listing("HITs", items, next, "ListHITs", ""))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateQualificationTypeInput {
    name: Option<String>,
    keywords: Option<String>,
    description: Option<String>,
    qualification_type_status: Option<String>,
    retry_delay_in_seconds: Option<i64>,
    test: Option<String>,
    answer_key: Option<String>,
    test_duration_in_seconds: Option<i64>,
    auto_granted: Option<bool>,
    auto_granted_value: Option<i32>,
}

fn qual_type_status(value: &str) -> Result<(), ApiError> {
    match value {
        "Active" | "Inactive" => Ok(()),
        other => Err(ApiError::invalid(
            "QualificationTypeStatus",
            other,
            "Member must satisfy enum value set: [Active, Inactive]",
        )),
    }
}

fn create_qualification_type(
    model: &mut Model,
    input: CreateQualificationTypeInput,
    now: SystemTime,
) -> Result<Value, ApiError> {
    let name = required("Name", &input.name)?;
    let description = required("Description", &input.description)?;
    let status = required("QualificationTypeStatus", &input.qualification_type_status)?;
    qual_type_status(status)?;
    if name.trim().is_empty() {
        return Err(ApiError::request(
            "InvalidParameterValue",
            "The Name of a QualificationType must not be empty.",
        ));
    }
    let auto_granted = input.auto_granted.unwrap_or(false);
    if auto_granted && input.test.is_some() {
        return Err(ApiError::request(
            "InvalidParameterValue",
            "A QualificationType cannot have both a Test and AutoGranted set to true.",
        ));
    }
    if model.qual_name_taken(name) {
        return Err(ApiError::request(
            "QualificationTypeAlreadyExists",
            "You have already created a QualificationType with this name. A QualificationType's name must be unique among all of the QualificationTypes created by the same user.",
        ));
    }
    let id = model.add_qual_type(QualType {
        id: String::new(),
        name: name.to_owned(),
        description: description.to_owned(),
        keywords: input.keywords,
        status: status.to_owned(),
        auto_granted,
        auto_granted_value: input.auto_granted_value,
        creation: now,
        test: input.test,
        answer_key: input.answer_key,
        test_duration: input.test_duration_in_seconds,
        retry_delay: input.retry_delay_in_seconds,
    });
    let qual = model.qual_type(&id).ok_or_else(ApiError::service_fault)?;
    Ok(json!({ "QualificationType": qual_type_json(qual) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQualificationTypeInput {
    qualification_type_id: Option<String>,
}

fn get_qualification_type(
    model: &Model,
    input: GetQualificationTypeInput,
) -> Result<Value, ApiError> {
    let id = entity("QualificationTypeId", &input.qualification_type_id)?;
    let qual = model.qual_type(id).ok_or_else(|| qual_type_missing(id))?;
    Ok(json!({ "QualificationType": qual_type_json(qual) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListQualificationTypesInput {
    query: Option<String>,
    must_be_requestable: Option<bool>,
    must_be_owned_by_caller: Option<bool>,
    next_token: Option<String>,
    max_results: Option<i32>,
}

fn list_qualification_types(
    model: &Model,
    input: ListQualificationTypesInput,
) -> Result<Value, ApiError> {
    let requestable = input
        .must_be_requestable
        .ok_or_else(|| ApiError::missing("MustBeRequestable"))?;
    let owned = input.must_be_owned_by_caller.unwrap_or(false);
    let max = max_results(input.max_results)?;
    let query = input.query.unwrap_or_default().to_lowercase();
    let scope = format!("{query}|{requestable}|{owned}");
    let from = start(&input.next_token, "ListQualificationTypes", &scope)?;
    // Every type in the double belongs to the caller and is requestable, so
    // the two flags filter nothing; the account has no system types.
    let matching = model
        .qual_types
        .iter()
        .enumerate()
        .skip(from)
        .filter(|(_, q)| {
            query.is_empty()
                || q.name.to_lowercase().contains(&query)
                || q.description.to_lowercase().contains(&query)
        });
    let (items, next) = page(matching, max);
    let items = items.into_iter().map(qual_type_json).collect();
    Ok(listing(
        "QualificationTypes",
        items,
        next,
        "ListQualificationTypes",
        &scope,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NotificationInput {
    destination: Option<String>,
    transport: Option<String>,
    version: Option<String>,
    event_types: Option<Vec<String>>,
}

fn invalid_value(message: impl AsRef<str>) -> ApiError {
    ApiError::request("InvalidParameterValue", message)
}

fn known_event_type(event_type: &str) -> Result<(), ApiError> {
    if EVENT_TYPES.contains(&event_type) {
        Ok(())
    } else {
        Err(invalid_value(format!(
            "{event_type} is not a valid EventType. Valid values: {}.",
            EVENT_TYPES.join(", ")
        )))
    }
}

/// Validates a notification specification; the result is stored inactive.
fn notification(input: NotificationInput) -> Result<NotificationSetting, ApiError> {
    let destination = required("Notification.Destination", &input.destination)?;
    let transport = required("Notification.Transport", &input.transport)?;
    let version = required("Notification.Version", &input.version)?;
    let event_types = input
        .event_types
        .ok_or_else(|| ApiError::missing("Notification.EventTypes"))?;
    let destination_ok = match transport {
        "SQS" => destination.starts_with("https://") || destination.starts_with("http://"),
        "SNS" => destination.starts_with("arn:"),
        "Email" => destination.contains('@'),
        other => {
            return Err(invalid_value(format!(
                "{other} is not a valid Transport. Valid values: Email, SQS, SNS."
            )))
        }
    };
    if !destination_ok {
        return Err(invalid_value(format!(
            "{destination} is not a valid {transport} destination."
        )));
    }
    if version != EVENT_DOC_VERSION {
        return Err(invalid_value(format!(
            "{version} is not a supported notification version. Use {EVENT_DOC_VERSION}."
        )));
    }
    if event_types.is_empty() {
        return Err(invalid_value("At least one EventType is required."));
    }
    for event_type in &event_types {
        known_event_type(event_type)?;
    }
    Ok(NotificationSetting {
        destination: destination.to_owned(),
        transport: transport.to_owned(),
        version: version.to_owned(),
        event_types,
        active: false,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateNotificationSettingsInput {
    #[serde(rename = "HITTypeId")]
    hit_type_id: Option<String>,
    notification: Option<NotificationInput>,
    active: Option<bool>,
}

fn update_notification_settings(
    model: &mut Model,
    input: UpdateNotificationSettingsInput,
) -> Result<Value, ApiError> {
    let hit_type_id = entity("HITTypeId", &input.hit_type_id)?;
    if !model.hit_types.contains_key(hit_type_id) {
        return Err(ApiError::request(
            "HITTypeDoesNotExist",
            format!("HITType {hit_type_id} does not exist."),
        ));
    }
    match (input.notification, input.active) {
        (Some(spec), active) => {
            let mut setting = notification(spec)?;
            setting.active = active.unwrap_or(true);
            model.notifications.insert(hit_type_id.to_owned(), setting);
        }
        (None, Some(active)) => match model.notifications.get_mut(hit_type_id) {
            Some(setting) => setting.active = active,
            None if !active => {}
            None => {
                return Err(invalid_value(format!(
                    "HITType {hit_type_id} has no notification specification to activate."
                )))
            }
        },
        (None, None) => {
            return Err(invalid_value(
                "You must specify either the Notification or the Active parameter.",
            ))
        }
    }
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendTestEventNotificationInput {
    notification: Option<NotificationInput>,
    test_event_type: Option<String>,
}

fn send_test_event_notification(
    model: &mut Model,
    input: SendTestEventNotificationInput,
    now: SystemTime,
) -> Result<Reply, ApiError> {
    let spec = input
        .notification
        .ok_or_else(|| ApiError::missing("Notification"))?;
    let event_type = required("TestEventType", &input.test_event_type)?;
    let setting = notification(spec)?;
    known_event_type(event_type)?;
    // The test document names no real HIT type, HIT or assignment: consumers
    // must cope with a document whose ids lead nowhere.
    let hit_type_id = model.placeholder_id();
    let hit_id = model.placeholder_id();
    let assignment_id = model.placeholder_id();
    let doc_counter = model.next("event-doc");
    let body = document(
        doc_counter,
        event_type,
        now,
        EventIds {
            hit_type_id: &hit_type_id,
            hit_id: &hit_id,
            assignment_id: &assignment_id,
        },
    );
    Ok(Reply {
        body: json!({}),
        deliveries: vec![PendingDelivery {
            destination: setting.destination,
            transport: setting.transport,
            event_type: event_type.to_owned(),
            body,
        }],
    })
}

/// MTurk's system qualification types (the double's account holds no
/// others than its own): Locale, the approval-rate and HITs-approved
/// counts, Adult, and Masters (production and sandbox).
pub(crate) const SYSTEM_QUALIFICATION_TYPES: &[&str] = &[
    "00000000000000000071",
    "000000000000000000L0",
    "00000000000000000040",
    "00000000000000000060",
    "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH",
    "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6",
];

const COMPARATORS: &[&str] = &[
    "LessThan",
    "LessThanOrEqualTo",
    "GreaterThan",
    "GreaterThanOrEqualTo",
    "EqualTo",
    "NotEqualTo",
    "Exists",
    "DoesNotExist",
    "In",
    "NotIn",
];

const ACTIONS_GUARDED: &[&str] = &["Accept", "PreviewAndAccept", "DiscoverPreviewAndAccept"];

/// A HIT takes at most this many requirements.
const MAX_REQUIREMENTS: usize = 10;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LocaleInput {
    country: Option<String>,
    subdivision: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RequirementInput {
    qualification_type_id: Option<String>,
    comparator: Option<String>,
    integer_values: Option<Vec<i32>>,
    locale_values: Option<Vec<LocaleInput>>,
    required_to_preview: Option<bool>,
    actions_guarded: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateHitTypeInput {
    auto_approval_delay_in_seconds: Option<i64>,
    assignment_duration_in_seconds: Option<i64>,
    reward: Option<String>,
    title: Option<String>,
    keywords: Option<String>,
    description: Option<String>,
    qualification_requirements: Option<Vec<RequirementInput>>,
}

/// MTurk's `CurrencyAmount`: dollars, with at most two decimals.
fn reward_ok(reward: &str) -> bool {
    let (whole, cents) = reward.split_once('.').unwrap_or((reward, "0"));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && !cents.is_empty()
        && cents.len() <= 2
        && cents.bytes().all(|b| b.is_ascii_digit())
}

/// One requirement checked as MTurk checks it, as the API will show it.
fn requirement(model: &Model, r: RequirementInput) -> Result<Value, ApiError> {
    let qual = required(
        "QualificationRequirement.QualificationTypeId",
        &r.qualification_type_id,
    )?;
    let comparator = required("QualificationRequirement.Comparator", &r.comparator)?;
    if !COMPARATORS.contains(&comparator) {
        return Err(ApiError::invalid(
            "QualificationRequirement.Comparator",
            comparator,
            &format!(
                "Member must satisfy enum value set: [{}]",
                COMPARATORS.join(", ")
            ),
        ));
    }
    if let Some(actions) = &r.actions_guarded {
        if !ACTIONS_GUARDED.contains(&actions.as_str()) {
            return Err(ApiError::invalid(
                "QualificationRequirement.ActionsGuarded",
                actions,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    ACTIONS_GUARDED.join(", ")
                ),
            ));
        }
    }
    if model.qual_type(qual).is_none() && !SYSTEM_QUALIFICATION_TYPES.contains(&qual) {
        return Err(qual_type_missing(qual));
    }
    let integers = r.integer_values.unwrap_or_default();
    let locales = r.locale_values.unwrap_or_default();
    let values = integers.len() + locales.len();
    if !integers.is_empty() && !locales.is_empty() {
        return Err(invalid_value(
            "A QualificationRequirement cannot have both IntegerValues and LocaleValues.",
        ));
    }
    let wanted_ok = match comparator {
        "Exists" | "DoesNotExist" => values == 0,
        // MTurk's limits for a set: 15 IntegerValues, 30 LocaleValues.
        "In" | "NotIn" if locales.is_empty() => (1..=15).contains(&values),
        "In" | "NotIn" => (1..=30).contains(&values),
        _ => values == 1,
    };
    if !wanted_ok {
        return Err(invalid_value(format!(
            "The Comparator {comparator} does not take {values} value(s)."
        )));
    }
    let mut out = Map::new();
    out.insert("QualificationTypeId".into(), json!(qual));
    out.insert("Comparator".into(), json!(comparator));
    if !integers.is_empty() {
        out.insert("IntegerValues".into(), json!(integers));
    }
    if !locales.is_empty() {
        let mut shown = Vec::new();
        for l in locales {
            let country = required("Locale.Country", &l.country)?;
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(ApiError::invalid(
                    "Locale.Country",
                    country,
                    "Member must satisfy regular expression pattern: ^[A-Z]{2}$",
                ));
            }
            let mut locale = Map::new();
            locale.insert("Country".into(), json!(country));
            if let Some(sub) = l.subdivision {
                locale.insert("Subdivision".into(), json!(sub));
            }
            shown.push(Value::Object(locale));
        }
        out.insert("LocaleValues".into(), Value::Array(shown));
    }
    if let Some(preview) = r.required_to_preview {
        out.insert("RequiredToPreview".into(), json!(preview));
    }
    if let Some(actions) = r.actions_guarded {
        out.insert("ActionsGuarded".into(), json!(actions));
    }
    Ok(Value::Object(out))
}

/// `CreateHITType`: the same properties give the same HIT type id (MTurk
/// answers an existing one rather than making a second).
fn create_hit_type(model: &mut Model, input: CreateHitTypeInput) -> Result<Value, ApiError> {
    let duration = input
        .assignment_duration_in_seconds
        .ok_or_else(|| ApiError::missing("AssignmentDurationInSeconds"))?;
    let reward = required("Reward", &input.reward)?;
    let title = required("Title", &input.title)?;
    let description = required("Description", &input.description)?;
    if !(30..=31_536_000).contains(&duration) {
        return Err(invalid_value(format!(
            "AssignmentDurationInSeconds must be between 30 and 31536000 (got {duration})."
        )));
    }
    let delay = input.auto_approval_delay_in_seconds.unwrap_or(2_592_000);
    if !(0..=2_592_000).contains(&delay) {
        return Err(invalid_value(format!(
            "AutoApprovalDelayInSeconds must be between 0 and 2592000 (got {delay})."
        )));
    }
    if !reward_ok(reward) {
        return Err(invalid_value(format!(
            "{reward} is not a valid Reward: dollars with at most two decimals, such as 0.50."
        )));
    }
    if title.trim().is_empty() || title.chars().count() > 128 {
        return Err(invalid_value("Title must be 1 to 128 characters."));
    }
    if description.trim().is_empty() || description.chars().count() > 2000 {
        return Err(invalid_value("Description must be 1 to 2000 characters."));
    }
    let keywords = input.keywords.unwrap_or_default();
    if keywords.chars().count() > 1000 {
        return Err(invalid_value("Keywords must be at most 1000 characters."));
    }
    let requirements = input.qualification_requirements.unwrap_or_default();
    if requirements.len() > MAX_REQUIREMENTS {
        return Err(invalid_value(format!(
            "A HIT can have at most {MAX_REQUIREMENTS} QualificationRequirements."
        )));
    }
    let requirements = requirements
        .into_iter()
        .map(|r| requirement(model, r))
        .collect::<Result<Vec<_>, _>>()?;
    let id = model.hit_type_for(HitTypeProps {
        title: title.to_owned(),
        description: description.to_owned(),
        reward: reward.to_owned(),
        assignment_duration: std::time::Duration::from_secs(duration as u64),
        auto_approval_delay: std::time::Duration::from_secs(delay as u64),
        keywords,
        qualification_requirements: requirements,
    });
    Ok(json!({ "HITTypeId": id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateHitWithHitTypeInput {
    #[serde(rename = "HITTypeId")]
    hit_type_id: Option<String>,
    max_assignments: Option<i64>,
    lifetime_in_seconds: Option<i64>,
    question: Option<String>,
    #[serde(rename = "HITLayoutId")]
    hit_layout_id: Option<String>,
    requester_annotation: Option<String>,
}

/// `CreateHITWithHITType`: a HIT that takes on a HIT type's properties
/// (one `CreateHITType` made; a HIT type known only by id has none to give).
fn create_hit_with_hit_type(
    model: &mut Model,
    input: CreateHitWithHitTypeInput,
    now: SystemTime,
) -> Result<Value, ApiError> {
    let hit_type_id = entity("HITTypeId", &input.hit_type_id)?;
    let lifetime = input
        .lifetime_in_seconds
        .ok_or_else(|| ApiError::missing("LifetimeInSeconds"))?;
    if !(30..=31_536_000).contains(&lifetime) {
        return Err(invalid_value(format!(
            "LifetimeInSeconds must be between 30 and 31536000 (got {lifetime})."
        )));
    }
    let max_assignments = input.max_assignments.unwrap_or(1);
    if !(1..=1_000_000).contains(&max_assignments) {
        return Err(invalid_value(format!(
            "MaxAssignments must be between 1 and 1000000 (got {max_assignments})."
        )));
    }
    match (&input.question, &input.hit_layout_id) {
        (Some(q), None) if q.contains("Question") => {}
        _ => {
            return Err(invalid_value(
                "Exactly one of Question (an HTMLQuestion or ExternalQuestion) and HITLayoutId is required.",
            ))
        }
    }
    let props = model
        .hit_type_props
        .get(hit_type_id)
        .cloned()
        .ok_or_else(|| {
            ApiError::request(
                "HITTypeDoesNotExist",
                format!("HIT type {hit_type_id} does not exist."),
            )
        })?;
    let mut options = crate::model::HitOptions {
        max_assignments: max_assignments as u32,
        lifetime: std::time::Duration::from_secs(lifetime as u64),
        requester_annotation: input.requester_annotation,
        ..crate::model::HitOptions::default()
    };
    props.apply_to(&mut options);
    let id = model.create_hit(hit_type_id, options, now);
    let hit = model
        .live_hit(&id)
        .ok_or_else(|| ApiError::request("HITDoesNotExist", format!("Hit {id} does not exist.")))?;
    Ok(json!({ "HIT": hit_json(hit, now) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateHitTypeOfHitInput {
    #[serde(rename = "HITId")]
    hit_id: Option<String>,
    #[serde(rename = "HITTypeId")]
    hit_type_id: Option<String>,
}

/// `UpdateHITTypeOfHIT`: the HIT takes on the HIT type's properties
/// (requirements included); assignments already taken stay.
fn update_hit_type_of_hit(
    model: &mut Model,
    input: UpdateHitTypeOfHitInput,
) -> Result<Value, ApiError> {
    let hit_id = entity("HITId", &input.hit_id)?;
    let hit_type_id = entity("HITTypeId", &input.hit_type_id)?;
    if model.live_hit(hit_id).is_none() {
        return Err(ApiError::request(
            "HITDoesNotExist",
            format!("Hit {hit_id} does not exist."),
        ));
    }
    if !model.hit_types.contains_key(hit_type_id) {
        return Err(ApiError::request(
            "HITTypeDoesNotExist",
            format!("HITType {hit_type_id} does not exist."),
        ));
    }
    model.change_hit_type(hit_id, hit_type_id);
    Ok(json!({}))
}
