//! Claims: the accept-time check's hold on a worker, one study at a time.
//!
//! Items (pk / sk):
//! - `WC#<worker>` / `C#<qualification>`: the worker's one claim. Attributes
//!   `claim_assignment`, `claim_hit`, `claimed_at` (stamp) and `expires_at`
//!   (epoch seconds, the table's TTL attribute, which also removes it some
//!   time after it expired). A partition of its own, apart from the
//!   worker's exclusion (`W#<worker>` / `X#<qualification>`): IAM can limit
//!   a role's writes by partition key only (`dynamodb:LeadingKeys`), so this
//!   is what lets the public check's role write claims and nothing of the
//!   exclusions. The check reads both at once (a GetItem and a Query, in
//!   parallel).
//! - `W#<worker>` / `C#<qualification>`: a claim as releases up to 0.2.0
//!   wrote it, next to the exclusion. No longer written; the check still
//!   honours one that is live (read-only, in the same Query as the
//!   exclusion) until it expires, at most `ClaimMinutes` after the upgrade,
//!   and `clear-claim` removes it.
//! - `CLAIMEND#<assignment>` / `E`: an assignment returned or abandoned,
//!   written by the SQS handler from the notification alone (which carries
//!   no worker id). A claim on that assignment is over; the check reads the
//!   marker only when it finds a live claim on another assignment.
//!   Expires after [`END_MARKER_TTL`], longer than any claim can live.
//!
//! The claim items deliberately carry none of the indexed attributes
//! (`worker_id`, `hit_id`, `hit_type_id`, `excluded_q`), so they never show
//! up in the ledger's indexes, which list participations and exclusions.
//!
//! A claim lasts the shorter of `ClaimMinutes` and its HIT's
//! `AssignmentDurationInSeconds`: it never outlives the assignment it names,
//! and no later check extends it.
//!
//! Exactly one claim per worker: a claim is only ever written by a
//! conditional UpdateItem whose condition says the claim it replaces is
//! absent, expired, made at or before the worker's release, or on an
//! assignment known to be returned or abandoned. Of N concurrent checks for
//! one worker, exactly one write succeeds; the others fail the condition,
//! read again and see the winner's claim.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use time::{Duration, OffsetDateTime};

use super::exclusion::{ExclusionState, STATE};
use super::{
    corrupt, get_s, get_time, s, sdk_error, stamp, Item, Ledger, LedgerError, EXPIRES_AT, PK,
    RELEASED_AT, SK,
};
use crate::ids::{AssignmentId, HitId, QualificationTypeId, WorkerId};

const CLAIM_ASSIGNMENT: &str = "claim_assignment";
const CLAIM_HIT: &str = "claim_hit";
const CLAIMED_AT: &str = "claimed_at";
const ENDED_BY: &str = "ended_by";
const ENDED_AT: &str = "ended_at";
const END_MARKER_SK: &str = "E";

/// The longest claim the check may be configured for (the template's
/// `ClaimMinutes` maximum, 7 days).
pub const MAX_CLAIM: Duration = Duration::minutes(10_080);

/// How long a returned or abandoned assignment's marker is kept: longer than
/// any claim made before it can live.
pub const END_MARKER_TTL: Duration = Duration::days(8);

/// An open (or expired, or ended) claim as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub assignment_id: String,
    pub hit_id: String,
    pub claimed_at: String,
    /// Epoch seconds.
    pub expires_at: i64,
}

/// What the check needs to know about one worker, read in one Query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// The exclusion item's state is `excluded`: a participation the lab
    /// has not released.
    pub took_part: bool,
    /// When the lab last released the worker (claims made at or before it
    /// do not count).
    pub released_at: Option<String>,
    pub claim: Option<Claim>,
    /// A claim where releases up to 0.2.0 wrote it (`W#<worker>` /
    /// `C#<qualification>`), honoured until it expires.
    pub legacy_claim: Option<Claim>,
}

/// A claim as a report reads it: no worker id (the claim item's key holds
/// it; a report counts claims, one per worker, and needs no more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClaim {
    pub assignment_id: String,
    pub hit_id: String,
    pub claimed_at: OffsetDateTime,
    /// Epoch seconds.
    pub expires_at: i64,
}

/// An assignment's end marker: returned or abandoned, and when the handler
/// learned of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimEnded {
    pub assignment_id: String,
    /// `returned` or `abandoned`.
    pub ended_by: String,
    pub ended_at: Option<OffsetDateTime>,
}

/// A claim item read for a report (`None`: an item left without a claim).
pub(super) fn stored_claim(
    op: &'static str,
    item: &Item,
) -> Result<Option<StoredClaim>, LedgerError> {
    if !item.contains_key(CLAIM_ASSIGNMENT) {
        return Ok(None);
    }
    let Some(claimed_at) = get_time(op, item, CLAIMED_AT)? else {
        return Ok(None);
    };
    Ok(Some(StoredClaim {
        assignment_id: get_s(item, CLAIM_ASSIGNMENT).unwrap_or_default(),
        hit_id: get_s(item, CLAIM_HIT).unwrap_or_default(),
        claimed_at,
        expires_at: get_n(item, EXPIRES_AT).unwrap_or(0),
    }))
}

