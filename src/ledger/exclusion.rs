//! Exclusions: who is excluded, and the one protocol that excludes them.
//!
//! Items (pk / sk):
//! - `W#<worker>` / `X#<qualification>`: the worker's exclusion under one
//!   qualification: its state (excluded or released), why and when, a
//!   `version` every change of standing raises, and `granting_until` while
//!   a grant may be in flight. It carries `excluded_q` only while excluded,
//!   which makes the `Excluded` index list exactly the excluded workers.
//! - The participation item (`A#<assignment>` or `M#<worker>` / `P`, see
//!   [`super::participation`]): the lease a handler holds on an assignment
//!   while it works on it, and the participation's `excluded_at` or
//!   `released_at` once settled.
//!
//! The protocol, in the order a handler runs it: take the assignment's
//! lease ([`Ledger::lease_assignment`]); begin the exclusion in the
//! worker's item before any grant, opening a grant window
//! ([`Ledger::begin_exclusion`]); close the window if the grant failed
//! ([`Ledger::close_grant_window`]), recording the participation as
//! pending ([`Ledger::record_pending`]); or settle both items in one
//! transaction ([`Ledger::finish_exclusion`]). A release
//! ([`Ledger::record_release`]) raises the worker's version, so a
//! settlement based on what was read before it fails and decides again.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, ReturnValue, TransactWriteItem, Update};
use time::{Duration, OffsetDateTime};

use super::participation::{new_participation_item, participation_from, participation_key};
use super::{
    condition_failed_item, corrupt, get_n, get_s, get_time, n, parse_stamp, s, sdk_error, stamp,
    unless_condition_failed, Item, Ledger, LedgerError, LedgerErrorKind, NewParticipation,
    Participation, EXCLUDED, EXCLUDED_AT, EXCLUDED_Q, PK, RELEASED_AT, RELEASE_REASON, SK,
    WORKER_ID,
};
use crate::ids::{AssignmentId, QualificationTypeId, WorkerId};

const QUALIFICATION_TYPE_ID: &str = "qualification_type_id";
pub(super) const STATE: &str = "state";
const EXCLUDED_BECAUSE: &str = "excluded_because";
const VERSION: &str = "version";
const GRANTING_UNTIL: &str = "granting_until";
const LEASE_OWNER: &str = "lease_owner";
const LEASE_UNTIL: &str = "lease_until";

/// The release reason the ledger writes on a participation that arrived
/// after its worker's release and was submitted before it (kept released):
/// no release of its own, only the rule applied.
pub const KEPT_RELEASED_REASON: &str = "submitted before the worker was released: kept released";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExclusionState {
    Excluded,
    Released,
}

impl ExclusionState {
    /// The one name of each state, wherever it is printed or exported.
    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionState::Excluded => "excluded",
            ExclusionState::Released => "released",
        }
    }

    /// The name of a worker's standing, the ledger having none included.
    pub fn name_of(state: Option<ExclusionState>) -> &'static str {
        state.map_or("not_excluded", ExclusionState::as_str)
    }
}

/// A worker's standing under the lab's qualification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub worker_id: WorkerId,
    pub state: ExclusionState,
    pub excluded_at: Option<OffsetDateTime>,
    /// The assignment id, or how a participation without one was learned.
    pub excluded_because: Option<String>,
    pub released_at: Option<OffsetDateTime>,
    /// Raised by every write that changes the worker's standing: the handler
    /// and `release` condition their last writes on it, so the side that
    /// loses a race decides again.
    pub version: u64,
    /// Set while a grant may be in flight: no grant is sent after it. A
    /// release waits it out before revoking.
    pub granting_until: Option<OffsetDateTime>,
}

/// A worker's standing as its item records the last release (the item
/// keeps `released_at` after the worker is excluded again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRelease {
    pub worker_id: WorkerId,
    /// The standing now: `Excluded` when excluded again since.
    pub state: ExclusionState,
    pub released_at: OffsetDateTime,
    /// The note of a release that had one (a later release without a note
    /// leaves an earlier note in place).
    pub reason: Option<String>,
}

/// What taking an assignment's lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This caller holds the assignment until the lease runs out.
    Taken,
    /// The ledger already has this participation.
    Known(Box<Participation>),
    /// Another caller holds a live lease on it: its copy is being handled.
    Busy,
}

/// Which released workers a new exclusion may exclude again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgainIf {
    /// Only for a submission known to come after the release.
    SubmittedAfterRelease(Option<OffsetDateTime>),
    /// Always: the lab asked explicitly.
    Always,
}

