//! The one path by which a worker becomes excluded, and the one by which a
//! release is made, shared by the Lambda and the CLI.
//!
//! The worker's exclusion item in the ledger is where the two sides
//! serialise; it carries a version that every writer raises and conditions on.
//!
//! Excluding (per participation):
//! 1. take a lease on the assignment (the Lambda: copies of a notification
//!    handled at once by two instances then cost one look-up, not two);
//! 2. learn the worker and the submit time (GetAssignment);
//! 3. ledger first: one conditional write records the worker as excluded,
//!    applies the release rule (a participation submitted at or before the
//!    worker's release never grants again, unless the lab asks) and opens a
//!    grant window;
//! 4. grant (`SendNotification=false`), only if the call ends inside the window;
//! 5. one transaction writes the participation and closes the window, only if
//!    the worker's version is unchanged; if a release came in between, the
//!    path decides again from step 3.
//!
//! Releasing: the worker's item is marked released (version raised), then
//! the release waits out any grant window still open, revokes, and reads the
//! worker again to report a change. So a grant in flight can never land after
//! the revoke, and a participation the release could not see yet settles as
//! released. A crash between any two steps leaves the message undeleted (or
//! the CLI's command to be run again), and the next attempt finishes the job:
//! an expired lease or grant window is taken over. Granting twice is harmless
//! on MTurk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration as StdDuration;

use time::OffsetDateTime;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::ids::{AssignmentId, QualificationTypeId, WorkerId};
use crate::ledger::{
    AgainIf, Begin, Exclusion, ExclusionState, Finished, Learned, Lease, Ledger, LedgerError,
    NewParticipation, Participation, Settled, ToSettle,
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

/// What excluding a notified assignment came to, with how long its worker
/// stayed exposed: from the submission (MTurk's `SubmitTime`, else the
/// event's time) to the grant, when this call granted and the submission
/// time is known. The handler's `ExposureWindow` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub outcome: Outcome,
    pub exposure: Option<StdDuration>,
}

/// What the ledger decided for one attempt, and when MTurk answered its grant.
struct Decided {
    version: u64,
    settled: Settled,
    outcome: Outcome,
    released_at: Option<String>,
    granted_at: Option<OffsetDateTime>,
}

/// What settling submissions came to, one count per outcome: the one tally
/// the handler, the watch and `exclude` keep.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub excluded: usize,
    pub already_excluded: usize,
    pub duplicates: usize,
    /// Submitted before the worker's release: recorded, granting nothing.
    pub kept_released: usize,
    /// For each exclusion granted whose submission time is known: how long
    /// the worker stayed exposed (submission to grant).
    #[serde(skip)]
    pub exposure: Vec<StdDuration>,
}

impl Tally {
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Excluded => self.excluded += 1,
            Outcome::AlreadyExcluded => self.already_excluded += 1,
            Outcome::Duplicate => self.duplicates += 1,
            Outcome::KeptReleased => self.kept_released += 1,
        }
    }

    pub fn add_settled(&mut self, settled: Settlement) {
        self.add(settled.outcome);
        self.exposure.extend(settled.exposure);
    }

    /// Submissions settled, whatever they came to.
    pub fn submissions(&self) -> usize {
        self.recorded() + self.duplicates
    }

    /// Submissions the ledger did not have before: all but the duplicates.
    pub fn recorded(&self) -> usize {
        self.excluded + self.already_excluded + self.kept_released
    }

    pub fn merge(&mut self, other: &Tally) {
        self.excluded += other.excluded;
        self.already_excluded += other.already_excluded;
        self.duplicates += other.duplicates;
        self.kept_released += other.kept_released;
        self.exposure.extend_from_slice(&other.exposure);
    }
}

