//! The ledger and MTurk, compared both ways, and put back in agreement.
//!
//! The ledger is read before MTurk. The Lambda grants before it records an
//! exclusion and a release records before it revokes, so in that order a
//! worker excluded or released while reconcile runs cannot make the two
//! reads disagree for long; every difference is then read again,
//! consistently, before it is reported and again before it is fixed, which
//! also covers the lag of the ledger's `Excluded` index.
//!
//! A revoke done outside this tool (on MTurk's website, by another script)
//! leaves the ledger saying "excluded": later submissions of that worker
//! count as already excluded and grant nothing, and reconcile reports them
//! as excluded in the ledger but not holding the qualification, which
//! `--apply` grants again. The ledger is the lab's word; MTurk follows it.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::ids::WorkerId;
use crate::ledger::{Exclusion, ExclusionState, LedgerError};
use crate::mturk::{MturkError, Revoked};

use super::{Lab, Progress};

/// Ledger reads and ledger-only fixes in flight at once. MTurk calls among
/// them still wait their turn under the rate limit.
const CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Excluded in the ledger, not holding the qualification on MTurk.
    OnlyInLedger,
    /// Holding it on MTurk, not excluded in the ledger.
    OnlyOnMturk,
    /// Released in the ledger, still holding it on MTurk.
    ReleasedButHeld,
}

#[derive(Debug, Clone)]
pub struct Difference {
    pub worker: WorkerId,
    pub kind: Kind,
    /// The ledger's standing for the worker when it was classified; a fix
    /// only goes ahead if it is still the same.
    pub seen: Option<ExclusionState>,
    pub exclusion: Option<Exclusion>,
    pub participations: usize,
    pub waiting: usize,
}

/// The two sides, compared.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub ledger_excluded: usize,
    pub mturk_granted: usize,
    pub agree: usize,
    /// Sorted by worker.
    pub differences: Vec<Difference>,
    /// Ids MTurk listed that are not worker ids: never acted on.
    pub odd_ids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Mturk(#[from] MturkError),
}

