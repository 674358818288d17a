//! The one backfill engine, behind `exclude` and the watch: what MTurk
//! still lists of a HIT goes through the Lambda's own exclusion path, as if
//! notifications had always been on.
//!
//! 1. [`submissions_of`] lists a HIT's submitted, approved and rejected
//!    assignments (a HIT MTurk no longer knows is [`Listed::Gone`]), and
//!    [`add_listed`] files them by worker, each assignment once;
//! 2. [`exclude_all`] takes each worker's items one after the other (so a
//!    worker is never granted twice at once), several workers at a time,
//!    and starts no worker after the run's deadline or after
//!    [`FAILURE_STREAK_LIMIT`] workers in a row failed: the cause is then
//!    almost surely shared (throttling, an outage), and a rerun goes on
//!    where this one stopped;
//! 3. [`tally`] counts the outcomes with the handler's own
//!    [`Tally`](crate::exclusion::Tally).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::{self, StreamExt};
use tokio::time::Instant;

use crate::exclusion::{ExclusionError, Outcome, Tally};
use crate::ids::{AssignmentId, WorkerId};
use crate::ledger::{Learned, NewParticipation};
use crate::mturk::{Assignment, Hit, Mturk, MturkError};
use crate::ops::{Lab, Progress};

use super::{Failure, Options};

/// After this many workers in a row failed, the run stops starting new
/// ones: the cause is almost surely shared (throttling, a network outage),
/// and a rerun resumes where it stopped.
pub const FAILURE_STREAK_LIMIT: usize = 25;

/// One thing to exclude.
#[derive(Debug, Clone)]
pub enum Item {
    Participation(NewParticipation),
    /// The worker, named by hand (no assignment known).
    ByHand,
}

impl Item {
    fn assignment(&self) -> Option<&AssignmentId> {
        match self {
            Item::Participation(p) => Some(&p.assignment_id),
            Item::ByHand => None,
        }
    }
}

/// Each worker's items, in the order they are to be excluded.
pub type Gathered = BTreeMap<WorkerId, Vec<Item>>;

/// What listing a HIT's submissions came to.
#[derive(Debug)]
pub enum Listed {
    Assignments(Vec<Assignment>),
    /// MTurk no longer knows the HIT (disposed since it was listed, or
    /// never the lab's): nothing of it can be listed any more.
    Gone,
}

/// A HIT's submitted, approved and rejected assignments, every page;
/// `on_page` hears how many were listed so far.
pub async fn submissions_of(
    mturk: &Mturk,
    hit: &Hit,
    on_page: impl Fn(usize),
) -> Result<Listed, MturkError> {
    match mturk.assignments_for_hit(hit, on_page).await {
        Ok(assignments) => Ok(Listed::Assignments(assignments)),
        Err(e) if e.is_hit_gone() => Ok(Listed::Gone),
        Err(e) => Err(e),
    }
}

/// Files listed assignments by worker, each assignment once; `listed`
/// remembers who did each (a file row is checked against it).
pub fn add_listed(
    gathered: &mut Gathered,
    listed: &mut HashMap<AssignmentId, WorkerId>,
    assignments: Vec<Assignment>,
) {
    for a in assignments {
        if listed.contains_key(&a.assignment_id) {
            continue;
        }
        listed.insert(a.assignment_id.clone(), a.worker_id.clone());
        gathered
            .entry(a.worker_id.clone())
            .or_default()
            .push(Item::Participation(participation_of(a)));
    }
}

/// What a listed assignment is recorded as: a participation learned by
/// backfilling (the CLI's `exclude`, the watch).
pub fn participation_of(a: Assignment) -> NewParticipation {
    NewParticipation {
        worker_id: a.worker_id,
        assignment_id: a.assignment_id,
        hit_id: a.hit_id,
        hit_type_id: a.hit_type_id,
        submit_time: a.submit_time,
        learned: Learned::Backfill,
    }
}

/// Why a worker was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStarted {
    /// The run's deadline had passed.
    Deadline,
    /// [`FAILURE_STREAK_LIMIT`] workers in a row had failed.
    Streak,
}

/// What one worker's items came to.
#[derive(Debug)]
pub struct WorkerResult {
    pub worker: WorkerId,
    pub outcomes: Vec<(Option<AssignmentId>, Outcome)>,
    /// Each item that failed, or was not started, with the reason.
    pub failures: Vec<Failure>,
    pub not_started: Option<NotStarted>,
}

