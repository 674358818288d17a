//! The lab's history: which earlier submissions the pool takes as its own,
//! and how the lab adopts the rest.
//!
//! The pool starts when its ledger table was made ([`Ledger::pool_start`]:
//! the table's `CreationDateTime`, kept across stack updates). A submission
//! is the pool's when
//! - it was made at or after the start, whatever HIT it belongs to; or
//! - its HIT requires the pool's qualification (or a list carried into the
//!   pool) with DoesNotExist, and did not gain that requirement from a guard
//!   (the watch's `GuardUnguardedHits`, `coverage --fix`): the lab said
//!   those workers belong to its list; or
//! - the lab adopted its HIT type's history ([`adopt`]).
//!
//! The rest is the lab's history (pilots, norming surveys, unrelated tasks):
//! the watch leaves it out and counts it on the HIT type's subscription, and
//! `adopt` takes it in when the lab chooses, through the one backfill
//! engine. A submission with no `SubmitTime` (MTurk always gives one for a
//! submitted assignment) is taken as the pool's: in doubt, exclude.
//!
//! [`carry_over`] brings an earlier exclusion qualification's holders into
//! the pool and makes the HITs it guards the pool's; [`first_run`] predicts
//! what the watch's first run will do, before anything is deployed.
//!
//! [`Ledger::pool_start`]: crate::ledger::Ledger::pool_start

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use crate::exclusion::{Releases, Tally};
use crate::ids::{HitId, HitTypeId, QualificationTypeId, WorkerId};
use crate::ledger::{HistoryLeftOut, LedgerError, Subscription};
use crate::mturk::{Assignment, Hit, Mturk, MturkError};
use crate::ops::backfill::engine::{self, Gathered, Item, Listed, WorkerResult};
use crate::ops::backfill::{Failure, Options};
use crate::ops::coverage::{self, Class, PoolLists, Sorted};
use crate::ops::{Lab, Progress};

/// Whether every earlier submission of `hit` is the pool's, whatever its
/// time: its HIT type's history was adopted, or the HIT is guarded by the
/// pool's lists and was not moved there by a guard.
pub fn history_is_pools(hit: &Hit, sorted: Sorted, subscription: Option<&Subscription>) -> bool {
    if subscription.is_some_and(|s| s.history_adopted_at.is_some()) {
        return true;
    }
    let moved = subscription.is_some_and(|s| s.moved_hits.contains(&hit.hit_id));
    sorted.class == Class::Ours && !moved
}

/// Splits one HIT's submissions into the pool's and the lab's history
/// (submitted before `start`, when the HIT's history is not the pool's).
pub fn split(
    assignments: Vec<Assignment>,
    history_is_pools: bool,
    start: OffsetDateTime,
) -> (Vec<Assignment>, Vec<Assignment>) {
    if history_is_pools {
        return (assignments, Vec::new());
    }
    assignments
        .into_iter()
        .partition(|a| a.submit_time.is_none_or(|t| t >= start))
}

/// One HIT's left-out submissions, counted.
pub fn left_out(history: &[Assignment]) -> HistoryLeftOut {
    HistoryLeftOut {
        hits: u64::from(!history.is_empty()),
        submissions: history.len() as u64,
    }
}

/// One HIT type's history as `adopt` found it on MTurk.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryOfType {
    pub hit_type_id: HitTypeId,
    pub title: Option<String>,
    pub left_out: HistoryLeftOut,
    pub workers: usize,
}

/// What `adopt` would take in: each HIT type's history, its workers.
#[derive(Debug)]
pub struct AdoptPlan {
    pub start: OffsetDateTime,
    pub hit_types: Vec<HistoryOfType>,
    /// Every left-out submission, by worker.
    pub gathered: Gathered,
    /// HITs whose submissions could not be listed.
    pub failures: Vec<Failure>,
}

impl AdoptPlan {
    pub fn workers(&self) -> usize {
        self.gathered.len()
    }

    pub fn submissions(&self) -> u64 {
        self.hit_types.iter().map(|t| t.left_out.submissions).sum()
    }
}

/// Why `adopt` could not plan.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The caller named a HIT type the pool does not cover.
    #[error("HIT type {0} is not subscribed by this pool (see `status`); to exclude its workers anyway, use `exclude --hit-type {0}`")]
    NotCovered(HitTypeId),
    #[error("the qualification {0} is this pool's own: its holders are the pool's already")]
    OwnList(QualificationTypeId),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Mturk(#[from] MturkError),
}

