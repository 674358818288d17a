//! Participations: who took part in what.
//!
//! Items (pk / sk):
//! - `A#<assignment>` / `P`: a participation learned from an assignment (a
//!   notification, a backfill or a CSV row). While a handler works on it,
//!   it also carries a lease (`lease_owner`, `lease_until`; see
//!   [`super::exclusion`], whose protocol takes and settles it).
//! - `M#<worker>` / `P`: a participation the lab entered by hand, with no
//!   assignment (`exclude --worker`).
//!
//! Reads go through the `ByWorker` and `ByHit` indexes; exports and
//! reports scan the table ([`Ledger::all_participations`],
//! [`Ledger::snapshot`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::ReturnValue;
use time::{Duration, OffsetDateTime};

use super::claims;
use super::exclusion::{exclusion_from, ExclusionState, LastRelease};
use super::{
    corrupt, get_s, get_time, s, sdk_error, stamp, ClaimEnded, Item, Ledger, LedgerError,
    StoredClaim, BY_HIT, BY_WORKER, EVENT_DOC_ID, EXCLUDED_AT, HIT_ID, HIT_TYPE, HIT_TYPE_ID, PK,
    RELEASED_AT, RELEASE_REASON, SK, WORKER_ID,
};
use crate::ids::{AssignmentId, HitId, HitTypeId, QualificationTypeId, WorkerId};

const ASSIGNMENT_ID: &str = "assignment_id";
const SUBMIT_TIME: &str = "submit_time";
const LEARNED_BY: &str = "learned_by";
const RECORDED_AT: &str = "recorded_at";
const PARTICIPATION_SK: &str = "P";

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
    /// The one name of each way, as stored and as exported.
    pub fn as_str(&self) -> &'static str {
        match self {
            Learned::Notification { .. } => "notification",
            Learned::Backfill => "backfill",
            Learned::Manual => "manual",
            Learned::Reconcile => "reconcile",
        }
    }

    /// Reads a stored `learned_by` back; a notification needs its document id.
    fn parse(name: &str, event_doc_id: Option<&str>) -> Option<Learned> {
        Some(match name {
            "notification" => Learned::Notification {
                event_doc_id: event_doc_id?.to_owned(),
            },
            "backfill" => Learned::Backfill,
            "manual" => Learned::Manual,
            "reconcile" => Learned::Reconcile,
            _ => return None,
        })
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

/// A participation as the ledger holds it, read back typed.
///
/// Most participations come from an assignment. A worker the lab named by
/// hand (or found on MTurk by `reconcile`) has one participation without an
/// assignment or HIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participation {
    pub worker_id: WorkerId,
    pub assignment_id: Option<AssignmentId>,
    pub hit_id: Option<HitId>,
    pub hit_type_id: Option<HitTypeId>,
    pub submit_time: Option<OffsetDateTime>,
    /// How the ledger first learned of it.
    pub learned: Learned,
    /// The notification that told of it, if one did (also when it was
    /// first learned another way).
    pub event_doc_id: Option<String>,
    pub recorded_at: OffsetDateTime,
    /// When the worker was known to be excluded because of (or despite) this participation.
    pub excluded_at: Option<OffsetDateTime>,
    /// When the lab released (un-excluded) the worker; a stale event for this
    /// participation must not exclude them again.
    pub released_at: Option<OffsetDateTime>,
    pub release_reason: Option<String>,
}

/// Everything the ledger holds under one qualification that a report reads,
/// from one paged scan of the table: a snapshot ([`Ledger::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerContents {
    /// Every recorded participation (leases of assignments still being
    /// handled are left out), oldest recorded first.
    pub participations: Vec<Participation>,
    /// How many workers the ledger holds excluded now.
    pub excluded_now: usize,
    /// Every worker item with a release on it.
    pub releases: Vec<LastRelease>,
    /// The accept-time check's claims still stored (one per worker, the
    /// last; DynamoDB's TTL removes expired ones some time after expiry).
    pub claims: Vec<StoredClaim>,
    /// Assignments returned or abandoned in the last
    /// [`claims::END_MARKER_TTL`] (their markers expire after that).
    pub claim_ends: Vec<ClaimEnded>,
}

/// A new participation's item, as recorded (neither excluded nor released yet).
pub(super) fn new_participation_item(p: &NewParticipation, now: OffsetDateTime) -> Item {
    let mut item: Item = participation_key(&p.assignment_id);
    item.insert(WORKER_ID.into(), s(p.worker_id.as_str()));
    item.insert(ASSIGNMENT_ID.into(), s(p.assignment_id.as_str()));
    item.insert(HIT_ID.into(), s(p.hit_id.as_str()));
    item.insert(LEARNED_BY.into(), s(p.learned.as_str()));
    item.insert(RECORDED_AT.into(), s(stamp(now)));
    if let Some(t) = &p.hit_type_id {
        item.insert(HIT_TYPE.into(), s(t.as_str()));
    }
    if let Some(t) = p.submit_time {
        item.insert(SUBMIT_TIME.into(), s(stamp(t)));
    }
    if let Learned::Notification { event_doc_id } = &p.learned {
        item.insert(EVENT_DOC_ID.into(), s(event_doc_id.as_str()));
    }
    item
}

pub(super) fn participation_key(assignment: &AssignmentId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("A#{assignment}"))),
        (SK.to_owned(), s(PARTICIPATION_SK)),
    ])
}

pub(super) fn manual_key(worker: &WorkerId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("M#{worker}"))),
        (SK.to_owned(), s(PARTICIPATION_SK)),
    ])
}