/// Each worker's items one after the other (so one worker is never granted
/// twice at once), several workers at a time; none started after
/// `options.deadline` or a streak of failed workers. A worker started
/// finishes.
pub async fn exclude_all(
    lab: &Lab,
    gathered: Gathered,
    options: Options,
    progress: &dyn Progress,
) -> Vec<WorkerResult> {
    let what = if options.dry_run {
        "checking"
    } else {
        "excluding"
    };
    progress.start(gathered.len() as u64, what);
    let streak = AtomicUsize::new(0);
    let results = stream::iter(gathered)
        .map(|(worker, items)| {
            let streak = &streak;
            async move {
                let result = if options.deadline.is_some_and(|d| Instant::now() >= d) {
                    not_started(worker, &items, NotStarted::Deadline)
                } else if streak.load(Ordering::Relaxed) >= FAILURE_STREAK_LIMIT {
                    not_started(worker, &items, NotStarted::Streak)
                } else {
                    let result = exclude_worker(lab, worker, items, options).await;
                    if result.outcomes.is_empty() && !result.failures.is_empty() {
                        streak.fetch_add(1, Ordering::Relaxed);
                    } else {
                        streak.store(0, Ordering::Relaxed);
                    }
                    result
                };
                progress.inc();
                result
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    progress.finish();
    results
}

/// One worker's items: excluded for real, or predicted by the same decision.
pub async fn exclude_worker(
    lab: &Lab,
    worker: WorkerId,
    items: Vec<Item>,
    options: Options,
) -> WorkerResult {
    let excluder = &lab.excluder;
    let mut result = WorkerResult {
        worker,
        outcomes: Vec::new(),
        failures: Vec::new(),
        not_started: None,
    };
    for item in items {
        let outcome = match (&item, options.dry_run) {
            (Item::Participation(p), false) => {
                excluder
                    .exclude_participation(p.clone(), options.releases)
                    .await
            }
            (Item::Participation(p), true) => {
                excluder.predict_participation(p, options.releases).await
            }
            (Item::ByHand, false) => {
                excluder
                    .exclude_worker(&result.worker, Learned::Manual)
                    .await
            }
            (Item::ByHand, true) => excluder.predict_worker(&result.worker).await,
        };
        match outcome {
            Ok(o) => result.outcomes.push((item.assignment().cloned(), o)),
            Err(e) => result
                .failures
                .push(exclusion_failure(&result.worker, &item, &e)),
        }
    }
    result
}

/// The outcomes of every worker's items, counted as the handler counts its own.
pub fn tally(results: &[WorkerResult]) -> Tally {
    let mut tally = Tally::default();
    for (_, outcome) in results.iter().flat_map(|r| &r.outcomes) {
        tally.add(*outcome);
    }
    tally
}

fn failure(worker: &WorkerId, item: &Item, reason: String) -> Failure {
    let p = match item {
        Item::Participation(p) => Some(p),
        Item::ByHand => None,
    };
    Failure {
        worker_id: Some(worker.clone()),
        assignment_id: p.map(|p| p.assignment_id.clone()),
        hit_id: p.map(|p| p.hit_id.clone()),
        hit_type_id: None,
        reason,
    }
}

fn exclusion_failure(worker: &WorkerId, item: &Item, e: &ExclusionError) -> Failure {
    let mut reason = e.to_string();
    if e.is_throttling() {
        reason.push_str(" (MTurk is throttling: lower --max-rps and run again)");
    }
    failure(worker, item, reason)
}

fn not_started(worker: WorkerId, items: &[Item], why: NotStarted) -> WorkerResult {
    let reason = match why {
        NotStarted::Deadline => "not attempted: the run's time was up, so it stopped starting \
                                 new workers; run again to go on where it stopped"
            .to_owned(),
        NotStarted::Streak => format!(
            "not attempted: {FAILURE_STREAK_LIMIT} workers in a row had failed, so the run \
             stopped starting new ones; run again once the cause is fixed"
        ),
    };
    WorkerResult {
        failures: items
            .iter()
            .map(|item| failure(&worker, item, reason.clone()))
            .collect(),
        worker,
        outcomes: Vec::new(),
        not_started: Some(why),
    }
}
