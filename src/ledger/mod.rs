//! The ledger: who took part in what, who is excluded, and proof that the
//! notification path works. One DynamoDB table; this module is the only one
//! that knows its attribute names.
//!
//! Items (pk / sk):
//! - `A#<assignment>` / `P`: a participation learned from an assignment.
//! - `W#<worker>` / `X#<qualification>`: the worker's exclusion under one
//!   qualification; carries `excluded_q` only while excluded, which makes the
//!   `Excluded` index list exactly the excluded workers.
//! - `HEARTBEAT` / `<received_at>#<event doc id>`: a test event that made it
//!   through the queue and the handler; expires after 30 days.
//!
//! Indexes (declared in template.yaml): `ByWorker` (worker_id, pk), `ByHit`
//! (hit_id, pk), `ByHitType` (hit_type_id, recorded_at), `Excluded`
//! (excluded_q, worker_id).
//!
//! Times are stored as RFC 3339 UTC with milliseconds, so that string order
//! is time order.

use std::collections::HashMap;
use std::error::Error as StdError;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::{Duration, OffsetDateTime};

use crate::ids::{AssignmentId, HitId, HitTypeId, QualificationTypeId, WorkerId};

pub mod claims;
pub use claims::{Claim, ClaimEnd, Replaceable, Standing};

// Attribute names.
const PK: &str = "pk";
const SK: &str = "sk";
const WORKER_ID: &str = "worker_id";
const ASSIGNMENT_ID: &str = "assignment_id";
const HIT_ID: &str = "hit_id";
const HIT_TYPE_ID: &str = "hit_type_id";
const SUBMIT_TIME: &str = "submit_time";
const LEARNED_BY: &str = "learned_by";
const EVENT_DOC_ID: &str = "event_doc_id";
const RECORDED_AT: &str = "recorded_at";
const EXCLUDED_AT: &str = "excluded_at";
const RELEASED_AT: &str = "released_at";
const RELEASE_REASON: &str = "release_reason";
const QUALIFICATION_TYPE_ID: &str = "qualification_type_id";
const STATE: &str = "state";
const EXCLUDED_BECAUSE: &str = "excluded_because";
const EXCLUDED_Q: &str = "excluded_q";
const RECEIVED_AT: &str = "received_at";
const EVENT_AT: &str = "event_at";
const PLACEHOLDER_HIT_TYPE_ID: &str = "placeholder_hit_type_id";
const EXPIRES_AT: &str = "expires_at";

const PARTICIPATION_SK: &str = "P";
const HEARTBEAT_PK: &str = "HEARTBEAT";
const BY_WORKER: &str = "ByWorker";
const BY_HIT: &str = "ByHit";
const BY_HIT_TYPE: &str = "ByHitType";
const EXCLUDED: &str = "Excluded";
const SUBSCRIPTION_PK: &str = "SUBSCRIPTION";
const QUEUE_URL: &str = "queue_url";
const SUBSCRIBED_AT: &str = "subscribed_at";
const VERIFIED_AT: &str = "verified_at";
const ACTIVE: &str = "active";
const HEARTBEAT_TTL: Duration = Duration::days(30);

/// How the ledger learned of a participation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// From an MTurk notification, with the document's id.
    Notification { event_doc_id: String },
    /// From the CLI walking a HIT's assignments.
    Backfill,
    /// A worker id the lab gave the CLI (no assignment known).
    Manual,
    /// A worker found holding the qualification on MTurk that the ledger did not know.
    Reconcile,
}

impl Learned {
    fn as_str(&self) -> &'static str {
        match self {
            Learned::Notification { .. } => "notification",
            Learned::Backfill => "backfill",
            Learned::Manual => "manual",
            Learned::Reconcile => "reconcile",
        }
    }
}

/// A participation about to be recorded.
#[derive(Debug, Clone)]
pub struct NewParticipation {
    pub worker_id: WorkerId,
    pub assignment_id: AssignmentId,
    pub hit_id: HitId,
    pub hit_type_id: Option<HitTypeId>,
    pub submit_time: Option<OffsetDateTime>,
    pub learned: Learned,
}