impl Participation {
    /// Recorded, but neither excluded nor released yet: its grant failed or
    /// is still under way.
    pub fn is_pending(&self) -> bool {
        self.excluded_at.is_none() && self.released_at.is_none()
    }

    pub(super) fn key(&self) -> Item {
        match &self.assignment_id {
            Some(a) => participation_key(a),
            None => manual_key(&self.worker_id),
        }
    }

    /// What the exclusion record names as its cause.
    pub fn cause(&self) -> String {
        match &self.assignment_id {
            Some(a) => a.to_string(),
            None => self.learned.as_str().to_owned(),
        }
    }

    /// How long the worker could still take the lab's other studies: from
    /// MTurk's submit time to the ledger recording them excluded. Only for
    /// participations learned from a notification, whose exclusion followed
    /// their submission (a backfill's or a hand entry's did not).
    pub fn exposure(&self) -> Option<Duration> {
        match (&self.learned, self.submit_time, self.excluded_at) {
            (Learned::Notification { .. }, Some(submitted), Some(excluded)) => {
                Some((excluded - submitted).max(Duration::ZERO))
            }
            _ => None,
        }
    }
}

pub(super) fn participation_from(
    operation: &'static str,
    item: &Item,
) -> Result<Participation, LedgerError> {
    let need = |name: &str| {
        get_s(item, name).ok_or_else(|| corrupt(operation, format!("participation without {name}")))
    };
    let bad = |e: crate::ids::InvalidId| corrupt(operation, format!("participation: {e}"));
    let time = |name| get_time(operation, item, name);
    let event_doc_id = get_s(item, EVENT_DOC_ID);
    let learned_by = need(LEARNED_BY)?;
    let learned = Learned::parse(&learned_by, event_doc_id.as_deref()).ok_or_else(|| {
        corrupt(
            operation,
            format!("participation learned by {learned_by:?}, or a notification without its id"),
        )
    })?;
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
        hit_type_id: get_s(item, HIT_TYPE)
            .or_else(|| get_s(item, HIT_TYPE_ID))
            .map(|t| HitTypeId::parse(&t))
            .transpose()
            .map_err(bad)?,
        submit_time: time(SUBMIT_TIME)?,
        learned,
        event_doc_id,
        recorded_at: time(RECORDED_AT)?
            .ok_or_else(|| corrupt(operation, format!("participation without {RECORDED_AT}")))?,
        excluded_at: time(EXCLUDED_AT)?,
        released_at: time(RELEASED_AT)?,
        release_reason: get_s(item, RELEASE_REASON),
    })
}

impl Ledger {
    /// The participation for an assignment, if the ledger has it. A lease
    /// alone (a copy of the notification still at work) is not one: `None`.
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
        // An item without a worker is only a lease: a copy of the
        // notification is still looking the assignment up, nothing is
        // recorded yet.
        out.item
            .as_ref()
            .filter(|i| i.contains_key(WORKER_ID))
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
            sets.push(format!("{HIT_TYPE} = if_not_exists({HIT_TYPE}, :hit_type)"));
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
        // A lease (an assignment still being looked up) has the same key
        // shape but no worker yet: not a participation.
        let participations = format!("{SK} = :p AND attribute_exists({WORKER_ID})");
        scan = match since {
            Some(t) => scan
                .filter_expression(format!("{participations} AND {RECORDED_AT} >= :since"))
                .expression_attribute_values(":since", s(stamp(t))),
            None => scan.filter_expression(participations),
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
        all.sort_by_key(|a| a.recorded_at);
        Ok(all)
    }

    /// Reads the whole table once, in pages, and keeps what a report needs
    /// about `qualification`: participations, exclusions and releases, the
    /// check's claims and their end markers. A full scan (every item is
    /// read once): for reports, never for the per-event path.
    pub async fn snapshot(
        &self,
        qualification: &QualificationTypeId,
    ) -> Result<LedgerContents, LedgerError> {
        const OP: &str = "Scan(snapshot)";
        let exclusion_sk = format!("X#{qualification}");
        let claim_sk = format!("C#{qualification}");
        let mut snapshot = LedgerContents::default();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.try_next().await.map_err(|e| sdk_error(OP, e))? {
            let (Some(pk), Some(sk)) = (get_s(&item, PK), get_s(&item, SK)) else {
                continue;
            };
            if sk == PARTICIPATION_SK {
                // Without a worker: a lease, its assignment still being handled.
                if item.contains_key(WORKER_ID) {
                    snapshot.participations.push(participation_from(OP, &item)?);
                }
            } else if pk.starts_with("W#") && sk == exclusion_sk {
                let x = exclusion_from(OP, &item)?;
                if x.state == ExclusionState::Excluded {
                    snapshot.excluded_now += 1;
                }
                if let Some(released_at) = x.released_at {
                    snapshot.releases.push(LastRelease {
                        worker_id: x.worker_id,
                        state: x.state,
                        released_at,
                        reason: get_s(&item, RELEASE_REASON),
                    });
                }
            } else if claims::is_claim(&pk, &sk, &claim_sk) {
                snapshot.claims.extend(claims::stored_claim(OP, &item)?);
            } else if let Some(ended) = claims::claim_ended_from(OP, &pk, &item)? {
                snapshot.claim_ends.push(ended);
            }
        }
        snapshot.participations.sort_by_key(|p| p.recorded_at);
        Ok(snapshot)
    }
}
