//! The one path by which a worker becomes excluded, shared by the Lambda and
//! the CLI.
//!
//! Order matters for crash safety: the participation is recorded before the
//! grant, and the grant before the ledger says "excluded". A crash between any
//! two steps leaves the message undeleted; its redelivery finds the
//! participation without `excluded_at` and finishes the job. Granting twice is
//! harmless on MTurk, so the worst a race can cost is one extra call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use time::OffsetDateTime;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::ids::{AssignmentId, QualificationTypeId, WorkerId};
use crate::ledger::{
    Exclusion, ExclusionState, Learned, Ledger, LedgerError, NewParticipation, Participation,
};
use crate::mturk::{Mturk, MturkError, MturkErrorKind, Revoked};

/// What excluding one participation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// MTurk granted the qualification just now.
    Excluded,
    /// The worker was already excluded; only the ledger was updated.
    AlreadyExcluded,
    /// This participation was handled before (a duplicate delivery).
    Duplicate,
    /// The lab released the worker after this participation was submitted:
    /// it is recorded as released and grants nothing (a stale event, a
    /// redrive or a backfill of an older study does not undo a release).
    KeptReleased,
}

/// Whether a participation submitted at or before the worker's release may
/// exclude them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Releases {
    /// No: the lab's release stands against older participations. What
    /// notifications, redrives and backfills do.
    Respect,
    /// Yes: the lab asked explicitly (`exclude --worker`, or a backfill run
    /// with `--override-releases`). Exclusion wins.
    Override,
}

/// The one decision, shared by real runs and dry runs: what excluding a
/// participation comes to, given what the ledger knows of it (`known`) and
/// of its worker (`standing`), and when it was submitted (`submitted`;
/// unknown counts as "at or before any release").
pub fn decide(
    known: Option<&Participation>,
    standing: Option<&Exclusion>,
    submitted: Option<OffsetDateTime>,
    releases: Releases,
) -> Outcome {
    if let Some(k) = known {
        if k.released_at.is_some() {
            return Outcome::KeptReleased;
        }
        if k.excluded_at.is_some() {
            return Outcome::Duplicate;
        }
    }
    match standing {
        Some(x) if x.state == ExclusionState::Excluded => Outcome::AlreadyExcluded,
        Some(x)
            if x.state == ExclusionState::Released
                && releases == Releases::Respect
                && !submitted_after_release(submitted, x.released_at) =>
        {
            Outcome::KeptReleased
        }
        _ => Outcome::Excluded,
    }
}

/// True only when the submission is known to come after the release.
pub fn submitted_after_release(
    submitted: Option<OffsetDateTime>,
    released: Option<OffsetDateTime>,
) -> bool {
    match (submitted, released) {
        (Some(s), Some(r)) => s > r,
        // Released at an unknown time: only a known submission can be later
        // than "never"... but the lab's release must stand, so no.
        (_, None) => false,
        (None, Some(_)) => false,
    }
}

/// What releasing one worker came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// MTurk's side: revoked now, or there was no grant to revoke.
    pub mturk: Revoked,
    /// The ledger already said released before this release (only MTurk's
    /// side was redone, which repairs an earlier run whose revoke failed).
    pub already_released: bool,
    /// Set when the worker's standing changed while the release ran (read
    /// again, consistently, after the revoke): for example a new submission
    /// made after the release excluded them again. The release itself stands
    /// for everything submitted before it.
    pub changed_since: Option<ExclusionState>,
}

/// Where a release stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Nothing was changed for this worker.
    #[error("ledger: {0}; nothing was changed for this worker")]
    Ledger(#[source] LedgerError),
    /// The ledger records the release; MTurk may still hold the qualification.
    #[error(
        "MTurk: {0}; the ledger records the release, but MTurk may still hold the qualification"
    )]
    Mturk(#[source] MturkError),
}

#[derive(Debug, thiserror::Error)]
pub enum ExclusionError {
    #[error(transparent)]
    Mturk(#[from] MturkError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl ExclusionError {
    pub fn is_throttling(&self) -> bool {
        matches!(self, ExclusionError::Mturk(e) if e.kind == MturkErrorKind::Throttled)
    }

    /// True when trying again cannot help (MTurk refused the request).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ExclusionError::Mturk(MturkError {
                kind: MturkErrorKind::Rejected { .. } | MturkErrorKind::Unusable,
                ..
            })
        )
    }
}