/// An end marker, if `pk` is one's.
pub(super) fn claim_ended_from(
    op: &'static str,
    pk: &str,
    item: &Item,
) -> Result<Option<ClaimEnded>, LedgerError> {
    let Some(assignment_id) = pk.strip_prefix("CLAIMEND#") else {
        return Ok(None);
    };
    let ended_by =
        get_s(item, ENDED_BY).ok_or_else(|| corrupt(op, "claim end without ended_by".into()))?;
    Ok(Some(ClaimEnded {
        assignment_id: assignment_id.to_owned(),
        ended_by,
        ended_at: get_time(op, item, ENDED_AT)?,
    }))
}

/// Why a claim ended before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimEnd {
    Returned,
    Abandoned,
}

impl ClaimEnd {
    fn as_str(self) -> &'static str {
        match self {
            ClaimEnd::Returned => "returned",
            ClaimEnd::Abandoned => "abandoned",
        }
    }
}

/// What a claim may replace, as the check read it just before.
#[derive(Debug, Clone, Default)]
pub struct Replaceable<'a> {
    /// The worker's last release, if any.
    pub released_at: Option<&'a str>,
    /// The current claim's assignment, when its marker says it ended.
    pub ended_assignment: Option<&'a str>,
}

/// The partition prefix of claims (the check's role may write it).
pub const CLAIM_PREFIX: &str = "WC#";

fn claim_key(worker: &WorkerId, qualification: &QualificationTypeId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("{CLAIM_PREFIX}{worker}"))),
        (SK.to_owned(), s(format!("C#{qualification}"))),
    ])
}

fn legacy_claim_key(worker: &WorkerId, qualification: &QualificationTypeId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("W#{worker}"))),
        (SK.to_owned(), s(format!("C#{qualification}"))),
    ])
}

/// Whether an item with these keys is a claim under `claim_sk`, in either
/// layout.
pub(super) fn is_claim(pk: &str, sk: &str, claim_sk: &str) -> bool {
    sk == claim_sk && (pk.starts_with(CLAIM_PREFIX) || pk.starts_with("W#"))
}

fn claim_from(item: &Item) -> Option<Claim> {
    let (Some(assignment_id), Some(claimed_at)) =
        (get_s(item, CLAIM_ASSIGNMENT), get_s(item, CLAIMED_AT))
    else {
        return None;
    };
    Some(Claim {
        assignment_id,
        hit_id: get_s(item, CLAIM_HIT).unwrap_or_default(),
        claimed_at,
        expires_at: get_n(item, EXPIRES_AT).unwrap_or(0),
    })
}

