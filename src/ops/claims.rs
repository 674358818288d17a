//! The accept-time check's claims, as the lab sees and clears them.
//!
//! A claim keeps a worker "busy" for the lab's other studies until its
//! assignment is submitted, returned or abandoned, or its time (the shorter
//! of `ClaimMinutes` and the HIT's assignment duration) runs out. Anyone who
//! knows a worker id and one of the lab's live HIT ids can make one
//! (docs/security.md); `status` counts them and `clear-claim` removes a
//! worker's claim, so the worker is free at once.

use serde::Serialize;
use time::OffsetDateTime;

use crate::ids::{QualificationTypeId, WorkerId};
use crate::ledger::{Ledger, LedgerError};
use crate::ops::Lab;

/// Claims now, without worker ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Claims whose time has not run out (each holds one worker).
    pub live: usize,
    /// Claims stored, live or expired (DynamoDB's TTL removes expired ones
    /// some time after they expire).
    pub stored: usize,
}

/// Counts the claims under the lab's qualification (one filtered scan).
pub async fn summary(
    ledger: &Ledger,
    qualification: &QualificationTypeId,
    now: OffsetDateTime,
) -> Result<Summary, LedgerError> {
    let claims = ledger.stored_claims(qualification).await?;
    Ok(Summary {
        live: claims
            .iter()
            .filter(|c| c.expires_at > now.unix_timestamp())
            .count(),
        stored: claims.len(),
    })
}

/// What clearing came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleared {
    /// Workers whose claim was removed.
    pub cleared: Vec<WorkerId>,
    /// Workers with no claim stored.
    pub not_found: Vec<WorkerId>,
}

/// Removes each worker's claim (whatever its assignment, live or not): the
/// next check of theirs on one of the lab's HITs claims them afresh. Their
/// exclusion, if any, is untouched.
pub async fn clear(lab: &Lab, workers: &[WorkerId]) -> Result<Cleared, LedgerError> {
    let mut out = Cleared::default();
    for worker in workers {
        if lab
            .ledger
            .clear_claim(worker, &lab.qualification)
            .await?
            .is_empty()
        {
            out.not_found.push(worker.clone());
        } else {
            out.cleared.push(worker.clone());
        }
    }
    Ok(out)
}