/// Per-key locks, so that work on one assignment (or one worker) inside this
/// process happens one at a time. Duplicates of a notification often land in
/// the same batch; serialised, the second finds the first's result in the
/// ledger instead of spending MTurk calls, the scarce resource under
/// throttling. Across instances the race stays possible and stays harmless.
#[derive(Default)]
struct KeyedLocks {
    held: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl KeyedLocks {
    async fn lock(&self, key: String) -> OwnedMutexGuard<()> {
        let lock = {
            // A poisoned map only means a panic elsewhere mid-insert; the
            // map of weak pointers is still sound.
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.retain(|_, w| w.strong_count() > 0);
            match held.get(&key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(AsyncMutex::new(()));
                    held.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[derive(Clone)]
pub struct Excluder {
    mturk: Mturk,
    ledger: Ledger,
    qualification: QualificationTypeId,
    locks: Arc<KeyedLocks>,
}

impl Excluder {
    pub fn new(mturk: Mturk, ledger: Ledger, qualification: QualificationTypeId) -> Self {
        Excluder {
            mturk,
            ledger,
            qualification,
            locks: Arc::default(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn mturk(&self) -> &Mturk {
        &self.mturk
    }

    pub fn qualification(&self) -> &QualificationTypeId {
        &self.qualification
    }

    /// Excludes the worker of a submitted assignment, learned from a
    /// notification. Looks the worker up on MTurk only if the ledger does not
    /// already know this assignment, so duplicates cost no MTurk call.
    pub async fn exclude_assignment(
        &self,
        assignment: &AssignmentId,
        event_doc_id: &str,
        event_at: Option<OffsetDateTime>,
    ) -> Result<Outcome, ExclusionError> {
        let _one_at_a_time = self.locks.lock(format!("A#{assignment}")).await;
        if let Some(known) = self.ledger.participation(assignment).await? {
            if known.released_at.is_some() {
                return Ok(Outcome::KeptReleased);
            }
            if known.excluded_at.is_some() {
                return Ok(Outcome::Duplicate);
            }
            // Recorded, but a crash came before the grant was recorded.
            return self.ensure_excluded(&known).await;
        }
        let a = self.mturk.assignment(assignment).await?;
        self.exclude_participation(
            NewParticipation {
                worker_id: a.worker_id,
                assignment_id: a.assignment_id,
                hit_id: a.hit_id,
                hit_type_id: a.hit_type_id,
                submit_time: a.submit_time.or(event_at),
                learned: Learned::Notification {
                    event_doc_id: event_doc_id.to_owned(),
                },
            },
            Releases::Respect,
        )
        .await
    }

    /// Records a participation whose worker is known, then makes sure the
    /// worker is excluded.
    pub async fn exclude_participation(
        &self,
        new: NewParticipation,
        releases: Releases,
    ) -> Result<Outcome, ExclusionError> {
        let _ = releases; // TODO(lead): the release rule moves into the ledger's conditional write
        let stored = self
            .ledger
            .record_participation(&new, OffsetDateTime::now_utc())
            .await?;
        if stored.released_at.is_some() {
            return Ok(Outcome::KeptReleased);
        }
        if stored.excluded_at.is_some() {
            return Ok(Outcome::Duplicate);
        }
        self.ensure_excluded(&stored).await
    }

    async fn ensure_excluded(&self, p: &Participation) -> Result<Outcome, ExclusionError> {
        let _one_at_a_time = self.locks.lock(format!("W#{}", p.worker_id)).await;
        let current = self
            .ledger
            .exclusion(&p.worker_id, &self.qualification)
            .await?;
        let outcome = match current {
            Some(x) if x.state == ExclusionState::Excluded => Outcome::AlreadyExcluded,
            // Never excluded, or released before this (new) participation:
            // a new submission excludes the worker again.
            _ => {
                self.mturk
                    .exclude(&p.worker_id, &self.qualification)
                    .await?;
                self.ledger
                    .record_exclusion(
                        &p.worker_id,
                        &self.qualification,
                        &p.cause(),
                        OffsetDateTime::now_utc(),
                    )
                    .await?;
                Outcome::Excluded
            }
        };
        self.ledger
            .mark_excluded(p, OffsetDateTime::now_utc())
            .await?;
        Ok(outcome)
    }

    /// Excludes a worker the lab named directly (no assignment known):
    /// records a manual participation and grants, through the same path.
    pub async fn exclude_worker(
        &self,
        worker: &WorkerId,
        learned: Learned,
    ) -> Result<Outcome, ExclusionError> {
        let stored = self
            .ledger
            .record_manual_participation(worker, &learned, OffsetDateTime::now_utc())
            .await?;
        self.ensure_excluded(&stored).await
    }

    /// Records as excluded a worker MTurk already shows holding the
    /// qualification (granted by an older script, by hand, or by a grant
    /// whose ledger update never happened). Ledger only: granting again
    /// would cost an MTurk call for nothing.
    ///
    /// A participation still waiting for its exclusion (recorded, neither
    /// excluded nor released) is what the worker is excluded for; without
    /// one, a participation learned by `reconcile` is recorded.
    pub async fn record_held(&self, worker: &WorkerId) -> Result<(), ExclusionError> {
        let now = OffsetDateTime::now_utc();
        let mut pending: Vec<Participation> = self
            .ledger
            .participations_of(worker)
            .await?
            .into_iter()
            .filter(|p| p.excluded_at.is_none() && p.released_at.is_none())
            .collect();
        let cause = match pending.first() {
            Some(p) => p.cause(),
            None => {
                pending.push(
                    self.ledger
                        .record_manual_participation(worker, &Learned::Reconcile, now)
                        .await?,
                );
                // Not the participation's `learned_by`: an earlier manual
                // exclusion keeps "manual" there, but this one came from reconcile.
                "reconcile".to_owned()
            }
        };
        self.ledger
            .record_exclusion(worker, &self.qualification, &cause, now)
            .await?;
        for p in &pending {
            self.ledger.mark_excluded(p, now).await?;
        }
        Ok(())
    }

    /// What [`Excluder::exclude_participation`] would do, read from the
    /// ledger alone: the same [`decide`], without writing.
    pub async fn predict_participation(
        &self,
        new: &NewParticipation,
        releases: Releases,
    ) -> Result<Outcome, ExclusionError> {
        let known = self.ledger.participation(&new.assignment_id).await?;
        let standing = self
            .ledger
            .exclusion(&new.worker_id, &self.qualification)
            .await?;
        Ok(decide(
            known.as_ref(),
            standing.as_ref(),
            new.submit_time,
            releases,
        ))
    }

    /// What [`Excluder::exclude_worker`] would do: naming a worker by hand
    /// excludes them, released or not.
    pub async fn predict_worker(&self, worker: &WorkerId) -> Result<Outcome, ExclusionError> {
        let standing = self.ledger.exclusion(worker, &self.qualification).await?;
        Ok(decide(None, standing.as_ref(), None, Releases::Override))
    }

    /// Un-excludes a worker: the ledger first (so that no stale event
    /// excludes them again), then MTurk revokes, with no email unless
    /// `email_reason` is given (MTurk emails that text). `note` is kept in
    /// the ledger only.
    pub async fn release_worker(
        &self,
        worker: &WorkerId,
        note: Option<&str>,
        email_reason: Option<&str>,
    ) -> Result<Release, ReleaseError> {
        let before = self
            .ledger
            .exclusion(worker, &self.qualification)
            .await
            .map_err(ReleaseError::Ledger)?;
        let already_released = before
            .as_ref()
            .is_some_and(|x| x.state == ExclusionState::Released);
        if !already_released {
            self.ledger
                .record_release(worker, &self.qualification, note, OffsetDateTime::now_utc())
                .await
                .map_err(ReleaseError::Ledger)?;
        }
        let mturk = self
            .mturk
            .release(worker, &self.qualification, email_reason)
            .await
            .map_err(ReleaseError::Mturk)?;
        Ok(Release {
            mturk,
            already_released,
            changed_since: None,
        })
    }

    /// The ledger side of un-excluding a worker: marks them and all their
    /// participations released, so no stale event excludes them again.
    /// Revoking on MTurk is the CLI's step, after this one.
    pub async fn record_release(
        &self,
        worker: &WorkerId,
        reason: Option<&str>,
    ) -> Result<Vec<Participation>, ExclusionError> {
        Ok(self
            .ledger
            .record_release(
                worker,
                &self.qualification,
                reason,
                OffsetDateTime::now_utc(),
            )
            .await?)
    }
}
