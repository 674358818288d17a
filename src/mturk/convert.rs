//! Conversions between the SDK's types and the ones this crate hands out:
//! what MTurk answers is checked here (ids parsed, missing fields refused as
//! `Unusable`), and what is sent is built here.

use aws_sdk_mturk::types::{
    Comparator, EventType, HitAccessActions, Locale as SdkLocale, NotificationSpecification,
    NotificationTransport, QualificationRequirement,
};
use time::OffsetDateTime;

use super::{
    Assignment, Hit, HitProperties, HitStatus, Locale, MturkError, MturkErrorKind, Requirement,
    NOTIFICATION_VERSION,
};
use crate::ids::{AssignmentId, HitId, HitTypeId, WorkerId};

pub(super) fn requirement_from(r: &QualificationRequirement) -> Requirement {
    // MTurk's older RequiredToPreview=true means what ActionsGuarded
    // PreviewAndAccept says now; read it as that, so a HIT type made like
    // this one (`coverage --fix`) guards the same actions.
    #[allow(deprecated)]
    let preview = r.required_to_preview() == Some(true);
    let actions_guarded = r
        .actions_guarded()
        .map(|a| a.as_str().to_owned())
        .or_else(|| preview.then(|| "PreviewAndAccept".to_owned()));
    Requirement {
        qualification_type_id: r.qualification_type_id().to_owned(),
        comparator: r.comparator().as_str().to_owned(),
        integer_values: r.integer_values().to_vec(),
        locale_values: r
            .locale_values()
            .iter()
            .map(|l| Locale {
                country: l.country().to_owned(),
                subdivision: l.subdivision().map(str::to_owned),
            })
            .collect(),
        actions_guarded,
    }
}

pub(super) fn requirement_to(r: &Requirement) -> Result<QualificationRequirement, MturkError> {
    let refused = |e: aws_sdk_mturk::error::BuildError| MturkError {
        operation: "QualificationRequirement",
        kind: MturkErrorKind::Rejected {
            turk_error_code: None,
        },
        message: e.to_string(),
        source: Some(Box::new(e)),
    };
    let mut locales = Vec::new();
    for l in &r.locale_values {
        locales.push(
            SdkLocale::builder()
                .country(&l.country)
                .set_subdivision(l.subdivision.clone())
                .build()
                .map_err(refused)?,
        );
    }
    QualificationRequirement::builder()
        .qualification_type_id(&r.qualification_type_id)
        .comparator(Comparator::from(r.comparator.as_str()))
        .set_integer_values((!r.integer_values.is_empty()).then(|| r.integer_values.clone()))
        .set_locale_values((!locales.is_empty()).then_some(locales))
        .set_actions_guarded(r.actions_guarded.as_deref().map(HitAccessActions::from))
        .build()
        .map_err(refused)
}

pub(super) fn hit_from(
    operation: &'static str,
    h: aws_sdk_mturk::types::Hit,
) -> Result<Hit, MturkError> {
    let missing = |what: &str| MturkError {
        operation,
        kind: MturkErrorKind::Unusable,
        message: format!("a HIT without {what}"),
        source: None,
    };
    let requirements = h
        .qualification_requirements()
        .iter()
        .map(requirement_from)
        .collect();
    let properties = match (
        &h.title,
        &h.description,
        &h.reward,
        h.assignment_duration_in_seconds,
    ) {
        (Some(title), Some(description), Some(reward), Some(duration)) => Some(HitProperties {
            title: title.clone(),
            description: description.clone(),
            reward: reward.clone(),
            assignment_duration_secs: duration,
            auto_approval_delay_secs: h.auto_approval_delay_in_seconds,
            keywords: h.keywords.clone(),
        }),
        _ => None,
    };
    Ok(Hit {
        requirements,
        properties,
        hit_id: HitId::parse(h.hit_id.as_deref().ok_or_else(|| missing("HITId"))?)
            .map_err(|e| MturkError::unusable(operation, e))?,
        hit_type_id: HitTypeId::parse(
            h.hit_type_id
                .as_deref()
                .ok_or_else(|| missing("HITTypeId"))?,
        )
        .map_err(|e| MturkError::unusable(operation, e))?,
        title: h.title,
        status: HitStatus::from(h.hit_status.as_ref().map_or("", |s| s.as_str())),
    })
}

pub(super) fn assignment_from(
    operation: &'static str,
    a: aws_sdk_mturk::types::Assignment,
    hit_type_id: Option<&HitTypeId>,
) -> Result<Assignment, MturkError> {
    let missing = |what: &str| MturkError {
        operation,
        kind: MturkErrorKind::Unusable,
        message: format!("an assignment without {what}"),
        source: None,
    };
    let unusable = |e| MturkError::unusable(operation, e);
    Ok(Assignment {
        assignment_id: AssignmentId::parse(
            a.assignment_id
                .as_deref()
                .ok_or_else(|| missing("AssignmentId"))?,
        )
        .map_err(unusable)?,
        worker_id: WorkerId::parse(a.worker_id.as_deref().ok_or_else(|| missing("WorkerId"))?)
            .map_err(unusable)?,
        hit_id: HitId::parse(a.hit_id.as_deref().ok_or_else(|| missing("HITId"))?)
            .map_err(unusable)?,
        hit_type_id: hit_type_id.cloned(),
        status: a
            .assignment_status
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        submit_time: a.submit_time.and_then(|t| {
            OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(t.secs()) * 1_000_000_000 + i128::from(t.subsec_nanos()),
            )
            .ok()
        }),
    })
}

pub(super) fn specification(
    queue_url: &str,
    events: &[EventType],
) -> Result<NotificationSpecification, MturkError> {
    NotificationSpecification::builder()
        .destination(queue_url)
        .transport(NotificationTransport::Sqs)
        .version(NOTIFICATION_VERSION)
        .set_event_types(Some(events.to_vec()))
        .build()
        .map_err(|e| MturkError {
            operation: "NotificationSpecification",
            kind: MturkErrorKind::Rejected {
                turk_error_code: None,
            },
            message: e.to_string(),
            source: Some(Box::new(e)),
        })
}