/// What starting an exclusion found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The ledger now says excluded (version `version`): grant before `until`.
    Grant { version: u64, until: OffsetDateTime },
    /// The worker is excluded already.
    AlreadyExcluded { version: u64 },
    /// Another attempt's grant window is open until `until`: try again after it.
    GrantInFlight { until: String },
    /// The worker was released after this participation: it grants nothing.
    KeptReleased {
        version: u64,
        released_at: Option<String>,
    },
}

/// How a participation settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Excluded; `granted` clears the grant window this caller opened.
    Excluded {
        granted: bool,
    },
    KeptReleased,
}

/// The participation a settlement writes: one the ledger does not have
/// yet, or one it has.
pub enum ToSettle<'a> {
    /// A participation the ledger does not have yet, written whole, held by
    /// this lease owner (or by nobody: the CLI's backfill).
    New {
        participation: &'a NewParticipation,
        lease_owner: Option<&'a str>,
    },
    /// A participation the ledger has (by hand, or recorded by an older version).
    Existing(&'a Participation),
}

/// What settling came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Done,
    /// The worker's standing changed since it was read: decide again.
    WorkerChanged,
    /// Another writer recorded this participation first.
    ParticipationTaken,
}

/// What recording a release found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    /// The ledger said released already (nothing changed on the worker's item).
    pub already_released: bool,
    /// The version the worker's item has now.
    pub version: u64,
    /// A grant may still be in flight until then: revoke only after it.
    pub grant_in_flight_until: Option<OffsetDateTime>,
    /// Participations newly marked released.
    pub participations: Vec<Participation>,
}

fn exclusion_key(worker: &WorkerId, qualification: &QualificationTypeId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("W#{worker}"))),
        (SK.to_owned(), s(format!("X#{qualification}"))),
    ])
}

pub(super) fn exclusion_from(
    operation: &'static str,
    item: &Item,
) -> Result<Exclusion, LedgerError> {
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
        excluded_at: get_time(operation, item, EXCLUDED_AT)?,
        excluded_because: get_s(item, EXCLUDED_BECAUSE),
        released_at: get_time(operation, item, RELEASED_AT)?,
        version: get_n(item, VERSION).unwrap_or(0),
        granting_until: get_time(operation, item, GRANTING_UNTIL)?,
    })
}