fn end_marker_pk(assignment: &str) -> String {
    format!("CLAIMEND#{assignment}")
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

impl Ledger {
    /// The worker's exclusion and claim under `qualification`: one
    /// consistent Query of the worker's partition (sk from `C#<q>` to
    /// `X#<q>`: the exclusion and a claim of the old layout) and, at the same
    /// time, one consistent GetItem of the claim.
    pub async fn standing(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
    ) -> Result<Standing, LedgerError> {
        const OP: &str = "Query(worker standing)";
        const GET: &str = "GetItem(claim)";
        let claim_sk = format!("C#{qualification}");
        let exclusion_sk = format!("X#{qualification}");
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{PK} = :pk AND {SK} BETWEEN :c AND :x"))
            .expression_attribute_values(":pk", s(format!("W#{worker}")))
            .expression_attribute_values(":c", s(claim_sk.as_str()))
            .expression_attribute_values(":x", s(exclusion_sk.as_str()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>();
        let get = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(claim_key(worker, qualification)))
            .consistent_read(true)
            .send();
        let (items, claim) = futures::join!(query, get);
        let items: Vec<Item> = items.map_err(|e| sdk_error(OP, e))?;
        let claim = claim.map_err(|e| sdk_error(GET, e))?;
        let mut standing = Standing {
            claim: claim.item.as_ref().and_then(claim_from),
            ..Standing::default()
        };
        for item in &items {
            let sk = get_s(item, SK).unwrap_or_default();
            if sk == exclusion_sk {
                standing.took_part =
                    get_s(item, STATE).as_deref() == Some(ExclusionState::Excluded.as_str());
                standing.released_at = get_s(item, RELEASED_AT);
            } else if sk == claim_sk {
                standing.legacy_claim = claim_from(item);
            }
        }
        Ok(standing)
    }

    /// Whether an AssignmentReturned or AssignmentAbandoned notification
    /// ended claims on `assignment` (a consistent Query of its marker).
    pub async fn claim_ended(&self, assignment: &str) -> Result<bool, LedgerError> {
        const OP: &str = "Query(claim end)";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{PK} = :pk"))
            .expression_attribute_values(":pk", s(end_marker_pk(assignment)))
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(out.count > 0)
    }

    /// Claims `worker` for `assignment` until `now + duration`, unless
    /// another claim holds them. Returns whether this write won.
    ///
    /// The condition: no claim, or an expired one, or one made at or before
    /// the release the caller read, or one on the assignment the caller read
    /// as ended. DynamoDB evaluates it atomically with the write, so of N
    /// concurrent calls for one worker at most one succeeds.
    #[allow(clippy::too_many_arguments)]
    pub async fn try_claim(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        assignment: &AssignmentId,
        hit: &HitId,
        now: OffsetDateTime,
        duration: Duration,
        replaceable: Replaceable<'_>,
    ) -> Result<bool, LedgerError> {
        const OP: &str = "UpdateItem(claim)";
        let mut condition = format!(
            "attribute_not_exists({CLAIM_ASSIGNMENT}) OR attribute_not_exists({CLAIMED_AT}) \
             OR {EXPIRES_AT} <= :now_s"
        );
        let mut values: Item = HashMap::from([
            (":a".to_owned(), s(assignment.as_str())),
            (":h".to_owned(), s(hit.as_str())),
            (":now".to_owned(), s(stamp(now))),
            (
                ":now_s".to_owned(),
                AttributeValue::N(now.unix_timestamp().to_string()),
            ),
            (
                ":exp".to_owned(),
                AttributeValue::N((now + duration).unix_timestamp().to_string()),
            ),
        ]);
        if let Some(released) = replaceable.released_at {
            condition.push_str(&format!(" OR {CLAIMED_AT} <= :released"));
            values.insert(":released".into(), s(released));
        }
        if let Some(ended) = replaceable.ended_assignment {
            condition.push_str(&format!(" OR {CLAIM_ASSIGNMENT} = :ended"));
            values.insert(":ended".into(), s(ended));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(claim_key(worker, qualification)))
            .update_expression(format!(
                "SET {CLAIM_ASSIGNMENT} = :a, {CLAIM_HIT} = :h, {CLAIMED_AT} = :now, \
                 {EXPIRES_AT} = :exp"
            ))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error(OP, e)),
        }
    }

    /// Ends every claim on `assignment` (returned or abandoned), from the
    /// notification alone: one unconditional write of the assignment's end
    /// marker, keeping the first time and cause. The check treats a claim on
    /// a marked assignment as free.
    pub async fn end_claim(
        &self,
        assignment: &AssignmentId,
        end: ClaimEnd,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem(claim end)";
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(end_marker_pk(assignment.as_str())))
            .key(SK, s(END_MARKER_SK))
            .update_expression(format!(
                "SET {ENDED_BY} = if_not_exists({ENDED_BY}, :by), \
                 {ENDED_AT} = if_not_exists({ENDED_AT}, :now), {EXPIRES_AT} = :exp"
            ))
            .expression_attribute_values(":by", s(end.as_str()))
            .expression_attribute_values(":now", s(stamp(now)))
            .expression_attribute_values(
                ":exp",
                AttributeValue::N((now + END_MARKER_TTL).unix_timestamp().to_string()),
            )
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    /// Clears the worker's claim under `qualification` (the lab's
    /// `clear-claim`), in either layout: two DeleteItems. Returns the claims
    /// removed (none: the worker had no claim stored).
    pub async fn clear_claim(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
    ) -> Result<Vec<StoredClaim>, LedgerError> {
        const OP: &str = "DeleteItem(claim)";
        let mut cleared = Vec::new();
        for key in [
            claim_key(worker, qualification),
            legacy_claim_key(worker, qualification),
        ] {
            let out = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| sdk_error(OP, e))?;
            if let Some(old) = out.attributes {
                cleared.extend(stored_claim(OP, &old)?);
            }
        }
        Ok(cleared)
    }

    /// Every claim stored under `qualification`, live or not, without worker
    /// ids (`status` counts them). A filtered scan of the table: for the CLI,
    /// never for the check.
    pub async fn stored_claims(
        &self,
        qualification: &QualificationTypeId,
    ) -> Result<Vec<StoredClaim>, LedgerError> {
        const OP: &str = "Scan(claims)";
        let items: Vec<Item> = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(format!(
                "{SK} = :c AND (begins_with({PK}, :new) OR begins_with({PK}, :old))"
            ))
            .expression_attribute_values(":c", s(format!("C#{qualification}")))
            .expression_attribute_values(":new", s(CLAIM_PREFIX))
            .expression_attribute_values(":old", s("W#"))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let mut claims = Vec::new();
        for item in &items {
            claims.extend(stored_claim(OP, item)?);
        }
        Ok(claims)
    }
}