impl Settlement {
    fn only(outcome: Outcome) -> Self {
        Settlement {
            outcome,
            exposure: None,
        }
    }
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
            if releases == Releases::Respect {
                return Outcome::KeptReleased;
            }
            // Asked explicitly, the lab's new decision wins over its older
            // release: the worker's standing decides below.
        } else if k.excluded_at.is_some() {
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
    // An unknown time on either side: the lab's release stands.
    match (submitted, released) {
        (Some(s), Some(r)) => s > r,
        _ => false,
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
    /// Another copy of this notification is being handled right now; this
    /// one is retried after it.
    #[error("another attempt is under way: {0}")]
    InProgress(String),
    /// The grant could not start early enough to end inside its window; the
    /// next attempt takes the window over.
    #[error("the grant could not start in time (its window closes at {0}); retried later")]
    GrantWindowClosed(String),
    /// The worker's standing kept changing under this participation.
    #[error("the worker's standing changed {0} times while this participation was settled; retried later")]
    Contended(usize),
}

impl ExclusionError {
    /// Another attempt at this worker or notification is under way.
    pub fn is_under_way(&self) -> bool {
        matches!(self, ExclusionError::InProgress(_))
    }

    pub fn is_throttling(&self) -> bool {
        matches!(self, ExclusionError::Mturk(e) if e.kind == MturkErrorKind::Throttled)
    }

    /// True when trying again cannot help (MTurk refused the request, or
    /// answered with something unusable).
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

/// The exclusion path's two durations (see `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a copy of a notification holds its assignment. A lease only
    /// saves MTurk calls (a copy finding it live waits for the first); an
    /// expired one is taken over, so a crash loses nothing.
    pub lease: StdDuration,
    /// How long after the ledger says "excluded" a grant may still be sent.
    /// A release waits this out before revoking, so keep it short. A grant
    /// starts only while 40 % of it is left: with the default 30 s that is
    /// 12 s, more than the SDK's 10 s bound on a whole operation.
    pub grant_window: StdDuration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease: StdDuration::from_secs(15),
            grant_window: StdDuration::from_secs(30),
        }
    }
}

/// How often one participation decides again when a release keeps coming in between.
const MAX_DECISIONS: usize = 4;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[derive(Clone)]
pub struct Excluder {
    mturk: Mturk,
    ledger: Ledger,
    qualification: QualificationTypeId,
    locks: Arc<KeyedLocks>,
    /// Names this process's leases, so a lease can be told from another's.
    owner: Arc<str>,
    timing: Timing,
}

static NEXT_LEASE: AtomicU64 = AtomicU64::new(0);

impl Excluder {
    pub fn new(mturk: Mturk, ledger: Ledger, qualification: QualificationTypeId) -> Self {
        // Unique enough across instances: process id, start time, address.
        let owner = format!(
            "{}-{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp_nanos()
        );
        Excluder {
            mturk,
            ledger,
            qualification,
            locks: Arc::default(),
            owner: owner.into(),
            timing: Timing::default(),
        }
    }

    /// The same, with other durations (the handler's configuration, tests).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Excludes the worker of a submitted assignment, learned from a
    /// notification (`event_at`: the event's time, used when MTurk gives no
    /// SubmitTime). A known assignment costs one ledger request and no MTurk
    /// call.
    pub async fn exclude_assignment(
        &self,
        assignment: &AssignmentId,
        event_doc_id: &str,
        event_at: Option<OffsetDateTime>,
    ) -> Result<Settlement, ExclusionError> {
        let _one_at_a_time = self.locks.lock(format!("A#{assignment}")).await;
        let owner = format!(
            "{}-{}",
            self.owner,
            NEXT_LEASE.fetch_add(1, Ordering::Relaxed)
        );
        match self
            .ledger
            .lease_assignment(assignment, &owner, now(), duration(self.timing.lease))
            .await?
        {
            Lease::Taken => {}
            Lease::Known(known) => return self.settle_known(*known).await,
            Lease::Busy => {
                return Err(ExclusionError::InProgress(
                    "another copy of this notification is being handled (until its lease runs out)"
                        .into(),
                ))
            }
        }
        let a = match self.mturk.assignment(assignment).await {
            Ok(a) => a,
            Err(e) => {
                self.give_back(assignment, &owner).await;
                return Err(e.into());
            }
        };
        let new = NewParticipation {
            worker_id: a.worker_id,
            assignment_id: a.assignment_id,
            hit_id: a.hit_id,
            hit_type_id: a.hit_type_id,
            submit_time: a.submit_time.or(event_at),
            learned: Learned::Notification {
                event_doc_id: event_doc_id.to_owned(),
            },
        };
        let result = self
            .settle(
                ToSettle::New {
                    participation: &new,
                    lease_owner: Some(&owner),
                },
                new.submit_time,
                Releases::Respect,
            )
            .await;
        if result.is_err() {
            // The worker is known now: record the participation as pending
            // so that its redelivery costs no second look-up on MTurk.
            if let Err(e) = self.ledger.record_pending(&new, &owner, now()).await {
                tracing::debug!(error = %e, "could not record the participation as pending");
                self.give_back(assignment, &owner).await;
            }
        }
        result
    }