impl Ledger {
    /// Takes the lease on a submitted assignment before any MTurk call, so
    /// that copies of one notification handled at once by two instances
    /// cost one look-up and one grant, not two. One conditional write that
    /// also tells, in the same round trip, whether the participation is
    /// known already. An expired lease is taken over, so a crash loses nothing.
    pub async fn lease_assignment(
        &self,
        assignment: &AssignmentId,
        owner: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Lease, LedgerError> {
        const OP: &str = "UpdateItem(assignment lease)";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(participation_key(assignment)))
            .update_expression(format!(
                "SET {LEASE_OWNER} = :owner, {LEASE_UNTIL} = :until"
            ))
            .condition_expression(format!(
                "attribute_not_exists({PK}) OR \
                 (attribute_not_exists({WORKER_ID}) AND {LEASE_UNTIL} < :now)"
            ))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", s(stamp(now + lease)))
            .expression_attribute_values(":now", s(stamp(now)))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lease::Taken),
            Err(e) => match condition_failed_item(&e) {
                Some(Some(item)) if item.contains_key(WORKER_ID) => {
                    Ok(Lease::Known(Box::new(participation_from(OP, &item)?)))
                }
                Some(_) => Ok(Lease::Busy),
                None => Err(sdk_error(OP, e)),
            },
        }
    }

    /// Gives a lease back early (after a failure), so the redelivery need
    /// not wait for it to run out. Best effort: a lease someone else took
    /// over, or a participation recorded meanwhile, is left alone.
    pub async fn release_lease(
        &self,
        assignment: &AssignmentId,
        owner: &str,
    ) -> Result<(), LedgerError> {
        const OP: &str = "DeleteItem(assignment lease)";
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(participation_key(assignment)))
            .condition_expression(format!(
                "{LEASE_OWNER} = :owner AND attribute_not_exists({WORKER_ID})"
            ))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        unless_condition_failed(OP, result)?;
        Ok(())
    }

    /// Starts excluding a worker: records them as excluded *before* any
    /// grant (ledger first), and opens a grant window, in one conditional
    /// write that also applies the release rule. A worker the lab released
    /// is excluded again only when `again` says so; otherwise the answer is
    /// `KeptReleased` and nothing is written.
    pub async fn begin_exclusion(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        again: AgainIf,
        because: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> Result<Begin, LedgerError> {
        const OP: &str = "UpdateItem(exclusion begun)";
        let until = now + window;
        // Never excluded; or a grant window that ran out unfinished (its
        // caller crashed or failed): take it over.
        let mut condition = format!(
            "attribute_not_exists({PK}) OR (#state = :excluded AND {GRANTING_UNTIL} < :now)"
        );
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            .update_expression(format!(
                "SET {WORKER_ID} = :worker, {QUALIFICATION_TYPE_ID} = :q, #state = :excluded, \
                 {EXCLUDED_Q} = :q, {EXCLUDED_AT} = :now, {EXCLUDED_BECAUSE} = :because, \
                 {VERSION} = if_not_exists({VERSION}, :zero) + :one, {GRANTING_UNTIL} = :until"
            ))
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":q", s(qualification.as_str()))
            .expression_attribute_values(":excluded", s(ExclusionState::Excluded.as_str()))
            .expression_attribute_values(":now", s(stamp(now)))
            .expression_attribute_values(":until", s(stamp(until)))
            .expression_attribute_values(":because", s(because))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            );
        match again {
            AgainIf::Always => {
                condition.push_str(" OR #state = :released");
                update = update
                    .expression_attribute_values(":released", s(ExclusionState::Released.as_str()));
            }
            AgainIf::SubmittedAfterRelease(Some(submitted)) => {
                condition.push_str(&format!(
                    " OR (#state = :released AND {RELEASED_AT} < :submitted)"
                ));
                update = update
                    .expression_attribute_values(":released", s(ExclusionState::Released.as_str()))
                    .expression_attribute_values(":submitted", s(stamp(submitted)));
            }
            // Submitted at an unknown time: a release stands.
            AgainIf::SubmittedAfterRelease(None) => {}
        }
        match update.condition_expression(condition).send().await {
            Ok(out) => {
                let new = out.attributes.unwrap_or_default();
                Ok(Begin::Grant {
                    version: get_n(&new, VERSION).unwrap_or(0),
                    until,
                })
            }
            Err(e) => match condition_failed_item(&e) {
                Some(old) => Ok(not_begun(&old.unwrap_or_default())),
                None => Err(sdk_error(OP, e)),
            },
        }
    }

    /// Closes a grant window whose grant failed, so that the next attempt
    /// takes it over at once instead of waiting for it to run out. Only the
    /// window this caller opened (`version`) is closed.
    pub async fn close_grant_window(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem(grant window closed)";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            // Long past, so that the next attempt's "ran out" test holds at once.
            .update_expression(format!("SET {GRANTING_UNTIL} = :closed"))
            .condition_expression(format!(
                "{VERSION} = :v AND attribute_exists({GRANTING_UNTIL})"
            ))
            .expression_attribute_values(":v", n(version))
            .expression_attribute_values(":closed", s(stamp(now - Duration::days(1))))
            .send()
            .await;
        match result.map_err(|e| sdk_error(OP, e)) {
            Err(e) if e.kind != LedgerErrorKind::ConditionFailed => Err(e),
            _ => Ok(()),
        }
    }

    /// Records a participation whose worker is known but whose exclusion
    /// failed (throttled, MTurk down), in place of the lease: its redelivery
    /// then needs no MTurk look-up, and `status` shows it waiting.
    pub async fn record_pending(
        &self,
        p: &NewParticipation,
        lease_owner: &str,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "PutItem(participation pending)";
        let item = new_participation_item(p, now);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!(
                "attribute_not_exists({WORKER_ID}) AND {LEASE_OWNER} = :owner"
            ))
            .expression_attribute_values(":owner", s(lease_owner))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    /// Settles a participation in one transaction: the participation is
    /// written (excluded, or kept released) and the worker's grant window is
    /// closed, both only if the worker's item still has `version`. If a
    /// release came in between, nothing is written and the caller decides
    /// again.
    pub async fn finish_exclusion(
        &self,
        record: ToSettle<'_>,
        qualification: &QualificationTypeId,
        version: u64,
        settled: Settled,
        released_at: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Finished, LedgerError> {
        let worker = match &record {
            ToSettle::New { participation, .. } => &participation.worker_id,
            ToSettle::Existing(p) => &p.worker_id,
        };
        let worker_item =
            self.settled_worker_item(exclusion_key(worker, qualification), version, settled)?;
        let participation_item = match record {
            ToSettle::New {
                participation,
                lease_owner,
            } => self.settled_new_participation(
                participation,
                lease_owner,
                settled,
                released_at,
                now,
            )?,
            ToSettle::Existing(p) => self.settled_participation(p, settled, released_at, now)?,
        };
        // The worker's item first: `settlement_refused` reads the
        // cancellation reasons in this order.
        let result = self
            .client
            .transact_write_items()
            .transact_items(worker_item)
            .transact_items(participation_item)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Finished::Done),
            Err(e) => settlement_refused(&e).ok_or_else(|| sdk_error(SETTLE_OP, e)),
        }
    }

    /// The worker's side of a settlement: the grant this caller sent closes
    /// its window; otherwise the worker's item is only checked. Either holds
    /// only if the worker's standing is still at `version`.
    fn settled_worker_item(
        &self,
        worker_key: Item,
        version: u64,
        settled: Settled,
    ) -> Result<TransactWriteItem, LedgerError> {
        Ok(match settled {
            Settled::Excluded { granted: true } => TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(worker_key))
                        .update_expression(format!("REMOVE {GRANTING_UNTIL}"))
                        .condition_expression(format!("{VERSION} = :v"))
                        .expression_attribute_values(":v", n(version))
                        .build()
                        .map_err(settle_build_error)?,
                )
                .build(),
            _ => TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(worker_key))
                        .condition_expression(format!(
                            "{VERSION} = :v OR (attribute_not_exists({VERSION}) AND :v = :zero)"
                        ))
                        .expression_attribute_values(":v", n(version))
                        .expression_attribute_values(":zero", n(0))
                        .build()
                        .map_err(settle_build_error)?,
                )
                .build(),
        })
    }

    /// A new participation's side of a settlement: written whole, in place
    /// of this owner's lease (or of nothing, for a caller without one).
    fn settled_new_participation(
        &self,
        p: &NewParticipation,
        lease_owner: Option<&str>,
        settled: Settled,
        released_at: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<TransactWriteItem, LedgerError> {
        let stamp_now = stamp(now);
        let mut item = new_participation_item(p, now);
        match settled {
            Settled::Excluded { .. } => {
                item.insert(EXCLUDED_AT.into(), s(stamp_now.clone()));
            }
            Settled::KeptReleased => {
                item.insert(RELEASED_AT.into(), s(released_at.unwrap_or(&stamp_now)));
                item.insert(RELEASE_REASON.into(), s(KEPT_RELEASED_REASON));
            }
        }
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        put = match lease_owner {
            Some(owner) => put
                .condition_expression(format!(
                    "attribute_not_exists({WORKER_ID}) AND \
                     (attribute_not_exists({PK}) OR {LEASE_OWNER} = :owner)"
                ))
                .expression_attribute_values(":owner", s(owner)),
            None => put.condition_expression(format!(
                "attribute_not_exists({WORKER_ID}) AND attribute_not_exists({LEASE_OWNER})"
            )),
        };
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(settle_build_error)?)
            .build())
    }

    /// A participation's side of a settlement when the ledger has it already.
    fn settled_participation(
        &self,
        p: &Participation,
        settled: Settled,
        released_at: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<TransactWriteItem, LedgerError> {
        let stamp_now = stamp(now);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(p.key()))
            .condition_expression(format!("attribute_exists({WORKER_ID})"))
            .expression_attribute_values(":now", s(stamp_now.clone()));
        let update = match settled {
            // Excluded again (the lab overrode its release): no longer released.
            Settled::Excluded { .. } => update.update_expression(format!(
                "SET {EXCLUDED_AT} = if_not_exists({EXCLUDED_AT}, :now) \
                 REMOVE {RELEASED_AT}, {RELEASE_REASON}"
            )),
            Settled::KeptReleased => update
                .update_expression(format!("SET {RELEASED_AT} = :released"))
                .expression_attribute_values(":released", s(released_at.unwrap_or(&stamp_now))),
        };
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(settle_build_error)?)
            .build())
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
                 {EXCLUDED_Q} = :q, {EXCLUDED_AT} = :now, {EXCLUDED_BECAUSE} = :because, \
                 {VERSION} = if_not_exists({VERSION}, :zero) + :one REMOVE {GRANTING_UNTIL}"
            ))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":q", s(qualification.as_str()))
            .expression_attribute_values(":excluded", s(ExclusionState::Excluded.as_str()))
            .expression_attribute_values(":now", s(stamp(now)))
            .expression_attribute_values(":because", s(because))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
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

    /// Marks the worker released under `qualification` (the worker's item
    /// first: it is where the handler and a release serialise), then every
    /// participation of theirs the ByWorker index shows, so stale events do
    /// not exclude them again. A participation the index does not show yet
    /// is covered by the worker's `released_at`, which the handler checks.
    /// An already released worker keeps their first `released_at`.
    pub async fn record_release(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<ReleaseRecord, LedgerError> {
        let mut record = self
            .release_worker(worker, qualification, reason, now)
            .await?;
        record.participations = self.release_participations(worker, reason, now).await?;
        Ok(record)
    }

    /// The worker's side of a release: one conditional write that tells
    /// whether the worker was released already, the version their item has
    /// now and any grant window still open. No participations yet.
    async fn release_worker(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<ReleaseRecord, LedgerError> {
        const OP: &str = "UpdateItem(exclusion released)";
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            .condition_expression(format!("attribute_not_exists({PK}) OR #state <> :released"))
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":q", s(qualification.as_str()))
            .expression_attribute_values(":released", s(ExclusionState::Released.as_str()))
            .expression_attribute_values(":now", s(stamp(now)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            );
        let set = format!(
            "SET {WORKER_ID} = :worker, {QUALIFICATION_TYPE_ID} = :q, #state = :released, \
             {RELEASED_AT} = :now, {VERSION} = if_not_exists({VERSION}, :zero) + :one"
        );
        update = match reason {
            Some(r) => update
                .update_expression(format!(
                    "{set}, {RELEASE_REASON} = :reason REMOVE {EXCLUDED_Q}, {GRANTING_UNTIL}"
                ))
                .expression_attribute_values(":reason", s(r)),
            None => {
                update.update_expression(format!("{set} REMOVE {EXCLUDED_Q}, {GRANTING_UNTIL}"))
            }
        };
        let (already_released, version, grant_in_flight_until) = match update.send().await {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                let until = get_s(&old, GRANTING_UNTIL).and_then(|t| parse_stamp(&t));
                (false, get_n(&old, VERSION).unwrap_or(0) + 1, until)
            }
            Err(e) => match condition_failed_item(&e) {
                Some(old) => {
                    let old = old.unwrap_or_default();
                    (true, get_n(&old, VERSION).unwrap_or(0), None)
                }
                None => return Err(sdk_error(OP, e)),
            },
        };
        Ok(ReleaseRecord {
            already_released,
            version,
            grant_in_flight_until,
            participations: Vec::new(),
        })
    }

    /// The participations' side of a release: each one of the worker's not
    /// released yet is marked released. Returns those it marked.
    async fn release_participations(
        &self,
        worker: &WorkerId,
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
        Ok(released)
    }
}

