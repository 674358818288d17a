//! Verified HITs: the lab's own HITs, as the accept-time check learned them.
//!
//! The check answers about a worker only on a HIT of the lab (otherwise
//! anyone could ask it about any worker with a made-up HIT id). A HIT is
//! verified once, by `GetHIT` (which answers only for the caller's own HITs)
//! or from the watch's listing, and remembered here, so the next check of
//! that HIT costs no MTurk call.
//!
//! Items (pk / sk):
//! - `HIT#<hit>` / `V`: `verified_hit_type`, `assignment_duration_secs`
//!   (the HIT's `AssignmentDurationInSeconds`, which bounds a claim on it),
//!   `verified_at` (stamp), `verified_by` (`check` or `watch`) and
//!   `expires_at` (TTL, [`VERIFIED_TTL`]; a HIT still in use after that is
//!   verified again, one call).
//!
//! Like claims, these items carry none of the indexed attributes (`hit_id`,
//! `hit_type_id`, `worker_id`, `excluded_q`), so they stay out of every
//! index. Their partition is their own, so the check's role may write it
//! (IAM `dynamodb:LeadingKeys`) without being able to write anything else.

use aws_sdk_dynamodb::types::AttributeValue;
use time::{Duration, OffsetDateTime};

use super::{get_s, s, sdk_error, stamp, Item, Ledger, LedgerError, EXPIRES_AT, PK, SK};
use crate::ids::{HitId, HitTypeId};

const VERIFIED_HIT_TYPE: &str = "verified_hit_type";
const ASSIGNMENT_DURATION_SECS: &str = "assignment_duration_secs";
const HIT_VERIFIED_AT: &str = "verified_at";
const VERIFIED_BY: &str = "verified_by";
const VERIFIED_SK: &str = "V";
/// The partition prefix of verified HITs (the check's role may write it).
pub const VERIFIED_HIT_PREFIX: &str = "HIT#";

/// How long a verified HIT is remembered. Long enough that a study's HITs
/// cost one `GetHIT` each in their life; short enough that the table does
/// not keep every HIT the lab ever posted.
pub const VERIFIED_TTL: Duration = Duration::days(30);

/// Who verified a HIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    /// The check's `GetHIT`.
    Check,
    /// The watch's `ListHITs`.
    Watch,
}

impl VerifiedBy {
    fn as_str(self) -> &'static str {
        match self {
            VerifiedBy::Check => "check",
            VerifiedBy::Watch => "watch",
        }
    }
}

/// A HIT of the lab, as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHit {
    pub hit_type_id: HitTypeId,
    /// `AssignmentDurationInSeconds`, when MTurk gave it.
    pub assignment_duration_secs: Option<i64>,
}

fn verified_key(hit: &HitId) -> Item {
    Item::from([
        (PK.to_owned(), s(format!("{VERIFIED_HIT_PREFIX}{hit}"))),
        (SK.to_owned(), s(VERIFIED_SK)),
    ])
}

impl Ledger {
    /// The HIT, if it was verified as the lab's (an eventually consistent
    /// GetItem: a HIT verified a moment ago by another instance and not yet
    /// seen costs one more `GetHIT`, nothing worse).
    pub async fn verified_hit(&self, hit: &HitId) -> Result<Option<VerifiedHit>, LedgerError> {
        const OP: &str = "GetItem(verified HIT)";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(verified_key(hit)))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(out.item.and_then(|item| {
            Some(VerifiedHit {
                hit_type_id: HitTypeId::parse(&get_s(&item, VERIFIED_HIT_TYPE)?).ok()?,
                assignment_duration_secs: match item.get(ASSIGNMENT_DURATION_SECS) {
                    Some(AttributeValue::N(n)) => n.parse().ok(),
                    _ => None,
                },
            })
        }))
    }

    /// Remembers a HIT of the lab (one unconditional PutItem, 1 write unit):
    /// the check after `GetHIT` answered, or the watch for each HIT it
    /// lists ([`Ledger::record_listed_hits`]).
    pub async fn record_verified_hit(
        &self,
        hit: &HitId,
        hit_type: &HitTypeId,
        assignment_duration_secs: Option<i64>,
        by: VerifiedBy,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "PutItem(verified HIT)";
        let mut item = verified_key(hit);
        item.insert(VERIFIED_HIT_TYPE.into(), s(hit_type.as_str()));
        item.insert(HIT_VERIFIED_AT.into(), s(stamp(now)));
        item.insert(VERIFIED_BY.into(), s(by.as_str()));
        item.insert(
            EXPIRES_AT.into(),
            AttributeValue::N((now + VERIFIED_TTL).unix_timestamp().to_string()),
        );
        if let Some(d) = assignment_duration_secs {
            item.insert(
                ASSIGNMENT_DURATION_SECS.into(),
                AttributeValue::N(d.to_string()),
            );
        }
        self.put(OP, item).await
    }

    /// What the watch calls with the HITs it listed (`ListHITs` answers
    /// only with the lab's own): each HIT a worker may hold (Assignable or
    /// Unassignable) that the ledger does not know yet is remembered as
    /// verified, so the check knows it without a `GetHIT` of its own. An
    /// eventually consistent GetItem per such HIT (0.5 read unit), a PutItem
    /// per new one; stops at the first ledger error. Returns how many were
    /// new.
    pub async fn record_listed_hits(
        &self,
        hits: &[crate::mturk::Hit],
        now: OffsetDateTime,
    ) -> Result<usize, LedgerError> {
        let mut recorded = 0;
        let open = |h: &&crate::mturk::Hit| {
            matches!(
                h.status,
                crate::mturk::HitStatus::Assignable | crate::mturk::HitStatus::Unassignable
            )
        };
        for hit in hits.iter().filter(open) {
            if self.verified_hit(&hit.hit_id).await?.is_some() {
                continue;
            }
            self.record_verified_hit(
                &hit.hit_id,
                &hit.hit_type_id,
                hit.properties.as_ref().map(|p| p.assignment_duration_secs),
                VerifiedBy::Watch,
                now,
            )
            .await?;
            recorded += 1;
        }
        Ok(recorded)
    }
}