/// Finds the history to adopt: of `hit_types`, or (none named) of every HIT
/// type whose subscription says the watch left history out. Lists the HITs
/// and their submissions again (the record's count may be days old); reads
/// and writes nothing else.
pub async fn plan_adoption(
    lab: &Lab,
    hit_types: &[HitTypeId],
    progress: &dyn Progress,
) -> Result<AdoptPlan, AdoptError> {
    let start = lab.ledger.pool_start().await?;
    let subscriptions: HashMap<HitTypeId, Subscription> = lab
        .ledger
        .subscriptions()
        .await?
        .into_iter()
        .map(|s| (s.hit_type_id.clone(), s))
        .collect();
    let chosen = chosen_types(&subscriptions, hit_types)?;
    let mut plan = AdoptPlan {
        start,
        hit_types: Vec::new(),
        gathered: Gathered::new(),
        failures: Vec::new(),
    };
    if chosen.is_empty() {
        return Ok(plan);
    }
    let lists = PoolLists::read(&lab.ledger, &lab.qualification).await?;
    let (sorted, _) = coverage::sort_hits(lab.mturk.hits().await?, &lists);
    let mine: Vec<&(Hit, Sorted)> = sorted
        .iter()
        .filter(|(h, _)| chosen.contains(&h.hit_type_id))
        .collect();
    progress.start(mine.len() as u64, "listing the HITs' submissions");
    let mut by_type: BTreeMap<HitTypeId, (HistoryOfType, BTreeSet<WorkerId>)> = BTreeMap::new();
    let mut listed = HashMap::new();
    for (hit, s) in mine {
        // What the watch left out, whether or not the lab adopted it since:
        // a rerun of an adoption that stopped halfway finds it again.
        let mut sub = subscriptions.get(&hit.hit_type_id).cloned();
        if let Some(sub) = sub.as_mut() {
            sub.history_adopted_at = None;
        }
        let entry = by_type.entry(hit.hit_type_id.clone()).or_insert_with(|| {
            let line = HistoryOfType {
                hit_type_id: hit.hit_type_id.clone(),
                title: hit.title.clone(),
                left_out: HistoryLeftOut::default(),
                workers: 0,
            };
            (line, BTreeSet::new())
        });
        match engine::submissions_of(&lab.mturk, hit, |_| {}).await {
            Ok(Listed::Assignments(assignments)) => {
                let pools = history_is_pools(hit, *s, sub.as_ref());
                let (_, history) = split(assignments, pools, start);
                entry.0.left_out.add(left_out(&history));
                entry.1.extend(history.iter().map(|a| a.worker_id.clone()));
                engine::add_listed(&mut plan.gathered, &mut listed, history);
            }
            Ok(Listed::Gone) => {}
            Err(e) => plan.failures.push(Failure::listing(hit, &e)),
        }
        progress.inc();
    }
    progress.finish();
    plan.hit_types = by_type
        .into_values()
        .map(|(mut line, workers)| {
            line.workers = workers.len();
            line
        })
        .collect();
    Ok(plan)
}

/// The HIT types named, each one the pool covers; or, none named, every one
/// whose subscription says the watch left history out.
fn chosen_types(
    subscriptions: &HashMap<HitTypeId, Subscription>,
    named: &[HitTypeId],
) -> Result<BTreeSet<HitTypeId>, AdoptError> {
    if named.is_empty() {
        return Ok(subscriptions
            .values()
            .filter(|s| s.active && !s.history_left_out.is_empty())
            .map(|s| s.hit_type_id.clone())
            .collect());
    }
    match named
        .iter()
        .find(|t| !subscriptions.get(*t).is_some_and(|s| s.active))
    {
        Some(t) => Err(AdoptError::NotCovered(t.clone())),
        None => Ok(named.iter().cloned().collect()),
    }
}

/// What adopting came to (or would, in a dry run).
#[derive(Debug, Default, Serialize)]
pub struct Adopted {
    /// The outcomes, as the handler counts its own.
    pub tally: Tally,
    pub failures: Vec<Failure>,
    /// HIT types whose history is now the pool's.
    pub hit_types: Vec<HitTypeId>,
}