/// Reads both sides and classifies every worker on whom they differ.
pub async fn compare(lab: &Lab, progress: &dyn Progress) -> Result<Comparison, CompareError> {
    let q = &lab.qualification;
    let mut in_ledger: BTreeMap<WorkerId, Exclusion> = BTreeMap::new();
    for x in lab.ledger.excluded_workers(q).await? {
        in_ledger.insert(x.worker_id.clone(), x);
    }
    let (held, mut odd_ids) = lab.mturk.workers_with(q).await?;
    let on_mturk: BTreeSet<WorkerId> = held.into_iter().collect();
    odd_ids.sort();
    odd_ids.dedup();

    let both = in_ledger.keys().filter(|w| on_mturk.contains(*w)).count();
    let candidates: Vec<(WorkerId, bool)> = in_ledger
        .keys()
        .filter(|w| !on_mturk.contains(*w))
        .map(|w| (w.clone(), false))
        .chain(
            on_mturk
                .iter()
                .filter(|w| !in_ledger.contains_key(*w))
                .map(|w| (w.clone(), true)),
        )
        .collect();

    progress.start(candidates.len() as u64, "checking differences");
    let checked: Vec<Result<Option<Difference>, LedgerError>> = stream::iter(candidates.iter())
        .map(|(worker, held)| async move {
            let found = classify(lab, worker, *held).await;
            progress.inc();
            found
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    progress.finish();
    let mut differences = Vec::new();
    for found in checked {
        if let Some(d) = found? {
            differences.push(d);
        }
    }
    differences.sort_by(|a, b| a.worker.cmp(&b.worker));
    Ok(Comparison {
        ledger_excluded: in_ledger.len(),
        mturk_granted: on_mturk.len(),
        agree: both + candidates.len() - differences.len(),
        differences,
        odd_ids,
    })
}

/// Reads the ledger's standing for one worker on whom the two first reads
/// disagree (`held`: MTurk shows them holding the qualification). `None`
/// when a consistent read shows they agree after all.
pub async fn classify(
    lab: &Lab,
    worker: &WorkerId,
    held: bool,
) -> Result<Option<Difference>, LedgerError> {
    let exclusion = lab.ledger.exclusion(worker, &lab.qualification).await?;
    let seen = exclusion.as_ref().map(|x| x.state);
    let mut d = Difference {
        worker: worker.clone(),
        kind: Kind::OnlyInLedger,
        seen,
        exclusion,
        participations: 0,
        waiting: 0,
    };
    if !held {
        return Ok((seen == Some(ExclusionState::Excluded)).then_some(d));
    }
    if seen == Some(ExclusionState::Excluded) {
        return Ok(None);
    }
    let participations = lab.ledger.participations_of(worker).await?;
    d.participations = participations.len();
    d.waiting = participations.iter().filter(|p| p.is_pending()).count();
    // A worker released and then seen submitting again is being excluded
    // anew, not waiting for a revoke.
    d.kind = if seen == Some(ExclusionState::Released) && d.waiting == 0 {
        Kind::ReleasedButHeld
    } else {
        Kind::OnlyOnMturk
    };
    Ok(Some(d))
}

/// What fixing one difference came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Granted again on MTurk, silently.
    Granted,
    /// Recorded as excluded in the ledger; MTurk not called.
    Recorded,
    /// Revoked on MTurk, without a reason (no email).
    Revoked,
    /// The difference resolved itself since it was read.
    Skipped(String),
    Failed(String),
}

#[derive(Debug, Default, Serialize)]
pub struct Applied {
    pub granted: Vec<String>,
    pub recorded: Vec<String>,
    pub revoked: Vec<String>,
    pub skipped: Vec<Note>,
    pub failed: Vec<Note>,
}

#[derive(Debug, Serialize)]
pub struct Note {
    pub worker_id: String,
    pub reason: String,
}

/// Fixes every difference, several at a time.
pub async fn apply(lab: &Lab, differences: &[Difference], progress: &dyn Progress) -> Applied {
    progress.start(differences.len() as u64, "fixing");
    let fixes: Vec<(&Difference, Fix)> = stream::iter(differences.iter())
        .map(|d| async move {
            let fix = fix(lab, d).await;
            progress.inc();
            (d, fix)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    progress.finish();
    let mut applied = Applied::default();
    for (d, fix) in fixes {
        let worker_id = d.worker.to_string();
        match fix {
            Fix::Granted => applied.granted.push(worker_id),
            Fix::Recorded => applied.recorded.push(worker_id),
            Fix::Revoked => applied.revoked.push(worker_id),
            Fix::Skipped(reason) => applied.skipped.push(Note { worker_id, reason }),
            Fix::Failed(reason) => applied.failed.push(Note { worker_id, reason }),
        }
    }
    applied.granted.sort();
    applied.recorded.sort();
    applied.revoked.sort();
    applied
        .skipped
        .sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    applied.failed.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    applied
}

/// Fixes one difference, if the ledger still says what it said when the
/// difference was read.
pub async fn fix(lab: &Lab, d: &Difference) -> Fix {
    let q = &lab.qualification;
    // The Lambda, `exclude` or `release` may have run since the report was read.
    let now = match lab.ledger.exclusion(&d.worker, q).await {
        Ok(x) => x.map(|x| x.state),
        Err(e) => return Fix::Failed(e.to_string()),
    };
    if now != d.seen {
        let agrees = match d.kind {
            Kind::OnlyInLedger => now != Some(ExclusionState::Excluded),
            Kind::OnlyOnMturk | Kind::ReleasedButHeld => now == Some(ExclusionState::Excluded),
        };
        return if agrees {
            Fix::Skipped(format!(
                "the ledger now has the worker {}, which agrees with MTurk",
                ExclusionState::name_of(now)
            ))
        } else {
            Fix::Failed(format!(
                "the ledger changed while reconciling (was {}, now {}); run reconcile again",
                ExclusionState::name_of(d.seen),
                ExclusionState::name_of(now)
            ))
        };
    }
    let done = match d.kind {
        Kind::OnlyInLedger => lab
            .mturk
            .exclude(&d.worker, q)
            .await
            .map(|()| Fix::Granted)
            .map_err(|e| e.to_string()),
        Kind::OnlyOnMturk => lab
            .excluder
            .record_held(&d.worker)
            .await
            .map(|()| Fix::Recorded)
            .map_err(|e| e.to_string()),
        // No reason: MTurk emails the reason to the worker, and there is none to send.
        Kind::ReleasedButHeld => match lab.mturk.release(&d.worker, q, None).await {
            Ok(Revoked::Now) => Ok(Fix::Revoked),
            Ok(Revoked::NotHeld) => Ok(Fix::Skipped(
                "MTurk no longer shows the worker holding the qualification".into(),
            )),
            Err(e) => Err(e.to_string()),
        },
    };
    done.unwrap_or_else(Fix::Failed)
}