    /// Gives a lease back early, so the redelivery need not wait for it.
    async fn give_back(&self, assignment: &AssignmentId, owner: &str) {
        if let Err(e) = self.ledger.release_lease(assignment, owner).await {
            tracing::debug!(error = %e, "could not give the lease back; it runs out by itself");
        }
    }

    /// Records a participation whose worker is known (the CLI's backfill),
    /// then makes sure the worker is excluded, or keeps them released.
    pub async fn exclude_participation(
        &self,
        new: NewParticipation,
        releases: Releases,
    ) -> Result<Outcome, ExclusionError> {
        let _one_at_a_time = self.locks.lock(format!("A#{}", new.assignment_id)).await;
        if let Some(known) = self.ledger.participation(&new.assignment_id).await? {
            if known.released_at.is_some() && releases == Releases::Override {
                return self
                    .settle(ToSettle::Existing(&known), known.submit_time, releases)
                    .await
                    .map(|s| s.outcome);
            }
            return self.settle_known(known).await.map(|s| s.outcome);
        }
        self.settle(
            ToSettle::New {
                participation: &new,
                lease_owner: None,
            },
            new.submit_time,
            releases,
        )
        .await
        .map(|s| s.outcome)
    }

    /// A participation the ledger already has: finished, or (recorded by
    /// an older version that crashed before the grant) finished now.
    async fn settle_known(&self, known: Participation) -> Result<Settlement, ExclusionError> {
        if known.released_at.is_some() {
            return Ok(Settlement::only(Outcome::KeptReleased));
        }
        if known.excluded_at.is_some() {
            return Ok(Settlement::only(Outcome::Duplicate));
        }
        let submitted = known.submit_time;
        self.settle(ToSettle::Existing(&known), submitted, Releases::Respect)
            .await
    }

    /// Steps 3 to 5 of the module's description: decide in the ledger,
    /// grant inside the window, settle; again if a release came in between.
    async fn settle(
        &self,
        record: ToSettle<'_>,
        submitted: Option<OffsetDateTime>,
        releases: Releases,
    ) -> Result<Settlement, ExclusionError> {
        let (worker, cause) = match &record {
            ToSettle::New { participation, .. } => (
                participation.worker_id.clone(),
                participation.assignment_id.to_string(),
            ),
            ToSettle::Existing(p) => (p.worker_id.clone(), p.cause()),
        };
        let _one_at_a_time = self.locks.lock(format!("W#{worker}")).await;
        let again = match releases {
            Releases::Respect => AgainIf::SubmittedAfterRelease(submitted),
            Releases::Override => AgainIf::Always,
        };
        // Set when another writer recorded this participation first but left
        // it unfinished (pending): then it is that item this path settles.
        let mut taken: Option<Participation> = None;
        for _ in 0..MAX_DECISIONS {
            let decided = self.decide(&worker, again, &cause).await?;
            let this = match (&taken, &record) {
                (Some(p), _) => ToSettle::Existing(p),
                (
                    None,
                    ToSettle::New {
                        participation,
                        lease_owner,
                    },
                ) => ToSettle::New {
                    participation,
                    lease_owner: *lease_owner,
                },
                (None, ToSettle::Existing(p)) => ToSettle::Existing(p),
            };
            let finished = self
                .ledger
                .finish_exclusion(
                    this,
                    &self.qualification,
                    decided.version,
                    decided.settled,
                    decided.released_at.as_deref(),
                    now(),
                )
                .await?;
            match finished {
                Finished::Done => {
                    // Clocks apart (MTurk's and this one) never make it negative.
                    let exposure = decided
                        .granted_at
                        .zip(submitted)
                        .map(|(granted, submitted)| {
                            StdDuration::try_from(granted - submitted).unwrap_or_default()
                        });
                    return Ok(Settlement {
                        outcome: decided.outcome,
                        exposure,
                    });
                }
                Finished::ParticipationTaken => {
                    match self.after_taken(&record, &worker, &decided).await? {
                        Some(pending) => taken = Some(pending),
                        None => return Ok(Settlement::only(Outcome::Duplicate)),
                    }
                }
                // A release (or another exclusion) came in between: decide again.
                Finished::WorkerChanged => {}
            }
        }
        Err(ExclusionError::Contended(MAX_DECISIONS))
    }