/// A participation as the ledger holds it. Times are RFC 3339 strings.
///
/// Most participations come from an assignment. A worker the lab named by
/// hand (or found on MTurk by `reconcile`) has one participation without an
/// assignment or HIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participation {
    pub worker_id: WorkerId,
    pub assignment_id: Option<AssignmentId>,
    pub hit_id: Option<HitId>,
    pub hit_type_id: Option<String>,
    pub submit_time: Option<String>,
    pub learned_by: String,
    pub event_doc_id: Option<String>,
    pub recorded_at: String,
    /// When the worker was known to be excluded because of (or despite) this participation.
    pub excluded_at: Option<String>,
    /// When the lab released (un-excluded) the worker; a stale event for this
    /// participation must not exclude them again.
    pub released_at: Option<String>,
    pub release_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExclusionState {
    Excluded,
    Released,
}

/// A worker's standing under the lab's qualification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub worker_id: WorkerId,
    pub state: ExclusionState,
    pub excluded_at: Option<String>,
    pub excluded_because: Option<String>,
    pub released_at: Option<String>,
}

/// A HIT type the lab pointed at the queue with `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub hit_type_id: String,
    pub queue_url: String,
    pub subscribed_at: String,
    /// When a test event was last seen coming through after subscribing.
    pub verified_at: Option<String>,
    pub active: bool,
}

/// A test event that made it through the queue and the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub event_doc_id: String,
    pub event_at: String,
    pub received_at: String,
    pub placeholder_hit_type_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("ledger {operation}: {message}")]
pub struct LedgerError {
    pub operation: &'static str,
    pub message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
}

fn sdk_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> LedgerError
where
    E: StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let message = match &err {
        SdkError::ServiceError(ctx) => format!("{}", ctx.err()),
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => "could not reach DynamoDB".to_owned(),
        other => other.to_string(),
    };
    LedgerError {
        operation,
        message,
        source: Some(Box::new(err)),
    }
}

fn corrupt(operation: &'static str, message: String) -> LedgerError {
    LedgerError {
        operation,
        message,
        source: None,
    }
}

/// Formats a time the way the ledger stores it.
pub fn stamp(t: OffsetDateTime) -> String {
    // Fixed width, always three fraction digits and a Z, so that string
    // order is time order.
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

type Item = HashMap<String, AttributeValue>;

fn get_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn participation_key(assignment: &AssignmentId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("A#{assignment}"))),
        (SK.to_owned(), s(PARTICIPATION_SK)),
    ])
}

fn manual_key(worker: &WorkerId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("M#{worker}"))),
        (SK.to_owned(), s(PARTICIPATION_SK)),
    ])
}

impl Participation {
    fn key(&self) -> Item {
        match &self.assignment_id {
            Some(a) => participation_key(a),
            None => manual_key(&self.worker_id),
        }
    }

    /// What the exclusion record names as its cause.
    pub fn cause(&self) -> String {
        match &self.assignment_id {
            Some(a) => a.to_string(),
            None => self.learned_by.clone(),
        }
    }
}

fn exclusion_key(worker: &WorkerId, qualification: &QualificationTypeId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("W#{worker}"))),
        (SK.to_owned(), s(format!("X#{qualification}"))),
    ])
}

fn participation_from(operation: &'static str, item: &Item) -> Result<Participation, LedgerError> {
    let need = |name: &str| {
        get_s(item, name).ok_or_else(|| corrupt(operation, format!("participation without {name}")))
    };
    let bad = |e: crate::ids::InvalidId| corrupt(operation, format!("participation: {e}"));
    Ok(Participation {
        worker_id: WorkerId::parse(&need(WORKER_ID)?).map_err(bad)?,
        assignment_id: get_s(item, ASSIGNMENT_ID)
            .map(|a| AssignmentId::parse(&a))
            .transpose()
            .map_err(bad)?,
        hit_id: get_s(item, HIT_ID)
            .map(|h| HitId::parse(&h))
            .transpose()
            .map_err(bad)?,
        hit_type_id: get_s(item, HIT_TYPE_ID),
        submit_time: get_s(item, SUBMIT_TIME),
        learned_by: need(LEARNED_BY)?,
        event_doc_id: get_s(item, EVENT_DOC_ID),
        recorded_at: need(RECORDED_AT)?,
        excluded_at: get_s(item, EXCLUDED_AT),
        released_at: get_s(item, RELEASED_AT),
        release_reason: get_s(item, RELEASE_REASON),
    })
}