/// The operation a settlement's errors name.
const SETTLE_OP: &str = "TransactWriteItems(exclusion settled)";

fn settle_build_error(e: aws_sdk_dynamodb::error::BuildError) -> LedgerError {
    corrupt(SETTLE_OP, e.to_string())
}

/// Which side of a settlement refused it, when its transaction was
/// cancelled by a condition: the worker's item (first) or the
/// participation's (second). `None`: any other failure.
fn settlement_refused<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Finished> {
    let SdkError::ServiceError(ctx) = err else {
        return None;
    };
    let TransactWriteItemsError::TransactionCanceledException(c) = ctx.err() else {
        return None;
    };
    let failed = |i: usize| {
        c.cancellation_reasons()
            .get(i)
            .and_then(|r| r.code())
            .is_some_and(|code| code == "ConditionalCheckFailed")
    };
    if failed(0) {
        Some(Finished::WorkerChanged)
    } else if failed(1) {
        Some(Finished::ParticipationTaken)
    } else {
        None
    }
}

/// Why an exclusion did not begin, from the worker's item its condition
/// found.
fn not_begun(old: &Item) -> Begin {
    let version = get_n(old, VERSION).unwrap_or(0);
    match (get_s(old, STATE).as_deref(), get_s(old, GRANTING_UNTIL)) {
        (Some("released"), _) => Begin::KeptReleased {
            version,
            released_at: get_s(old, RELEASED_AT),
        },
        // Open and not run out (else the condition took it over).
        (_, Some(until)) => Begin::GrantInFlight { until },
        _ => Begin::AlreadyExcluded { version },
    }
}