    /// Steps 3 and 4: the ledger decides, and a grant it allows is sent
    /// while its window is open.
    async fn decide(
        &self,
        worker: &WorkerId,
        again: AgainIf,
        cause: &str,
    ) -> Result<Decided, ExclusionError> {
        let begun = self
            .ledger
            .begin_exclusion(
                worker,
                &self.qualification,
                again,
                cause,
                now(),
                duration(self.timing.grant_window),
            )
            .await?;
        let decided = |version, settled, outcome, released_at| Decided {
            version,
            settled,
            outcome,
            released_at,
            granted_at: None,
        };
        match begun {
            Begin::Grant { version, until } => {
                self.grant(worker, version, until).await?;
                Ok(Decided {
                    granted_at: Some(now()),
                    ..decided(
                        version,
                        Settled::Excluded { granted: true },
                        Outcome::Excluded,
                        None,
                    )
                })
            }
            Begin::GrantInFlight { until } => Err(ExclusionError::InProgress(format!(
                "a grant for this worker is in flight (window open until {until})"
            ))),
            Begin::AlreadyExcluded { version } => Ok(decided(
                version,
                Settled::Excluded { granted: false },
                Outcome::AlreadyExcluded,
                None,
            )),
            Begin::KeptReleased {
                version,
                released_at,
            } => Ok(decided(
                version,
                Settled::KeptReleased,
                Outcome::KeptReleased,
                released_at,
            )),
        }
    }