/// Adopts a plan: each HIT type is recorded as adopted first (so a watch
/// run meanwhile takes its history in too), then every left-out submission
/// goes through the one backfill engine, silently, a release standing. A
/// HIT type all of whose history settled has its count emptied; one with
/// failures keeps it, and its backfill is marked due, so the watch's next
/// run finishes what this did not (and a rerun of `adopt` finds it again).
/// A dry run writes nothing and predicts each outcome by the same decision.
pub async fn adopt(
    lab: &Lab,
    plan: AdoptPlan,
    dry_run: bool,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<Adopted, AdoptError> {
    let now = OffsetDateTime::now_utc();
    if !dry_run {
        for t in &plan.hit_types {
            lab.ledger
                .record_history_adopted(&t.hit_type_id, false, now)
                .await?;
        }
    }
    let options = Options {
        dry_run,
        releases: Releases::Respect,
        concurrency,
        deadline: None,
    };
    let results = engine::exclude_all(lab, plan.gathered, options, progress).await;
    let mut adopted = Adopted {
        tally: engine::tally(&results),
        failures: plan.failures,
        hit_types: Vec::new(),
    };
    let failed_hits: BTreeSet<HitId> = failed_hits(&results, &mut adopted.failures);
    if dry_run {
        return Ok(adopted);
    }
    for t in &plan.hit_types {
        let failed = adopted.failures.iter().any(|f| {
            f.hit_type_id.as_ref() == Some(&t.hit_type_id)
                || f.hit_id.as_ref().is_some_and(|h| failed_hits.contains(h))
        });
        if failed {
            lab.ledger.record_backfill_due(&t.hit_type_id, &[]).await?;
        } else {
            lab.ledger
                .record_history_adopted(&t.hit_type_id, true, now)
                .await?;
        }
        adopted.hit_types.push(t.hit_type_id.clone());
    }
    Ok(adopted)
}

/// Moves the workers' failures into `failures`, and returns their HITs.
fn failed_hits(results: &[WorkerResult], failures: &mut Vec<Failure>) -> BTreeSet<HitId> {
    let mut hits = BTreeSet::new();
    for r in results {
        for f in &r.failures {
            if let Some(h) = &f.hit_id {
                hits.insert(h.clone());
            }
            failures.push(f.clone());
        }
    }
    hits
}

/// What carrying an earlier list over would do, or did.
#[derive(Debug, Serialize)]
pub struct CarriedOver {
    pub qualification_type_id: QualificationTypeId,
    /// Workers holding the earlier qualification.
    pub holders: usize,
    /// Ids MTurk listed that are not worker ids: never acted on.
    pub odd_ids: Vec<String>,
    pub tally: Tally,
    pub failures: Vec<Failure>,
    pub dry_run: bool,
}

/// The holders of an earlier exclusion qualification (the lab's list from
/// before this tool), to carry into the pool.
pub async fn holders_of(
    lab: &Lab,
    earlier: &QualificationTypeId,
) -> Result<(Vec<WorkerId>, Vec<String>), AdoptError> {
    if earlier == &lab.qualification {
        return Err(AdoptError::OwnList(earlier.clone()));
    }
    Ok(lab.mturk.workers_with(earlier).await?)
}

/// Carries an earlier list into the pool: the qualification is recorded as
/// the pool's first (HITs it guards count as the pool's from then on: the
/// watch subscribes their HIT types and excludes their workers), then each
/// holder is excluded by hand through the one engine (a participation
/// learned `manual`, a silent grant of the pool's qualification; a worker
/// the lab released stays released). A dry run records nothing and
/// predicts each holder's outcome.
pub async fn carry_over(
    lab: &Lab,
    earlier: &QualificationTypeId,
    holders: (Vec<WorkerId>, Vec<String>),
    dry_run: bool,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<CarriedOver, AdoptError> {
    if earlier == &lab.qualification {
        return Err(AdoptError::OwnList(earlier.clone()));
    }
    let (workers, odd_ids) = holders;
    if !dry_run {
        lab.ledger.record_carried_list(earlier).await?;
    }
    let gathered: Gathered = workers
        .into_iter()
        .map(|w| (w, vec![Item::ByHand]))
        .collect();
    let holders = gathered.len();
    let options = Options {
        dry_run,
        releases: Releases::Respect,
        concurrency,
        deadline: None,
    };
    let results = engine::exclude_all(lab, gathered, options, progress).await;
    let mut failures = Vec::new();
    failed_hits(&results, &mut failures);
    Ok(CarriedOver {
        qualification_type_id: earlier.clone(),
        holders,
        odd_ids,
        tally: engine::tally(&results),
        failures,
        dry_run,
    })
}

/// What the watch's first run will do with one HIT type.
#[derive(Debug, Clone, Serialize)]
pub struct FirstRunType {
    pub hit_type_id: HitTypeId,
    pub title: Option<String>,
    pub class: Class,
    /// HITs of it MTurk lists that may have submissions.
    pub hits: usize,
    /// The run subscribes it (or, guarding, the HIT type it moves its live
    /// HITs into) and excludes the workers of `submissions`.
    pub covered: bool,
    /// Its live HITs the run guards (`GuardUnguardedHits`).
    pub guarded_hits: usize,
    pub submissions: u64,
    pub workers: usize,
    /// Left for the lab to adopt.
    pub left_out: HistoryLeftOut,
}

/// What the watch's first run will do, predicted before the deploy.
#[derive(Debug, Clone, Serialize)]
pub struct FirstRun {
    /// The start this prediction assumes: now (the table is made at deploy).
    #[serde(serialize_with = "as_stamp")]
    pub start: OffsetDateTime,
    pub hit_types: Vec<FirstRunType>,
    /// HIT types the run would subscribe.
    pub subscribed: usize,
    /// Submissions it would exclude the workers of, and how many workers.
    pub submissions: u64,
    pub workers: usize,
    pub left_out: HistoryLeftOut,
    /// HITs whose submissions could not be listed (left out of the figures).
    pub failures: Vec<Failure>,
}

/// The watch's settings that decide what a first run covers.
#[derive(Debug, Clone, Copy)]
pub struct Covering {
    pub cover_unguarded: bool,
    pub guard_unguarded: bool,
}

/// Predicts the watch's first run on an empty ledger: which HIT types it
/// subscribes, whose workers it excludes, and what history it leaves out,
/// by the same rule ([`history_is_pools`], [`split`]) the run applies.
pub async fn first_run(
    mturk: &Mturk,
    lists: &PoolLists,
    covering: Covering,
    start: OffsetDateTime,
    progress: &dyn Progress,
) -> Result<FirstRun, MturkError> {
    let (sorted, _) = coverage::sort_hits(mturk.hits().await?, lists);
    let mut types: BTreeMap<HitTypeId, (FirstRunType, BTreeSet<WorkerId>)> = BTreeMap::new();
    let mut all_workers = BTreeSet::new();
    let mut failures = Vec::new();
    progress.start(sorted.len() as u64, "listing the HITs' submissions");
    for (hit, s) in &sorted {
        let guarded = s.class == Class::Unguarded
            && covering.guard_unguarded
            && hit.status.is_offered()
            && hit.properties.is_some()
            && hit.requirements.len() < coverage::MAX_REQUIREMENTS;
        let covered = match s.class {
            Class::Ours => true,
            Class::Unguarded => covering.cover_unguarded || guarded,
            Class::OtherList => false,
        };
        let (line, workers) = types.entry(hit.hit_type_id.clone()).or_insert_with(|| {
            let line = FirstRunType {
                hit_type_id: hit.hit_type_id.clone(),
                title: hit.title.clone(),
                class: s.class,
                hits: 0,
                covered: false,
                guarded_hits: 0,
                submissions: 0,
                workers: 0,
                left_out: HistoryLeftOut::default(),
            };
            (line, BTreeSet::new())
        });
        line.hits += 1;
        line.guarded_hits += usize::from(guarded);
        line.covered |= covered;
        if covered {
            match engine::submissions_of(mturk, hit, |_| {}).await {
                Ok(Listed::Assignments(assignments)) => {
                    // A guarded HIT is moved: its history is not the pool's.
                    let pools = !guarded && history_is_pools(hit, *s, None);
                    let (pool, history) = split(assignments, pools, start);
                    line.submissions += pool.len() as u64;
                    line.left_out.add(left_out(&history));
                    workers.extend(pool.iter().map(|a| a.worker_id.clone()));
                    all_workers.extend(pool.into_iter().map(|a| a.worker_id));
                }
                Ok(Listed::Gone) => {}
                Err(e) => failures.push(Failure::listing(hit, &e)),
            }
        }
        progress.inc();
    }
    progress.finish();
    let hit_types: Vec<FirstRunType> = types
        .into_values()
        .map(|(mut line, workers)| {
            line.workers = workers.len();
            line
        })
        .collect();
    let mut left_out_all = HistoryLeftOut::default();
    for t in &hit_types {
        left_out_all.add(t.left_out);
    }
    Ok(FirstRun {
        start,
        subscribed: hit_types.iter().filter(|t| t.covered).count(),
        submissions: hit_types.iter().map(|t| t.submissions).sum(),
        workers: all_workers.len(),
        left_out: left_out_all,
        hit_types,
        failures,
    })
}

fn as_stamp<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::ledger::stamp(*t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AssignmentId, WorkerId};
    use crate::mturk::Requirement;
    use time::macros::datetime;

    const START: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn pool() -> PoolLists {
        PoolLists::own(QualificationTypeId::parse("3POOLQUAL").unwrap())
    }

    fn hit(id: &str, requirements: Vec<Requirement>) -> (Hit, Sorted) {
        let hit = Hit {
            hit_id: HitId::parse(id).unwrap(),
            hit_type_id: HitTypeId::parse("3TYPE").unwrap(),
            title: None,
            status: "Reviewable".into(),
            requirements,
            properties: None,
        };
        let sorted = coverage::classify(&hit.requirements, &pool());
        (hit, sorted)
    }

    fn guarded_by(q: &str) -> Vec<Requirement> {
        vec![Requirement {
            qualification_type_id: q.into(),
            comparator: "DoesNotExist".into(),
            ..Requirement::default()
        }]
    }

    fn submitted(id: &str, at: Option<OffsetDateTime>) -> Assignment {
        Assignment {
            assignment_id: AssignmentId::parse(id).unwrap(),
            worker_id: WorkerId::parse("A1WORKER").unwrap(),
            hit_id: HitId::parse("3HIT").unwrap(),
            hit_type_id: None,
            status: "Approved".into(),
            submit_time: at,
        }
    }

    fn subscription(moved: &[&str], adopted: bool) -> Subscription {
        Subscription {
            hit_type_id: HitTypeId::parse("3TYPE").unwrap(),
            queue_url: String::new(),
            subscribed_at: None,
            verified_at: None,
            active: true,
            event_types: None,
            subscribed_by: crate::ledger::SubscribedBy::Watch,
            backfill_due: true,
            due_generation: Some(1),
            backfilled_at: None,
            moved_hits: moved.iter().map(|h| HitId::parse(h).unwrap()).collect(),
            history_left_out: HistoryLeftOut::default(),
            history_adopted_at: adopted.then_some(START),
        }
    }

    #[test]
    fn a_hit_the_lab_guarded_with_the_pools_list_brings_its_history() {
        let (h, s) = hit("3GUARDED", guarded_by("3POOLQUAL"));
        assert!(history_is_pools(&h, s, None));
        assert!(history_is_pools(&h, s, Some(&subscription(&[], false))));
        // Carried into the pool, an earlier list counts the same.
        let lists = PoolLists {
            carried: vec![QualificationTypeId::parse("3OLDLIST").unwrap()],
            ..pool()
        };
        let (h, _) = hit("3OLDGUARD", guarded_by("3OLDLIST"));
        let s = coverage::classify(&h.requirements, &lists);
        assert!(history_is_pools(&h, s, None));
        assert!(!history_is_pools(
            &h,
            coverage::classify(&h.requirements, &pool()),
            None
        ));
    }

    #[test]
    fn an_unguarded_or_guard_moved_hit_brings_none_until_adopted() {
        let (h, s) = hit("3PLAIN", vec![]);
        assert!(!history_is_pools(&h, s, None));
        let (moved, s_moved) = hit("3MOVED", guarded_by("3POOLQUAL"));
        assert!(!history_is_pools(
            &moved,
            s_moved,
            Some(&subscription(&["3MOVED"], false))
        ));
        assert!(history_is_pools(&h, s, Some(&subscription(&[], true))));
        assert!(history_is_pools(
            &moved,
            s_moved,
            Some(&subscription(&["3MOVED"], true))
        ));
    }

    #[test]
    fn the_start_divides_history_from_the_pools_submissions() {
        let before = submitted("3BEFORE", Some(START - time::Duration::seconds(1)));
        let at = submitted("3ATSTART", Some(START));
        let unknown = submitted("3NOTIME", None);
        let (pool_part, history) = split(
            vec![before.clone(), at.clone(), unknown.clone()],
            false,
            START,
        );
        assert_eq!(pool_part, [at.clone(), unknown.clone()]);
        assert_eq!(history, std::slice::from_ref(&before));
        assert_eq!(
            left_out(&history),
            HistoryLeftOut {
                hits: 1,
                submissions: 1
            }
        );
        let (pool_part, history) = split(vec![before, at, unknown], true, START);
        assert_eq!(pool_part.len(), 3);
        assert!(history.is_empty());
        assert_eq!(left_out(&history), HistoryLeftOut::default());
    }
}