fn exclusion_from(operation: &'static str, item: &Item) -> Result<Exclusion, LedgerError> {
    let worker = get_s(item, WORKER_ID)
        .ok_or_else(|| corrupt(operation, "exclusion without worker_id".into()))?;
    let state = match get_s(item, STATE).as_deref() {
        Some("excluded") => ExclusionState::Excluded,
        Some("released") => ExclusionState::Released,
        other => {
            return Err(corrupt(
                operation,
                format!("exclusion in unknown state {other:?}"),
            ))
        }
    };
    Ok(Exclusion {
        worker_id: WorkerId::parse(&worker)
            .map_err(|e| corrupt(operation, format!("exclusion: {e}")))?,
        state,
        excluded_at: get_s(item, EXCLUDED_AT),
        excluded_because: get_s(item, EXCLUDED_BECAUSE),
        released_at: get_s(item, RELEASED_AT),
    })
}

#[derive(Clone)]
pub struct Ledger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Ledger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Ledger {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Every item under one key value, all pages: of the table
    /// (`index: None`) or of one of its indexes.
    async fn query_all(
        &self,
        operation: &'static str,
        index: Option<&str>,
        key: (&str, AttributeValue),
        filter_on_sk: Option<&str>,
    ) -> Result<Vec<Item>, LedgerError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression("#key = :key")
            .expression_attribute_names("#key", key.0)
            .expression_attribute_values(":key", key.1)
            // Indexes can only be read eventually consistent.
            .consistent_read(index.is_none());
        if let Some(sk) = filter_on_sk {
            query = query
                .filter_expression(format!("{SK} = :sk"))
                .expression_attribute_values(":sk", s(sk));
        }
        query
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| sdk_error(operation, e))
    }

    /// The participation for an assignment, if the ledger has it.
    pub async fn participation(
        &self,
        assignment: &AssignmentId,
    ) -> Result<Option<Participation>, LedgerError> {
        const OP: &str = "GetItem(participation)";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(participation_key(assignment)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        out.item
            .as_ref()
            .map(|i| participation_from(OP, i))
            .transpose()
    }

    /// Records a participation, keeping what was recorded first (the first
    /// `recorded_at`, how it was first learned) so redelivery changes nothing.
    /// Returns the participation as stored, including any release.
    pub async fn record_participation(
        &self,
        p: &NewParticipation,
        now: OffsetDateTime,
    ) -> Result<Participation, LedgerError> {
        const OP: &str = "UpdateItem(participation)";
        let mut values: Item = HashMap::from([
            (":worker".to_owned(), s(p.worker_id.as_str())),
            (":assignment".to_owned(), s(p.assignment_id.as_str())),
            (":hit".to_owned(), s(p.hit_id.as_str())),
            (":learned".to_owned(), s(p.learned.as_str())),
            (":now".to_owned(), s(stamp(now))),
        ]);
        let mut sets = vec![
            format!("{WORKER_ID} = if_not_exists({WORKER_ID}, :worker)"),
            format!("{ASSIGNMENT_ID} = if_not_exists({ASSIGNMENT_ID}, :assignment)"),
            format!("{HIT_ID} = if_not_exists({HIT_ID}, :hit)"),
            format!("{LEARNED_BY} = if_not_exists({LEARNED_BY}, :learned)"),
            format!("{RECORDED_AT} = if_not_exists({RECORDED_AT}, :now)"),
        ];
        if let Some(t) = &p.hit_type_id {
            values.insert(":hit_type".into(), s(t.as_str()));
            sets.push(format!(
                "{HIT_TYPE_ID} = if_not_exists({HIT_TYPE_ID}, :hit_type)"
            ));
        }
        if let Some(t) = p.submit_time {
            values.insert(":submit".into(), s(stamp(t)));
            sets.push(format!(
                "{SUBMIT_TIME} = if_not_exists({SUBMIT_TIME}, :submit)"
            ));
        }
        if let Learned::Notification { event_doc_id } = &p.learned {
            values.insert(":doc".into(), s(event_doc_id.as_str()));
            sets.push(format!(
                "{EVENT_DOC_ID} = if_not_exists({EVENT_DOC_ID}, :doc)"
            ));
        }
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(participation_key(&p.assignment_id)))
            .update_expression(format!("SET {}", sets.join(", ")))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let item = out
            .attributes
            .ok_or_else(|| corrupt(OP, "no attributes returned".into()))?;
        participation_from(OP, &item)
    }

    /// Notes that the worker of this participation is excluded, keeping the first time.
    pub async fn mark_excluded(
        &self,
        participation: &Participation,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem(participation excluded)";
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(participation.key()))
            .update_expression(format!(
                "SET {EXCLUDED_AT} = if_not_exists({EXCLUDED_AT}, :now)"
            ))
            .condition_expression(format!("attribute_exists({PK})"))
            .expression_attribute_values(":now", s(stamp(now)))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    /// The worker's exclusion under `qualification`, read consistently.
    pub async fn exclusion(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
    ) -> Result<Option<Exclusion>, LedgerError> {
        const OP: &str = "GetItem(exclusion)";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        out.item.as_ref().map(|i| exclusion_from(OP, i)).transpose()
    }

    /// Records that MTurk granted the exclusion qualification to `worker`.
    pub async fn record_exclusion(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        because: &str,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem(exclusion)";
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            .update_expression(format!(
                "SET {WORKER_ID} = :worker, {QUALIFICATION_TYPE_ID} = :q, #state = :excluded, \
                 {EXCLUDED_Q} = :q, {EXCLUDED_AT} = :now, {EXCLUDED_BECAUSE} = :because"
            ))
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":q", s(qualification.as_str()))
            .expression_attribute_values(":excluded", s("excluded"))
            .expression_attribute_values(":now", s(stamp(now)))
            .expression_attribute_values(":because", s(because))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    /// Marks the worker released under `qualification` and every one of
    /// their participations released, so stale events do not exclude them
    /// again. Returns the participations newly marked.
    pub async fn record_release(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Vec<Participation>, LedgerError> {
        let mut released = Vec::new();
        for p in self.participations_of(worker).await? {
            if p.released_at.is_some() {
                continue;
            }
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(p.key()))
                .expression_attribute_values(":now", s(stamp(now)));
            update = match reason {
                Some(r) => update
                    .update_expression(format!(
                        "SET {RELEASED_AT} = :now, {RELEASE_REASON} = :reason"
                    ))
                    .expression_attribute_values(":reason", s(r)),
                None => update.update_expression(format!("SET {RELEASED_AT} = :now")),
            };
            update
                .send()
                .await
                .map_err(|e| sdk_error("UpdateItem(participation released)", e))?;
            released.push(p);
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":q", s(qualification.as_str()))
            .expression_attribute_values(":released", s("released"))
            .expression_attribute_values(":now", s(stamp(now)));
        let set = format!(
            "SET {WORKER_ID} = :worker, {QUALIFICATION_TYPE_ID} = :q, #state = :released, {RELEASED_AT} = :now"
        );
        update = match reason {
            Some(r) => update
                .update_expression(format!(
                    "{set}, {RELEASE_REASON} = :reason REMOVE {EXCLUDED_Q}"
                ))
                .expression_attribute_values(":reason", s(r)),
            None => update.update_expression(format!("{set} REMOVE {EXCLUDED_Q}")),
        };
        update
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem(exclusion released)", e))?;
        Ok(released)
    }

    /// Every participation of a worker (through the ByWorker index).
    pub async fn participations_of(
        &self,
        worker: &WorkerId,
    ) -> Result<Vec<Participation>, LedgerError> {
        const OP: &str = "Query(ByWorker)";
        let items = self
            .query_all(
                OP,
                Some(BY_WORKER),
                (WORKER_ID, s(worker.as_str())),
                Some(PARTICIPATION_SK),
            )
            .await?;
        items.iter().map(|i| participation_from(OP, i)).collect()
    }

    /// Records that a test event came through, for `subscribe` to find.
    pub async fn record_heartbeat(
        &self,
        event_doc_id: &str,
        event_at: OffsetDateTime,
        placeholder_hit_type_id: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "PutItem(heartbeat)";
        let received_at = stamp(now);
        let mut item: Item = HashMap::from([
            (PK.to_owned(), s(HEARTBEAT_PK)),
            (SK.to_owned(), s(format!("{received_at}#{event_doc_id}"))),
            (EVENT_DOC_ID.to_owned(), s(event_doc_id)),
            (EVENT_AT.to_owned(), s(stamp(event_at))),
            (RECEIVED_AT.to_owned(), s(received_at)),
            (
                EXPIRES_AT.to_owned(),
                AttributeValue::N((now + HEARTBEAT_TTL).unix_timestamp().to_string()),
            ),
        ]);
        if let Some(t) = placeholder_hit_type_id {
            item.insert(PLACEHOLDER_HIT_TYPE_ID.to_owned(), s(t));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    /// Heartbeats received after `since`, oldest first.
    pub async fn heartbeats_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<Heartbeat>, LedgerError> {
        const OP: &str = "Query(heartbeats)";
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{PK} = :pk AND {SK} > :since"))
            .expression_attribute_values(":pk", s(HEARTBEAT_PK))
            .expression_attribute_values(":since", s(stamp(since)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        items
            .iter()
            .map(|i| {
                let need = |n: &str| {
                    get_s(i, n).ok_or_else(|| corrupt(OP, format!("heartbeat without {n}")))
                };
                Ok(Heartbeat {
                    event_doc_id: need(EVENT_DOC_ID)?,
                    event_at: need(EVENT_AT)?,
                    received_at: need(RECEIVED_AT)?,
                    placeholder_hit_type_id: get_s(i, PLACEHOLDER_HIT_TYPE_ID),
                })
            })
            .collect()
    }

    /// Records (or re-affirms) a participation for a worker named without an
    /// assignment. Naming a worker again after a release excludes them again:
    /// an explicit request from the lab is never stale.
    pub async fn record_manual_participation(
        &self,
        worker: &WorkerId,
        learned: &Learned,
        now: OffsetDateTime,
    ) -> Result<Participation, LedgerError> {
        const OP: &str = "UpdateItem(manual participation)";
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(manual_key(worker)))
            .update_expression(format!(
                "SET {WORKER_ID} = :worker, {LEARNED_BY} = if_not_exists({LEARNED_BY}, :learned), \
                 {RECORDED_AT} = if_not_exists({RECORDED_AT}, :now) \
                 REMOVE {RELEASED_AT}, {RELEASE_REASON}, {EXCLUDED_AT}"
            ))
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":learned", s(learned.as_str()))
            .expression_attribute_values(":now", s(stamp(now)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let item = out
            .attributes
            .ok_or_else(|| corrupt(OP, "no attributes returned".into()))?;
        participation_from(OP, &item)
    }

    /// Every participation recorded for a HIT (through the ByHit index), so a
    /// study can be found long after MTurk disposed of the HIT.
    pub async fn participations_in_hit(
        &self,
        hit: &HitId,
    ) -> Result<Vec<Participation>, LedgerError> {
        const OP: &str = "Query(ByHit)";
        let items = self
            .query_all(OP, Some(BY_HIT), (HIT_ID, s(hit.as_str())), None)
            .await?;
        items.iter().map(|i| participation_from(OP, i)).collect()
    }

    /// Every worker the ledger holds excluded under `qualification`.
    pub async fn excluded_workers(
        &self,
        qualification: &QualificationTypeId,
    ) -> Result<Vec<Exclusion>, LedgerError> {
        const OP: &str = "Query(Excluded)";
        let items = self
            .query_all(
                OP,
                Some(EXCLUDED),
                (EXCLUDED_Q, s(qualification.as_str())),
                None,
            )
            .await?;
        items.iter().map(|i| exclusion_from(OP, i)).collect()
    }

    /// Every participation, optionally only those recorded at or after `since`.
    /// A full scan: for exports and status, not for the per-event path.
    pub async fn all_participations(
        &self,
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<Participation>, LedgerError> {
        const OP: &str = "Scan(participations)";
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .expression_attribute_values(":p", s(PARTICIPATION_SK));
        scan = match since {
            Some(t) => scan
                .filter_expression(format!("{SK} = :p AND {RECORDED_AT} >= :since"))
                .expression_attribute_values(":since", s(stamp(t))),
            None => scan.filter_expression(format!("{SK} = :p")),
        };
        let items = scan
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let mut all = items
            .iter()
            .map(|i| participation_from(OP, i))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| a.recorded_at.cmp(&b.recorded_at));
        Ok(all)
    }

    /// When the last participation of a HIT type was recorded.
    pub async fn last_recorded_for(&self, hit_type: &str) -> Result<Option<String>, LedgerError> {
        const OP: &str = "Query(ByHitType)";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_HIT_TYPE)
            .key_condition_expression(format!("{HIT_TYPE_ID} = :t"))
            .expression_attribute_values(":t", s(hit_type))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .first()
            .and_then(|i| get_s(i, RECORDED_AT)))
    }

    /// The most recent heartbeat, if any.
    pub async fn last_heartbeat(&self) -> Result<Option<String>, LedgerError> {
        const OP: &str = "Query(last heartbeat)";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{PK} = :pk"))
            .expression_attribute_values(":pk", s(HEARTBEAT_PK))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .first()
            .and_then(|i| get_s(i, RECEIVED_AT)))
    }

    /// Records that a HIT type's notifications now go to `queue_url`.
    pub async fn record_subscription(
        &self,
        hit_type: &HitTypeId,
        queue_url: &str,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(SUBSCRIPTION_PK))
            .item(SK, s(hit_type.as_str()))
            .item(QUEUE_URL, s(queue_url))
            .item(SUBSCRIBED_AT, s(stamp(now)))
            .item(ACTIVE, AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem(subscription)", e))?;
        Ok(())
    }

    /// Notes that a test event came through after these HIT types were subscribed.
    pub async fn record_verified(&self, hit_type: &HitTypeId, at: &str) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .update_expression(format!("SET {VERIFIED_AT} = :at"))
            .condition_expression(format!("attribute_exists({PK})"))
            .expression_attribute_values(":at", s(at))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem(subscription verified)", e))?;
        Ok(())
    }

    /// Marks a HIT type's subscription inactive (kept, for the record).
    pub async fn record_unsubscribed(&self, hit_type: &HitTypeId) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .update_expression(format!("SET {ACTIVE} = :no"))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem(subscription inactive)", e))?;
        Ok(())
    }

    /// Every HIT type `subscribe` has recorded.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, LedgerError> {
        const OP: &str = "Query(subscriptions)";
        let items = self
            .query_all(OP, None, (PK, s(SUBSCRIPTION_PK)), None)
            .await?;
        items
            .iter()
            .map(|i| {
                Ok(Subscription {
                    hit_type_id: get_s(i, SK)
                        .ok_or_else(|| corrupt(OP, "subscription without sk".into()))?,
                    queue_url: get_s(i, QUEUE_URL).unwrap_or_default(),
                    subscribed_at: get_s(i, SUBSCRIBED_AT).unwrap_or_default(),
                    verified_at: get_s(i, VERIFIED_AT),
                    active: !matches!(i.get(ACTIVE), Some(AttributeValue::Bool(false))),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn stamps_sort_as_times() {
        assert_eq!(
            stamp(datetime!(2026-03-02 17:04:11 UTC)),
            "2026-03-02T17:04:11.000Z"
        );
        assert_eq!(
            stamp(datetime!(2026-03-02 17:04:11.5 UTC)),
            "2026-03-02T17:04:11.500Z"
        );
        assert_eq!(
            stamp(datetime!(2026-03-02 17:04:11.123456 UTC)),
            "2026-03-02T17:04:11.123Z"
        );
        assert_eq!(
            stamp(datetime!(2026-03-02 18:04:11 +01:00)),
            "2026-03-02T17:04:11.000Z"
        );
        assert!(
            stamp(datetime!(2026-03-02 17:04:11.9 UTC)) < stamp(datetime!(2026-03-02 17:04:12 UTC))
        );
    }
}