    /// The grant the ledger's window `until` allows. Every attempt must start
    /// while 40 % of the window is left, so that it ends (the SDK bounds an
    /// operation) before a release, waiting the window out, revokes.
    async fn grant(
        &self,
        worker: &WorkerId,
        version: u64,
        until: OffsetDateTime,
    ) -> Result<(), ExclusionError> {
        let budget = duration(self.timing.grant_window.mul_f64(0.4));
        let start_by = StdDuration::try_from(until - budget - now())
            .ok()
            .map(|left| tokio::time::Instant::now() + left);
        let Some(start_by) = start_by else {
            return Err(ExclusionError::GrantWindowClosed(crate::ledger::stamp(
                until,
            )));
        };
        if let Err(e) = self
            .mturk
            .exclude_starting_by(worker, &self.qualification, Some(start_by))
            .await
        {
            // Let the next attempt take the window over at once.
            let _ = self
                .ledger
                .close_grant_window(worker, &self.qualification, version, now())
                .await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Another writer recorded the participation first; nothing was written.
    /// Closes the window this attempt opened, then looks at what the other
    /// writer left: a pending participation to settle (`Some`), or a
    /// finished one (`None`: a duplicate).
    async fn after_taken(
        &self,
        record: &ToSettle<'_>,
        worker: &WorkerId,
        decided: &Decided,
    ) -> Result<Option<Participation>, ExclusionError> {
        if decided.settled == (Settled::Excluded { granted: true }) {
            self.ledger
                .close_grant_window(worker, &self.qualification, decided.version, now())
                .await?;
        }
        let ToSettle::New { participation, .. } = record else {
            return Ok(None);
        };
        match self
            .ledger
            .participation(&participation.assignment_id)
            .await?
        {
            Some(p) if p.is_pending() => Ok(Some(p)),
            Some(_) => Ok(None),
            // Nothing is recorded: another copy took the lease over (this
            // one's ran out) and holds it, or gave it back. Acknowledging now
            // would end this notification with no participation, so it is
            // retried instead.
            None => Err(ExclusionError::InProgress(
                "another copy of this notification took the assignment over; nothing is recorded yet".into(),
            )),
        }
    }

    /// Excludes a worker the lab named directly (no assignment known):
    /// records a manual participation and excludes, released or not (an
    /// explicit request from the lab is never stale).
    pub async fn exclude_worker(
        &self,
        worker: &WorkerId,
        learned: Learned,
    ) -> Result<Outcome, ExclusionError> {
        let stored = self
            .ledger
            .record_manual_participation(worker, &learned, now())
            .await?;
        self.settle(ToSettle::Existing(&stored), None, Releases::Override)
            .await
            .map(|s| s.outcome)
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
        let now = now();
        let mut pending: Vec<Participation> = self
            .ledger
            .participations_of(worker)
            .await?
            .into_iter()
            .filter(|p| p.is_pending())
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
    /// excludes them again), then, once no grant can still be in flight,
    /// MTurk revokes, with no email unless `email_reason` is given (MTurk
    /// emails that text). `note` is kept in the ledger only. Finally the
    /// worker is read again: a change since (a new submission made after
    /// the release excluded them again) is reported, not hidden.
    pub async fn release_worker(
        &self,
        worker: &WorkerId,
        note: Option<&str>,
        email_reason: Option<&str>,
    ) -> Result<Release, ReleaseError> {
        let _one_at_a_time = self.locks.lock(format!("W#{worker}")).await;
        let recorded = self
            .ledger
            .record_release(worker, &self.qualification, note, now())
            .await
            .map_err(ReleaseError::Ledger)?;
        if let Some(until) = recorded.grant_in_flight_until {
            // A handler may send its grant until `until`; revoking before
            // that could be undone by it. Bounded by the window itself.
            let wait =
                (until - now()).clamp(time::Duration::ZERO, duration(self.timing.grant_window));
            tokio::time::sleep(StdDuration::try_from(wait).unwrap_or_default()).await;
        }
        let mturk = self
            .mturk
            .release(worker, &self.qualification, email_reason)
            .await
            .map_err(ReleaseError::Mturk)?;
        let after = self
            .ledger
            .exclusion(worker, &self.qualification)
            .await
            .map_err(ReleaseError::Ledger)?;
        let changed_since = after
            .filter(|x| x.version != recorded.version || x.state != ExclusionState::Released)
            .map(|x| x.state);
        Ok(Release {
            mturk,
            already_released: recorded.already_released,
            changed_since,
        })
    }

    /// The ledger side of un-excluding a worker, alone (tests and repairs);
    /// [`Excluder::release_worker`] is the whole release.
    pub async fn record_release(
        &self,
        worker: &WorkerId,
        reason: Option<&str>,
    ) -> Result<Vec<Participation>, ExclusionError> {
        Ok(self
            .ledger
            .record_release(worker, &self.qualification, reason, now())
            .await?
            .participations)
    }
}

fn duration(d: StdDuration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const BEFORE: OffsetDateTime = datetime!(2026-03-02 17:00:00 UTC);
    const RELEASE: OffsetDateTime = datetime!(2026-03-02 18:00:00 UTC);
    const AFTER: OffsetDateTime = datetime!(2026-03-02 19:00:00 UTC);

    fn worker() -> WorkerId {
        WorkerId::parse("A1DECIDE").unwrap()
    }

    fn participation(excluded: bool, released: bool) -> Participation {
        Participation {
            worker_id: worker(),
            assignment_id: None,
            hit_id: None,
            hit_type_id: None,
            submit_time: Some(BEFORE),
            learned: Learned::Backfill,
            event_doc_id: None,
            recorded_at: BEFORE,
            excluded_at: excluded.then_some(BEFORE),
            released_at: released.then_some(RELEASE),
            release_reason: None,
        }
    }

    fn standing(state: ExclusionState) -> Exclusion {
        Exclusion {
            worker_id: worker(),
            state,
            excluded_at: Some(BEFORE),
            excluded_because: None,
            released_at: (state == ExclusionState::Released).then_some(RELEASE),
            version: 3,
            granting_until: None,
        }
    }

    #[test]
    fn a_release_stands_against_what_was_submitted_at_or_before_it() {
        let released = standing(ExclusionState::Released);
        for submitted in [Some(BEFORE), Some(RELEASE), None] {
            assert_eq!(
                decide(None, Some(&released), submitted, Releases::Respect),
                Outcome::KeptReleased,
                "{submitted:?}"
            );
        }
        assert_eq!(
            decide(None, Some(&released), Some(AFTER), Releases::Respect),
            Outcome::Excluded
        );
        assert_eq!(
            decide(None, Some(&released), Some(BEFORE), Releases::Override),
            Outcome::Excluded
        );
    }

    #[test]
    fn known_participations_cost_nothing_unless_the_lab_overrides() {
        let excluded = standing(ExclusionState::Excluded);
        let released = standing(ExclusionState::Released);
        let done = participation(true, false);
        let kept = participation(true, true);
        assert_eq!(
            decide(
                Some(&done),
                Some(&excluded),
                Some(BEFORE),
                Releases::Respect
            ),
            Outcome::Duplicate
        );
        assert_eq!(
            decide(
                Some(&kept),
                Some(&released),
                Some(BEFORE),
                Releases::Respect
            ),
            Outcome::KeptReleased
        );
        // A released participation (which was excluded once) is excluded
        // again when the lab asks, as the real run does.
        assert_eq!(
            decide(
                Some(&kept),
                Some(&released),
                Some(BEFORE),
                Releases::Override
            ),
            Outcome::Excluded
        );
        // Exclusion wins: a worker excluded for another study stays excluded.
        assert_eq!(
            decide(
                Some(&kept),
                Some(&excluded),
                Some(BEFORE),
                Releases::Override
            ),
            Outcome::AlreadyExcluded
        );
        assert_eq!(
            decide(None, None, None, Releases::Respect),
            Outcome::Excluded
        );
    }
}
