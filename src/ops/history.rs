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
/// pool's lists (its own, or one carried in) and no guard moved it there.
pub fn history_is_pools(
    hit: &Hit,
    sorted: Sorted,
    subscription: Option<&Subscription>,
    lists: &PoolLists,
) -> bool {
    if subscription.is_some_and(|s| s.history_adopted_at.is_some()) {
        return true;
    }
    sorted.class.brings_history() && !lists.moved.contains(&hit.hit_id)
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
    /// Every HIT type chosen, those MTurk no longer lists a HIT of included
    /// (nothing of them can be adopted; their count is emptied).
    pub hit_types: Vec<HistoryOfType>,
    /// Every left-out submission, by worker.
    pub gathered: Gathered,
    /// HITs whose submissions could not be listed.
    pub failures: Vec<Failure>,
    /// Each listed HIT's HIT type, to tell which HIT type a failure is of.
    hit_type_of: HashMap<HitId, HitTypeId>,
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
        hit_type_of: HashMap::new(),
    };
    if chosen.is_empty() {
        return Ok(plan);
    }
    let hits = lab.mturk.hits().await?;
    // After the listing: a HIT a guard moved is recorded before it moves.
    let lists = PoolLists::read(&lab.ledger, &lab.qualification).await?;
    let (sorted, _) = coverage::sort_hits(hits, &lists);
    let mine: Vec<&(Hit, Sorted)> = sorted
        .iter()
        .filter(|(h, _)| chosen.contains(&h.hit_type_id))
        .collect();
    progress.start(mine.len() as u64, "listing the HITs' submissions");
    let mut by_type: BTreeMap<HitTypeId, (HistoryOfType, BTreeSet<WorkerId>)> = chosen
        .iter()
        .map(|t| (t.clone(), (history_line(t, None), BTreeSet::new())))
        .collect();
    let mut listed = HashMap::new();
    for (hit, s) in mine {
        plan.hit_type_of
            .insert(hit.hit_id.clone(), hit.hit_type_id.clone());
        // What the watch left out, whether or not the lab adopted it since:
        // a rerun of an adoption that stopped halfway finds it again.
        let sub = subscriptions.get(&hit.hit_type_id).map(|s| Subscription {
            history_adopted_at: None,
            ..s.clone()
        });
        let Some((line, workers)) = by_type.get_mut(&hit.hit_type_id) else {
            continue;
        };
        line.title = line.title.take().or_else(|| hit.title.clone());
        match engine::submissions_of(&lab.mturk, hit, |_| {}).await {
            Ok(Listed::Assignments(assignments)) => {
                let pools = history_is_pools(hit, *s, sub.as_ref(), &lists);
                let (_, history) = split(assignments, pools, start);
                line.left_out.add(left_out(&history));
                workers.extend(history.iter().map(|a| a.worker_id.clone()));
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

fn history_line(hit_type: &HitTypeId, title: Option<String>) -> HistoryOfType {
    HistoryOfType {
        hit_type_id: hit_type.clone(),
        title,
        left_out: HistoryLeftOut::default(),
        workers: 0,
    }
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

/// Adopts a plan. Each HIT type is first recorded as adopted, its backfill
/// due again ([`Ledger::record_history_adopted`]): from then on the watch
/// takes its whole history in, so nothing is lost if this stops halfway.
/// Then every left-out submission goes through the one backfill engine,
/// silently, a release standing. A HIT type all of whose history settled
/// has its count emptied, unless it was marked due again meanwhile; one
/// with failures keeps it for the watch's next run (and a rerun of `adopt`
/// finds it again). A dry run writes nothing and predicts each outcome by
/// the same decision.
///
/// [`Ledger::record_history_adopted`]: crate::ledger::Ledger::record_history_adopted
pub async fn adopt(
    lab: &Lab,
    plan: AdoptPlan,
    dry_run: bool,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<Adopted, AdoptError> {
    let now = OffsetDateTime::now_utc();
    let mut generations: HashMap<HitTypeId, u64> = HashMap::new();
    if !dry_run {
        for t in &plan.hit_types {
            if let Some(g) = lab
                .ledger
                .record_history_adopted(&t.hit_type_id, now)
                .await?
            {
                generations.insert(t.hit_type_id.clone(), g);
            }
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
    collect_failures(&results, &mut adopted.failures);
    if dry_run {
        return Ok(adopted);
    }
    let failed: BTreeSet<&HitTypeId> = adopted
        .failures
        .iter()
        .filter_map(|f| {
            f.hit_type_id
                .as_ref()
                .or_else(|| f.hit_id.as_ref().and_then(|h| plan.hit_type_of.get(h)))
        })
        .collect();
    for t in &plan.hit_types {
        let Some(generation) = generations.get(&t.hit_type_id) else {
            // Unsubscribed meanwhile: the lab's word stands, nothing adopted.
            continue;
        };
        if !failed.contains(&t.hit_type_id) {
            lab.ledger
                .record_history_settled(&t.hit_type_id, *generation)
                .await?;
        }
        adopted.hit_types.push(t.hit_type_id.clone());
    }
    Ok(adopted)
}

/// Moves the workers' failures into `failures`.
fn collect_failures(results: &[WorkerResult], failures: &mut Vec<Failure>) {
    failures.extend(results.iter().flat_map(|r| r.failures.iter().cloned()));
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
    /// Subscribed HIT types guarded by the earlier list, whose backfill was
    /// marked due so the watch takes their history in.
    pub marked_due: Vec<HitTypeId>,
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
/// carried first (the watch then subscribes the HIT types it guards and
/// takes their history in; those already subscribed have their backfill
/// marked due, for the same), then each holder is excluded by hand through
/// the one engine (a participation learned `manual`, a silent grant of the
/// pool's qualification; a worker the lab released stays released). The
/// HITs it guards still admit workers the pool excludes from now on: they
/// count as unguarded until they carry the pool's requirement too
/// (`coverage --fix`). A dry run records nothing and predicts each holder's
/// outcome.
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
    let mut marked_due = Vec::new();
    if !dry_run {
        lab.ledger.record_carried_list(earlier).await?;
        marked_due = mark_guarded_types_due(lab, earlier).await?;
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
    collect_failures(&results, &mut failures);
    Ok(CarriedOver {
        qualification_type_id: earlier.clone(),
        holders,
        odd_ids,
        tally: engine::tally(&results),
        failures,
        marked_due,
        dry_run,
    })
}

/// Marks due the backfill of every subscribed HIT type whose HITs require
/// `earlier` with DoesNotExist: their history became the pool's.
async fn mark_guarded_types_due(
    lab: &Lab,
    earlier: &QualificationTypeId,
) -> Result<Vec<HitTypeId>, AdoptError> {
    let guarded: BTreeSet<HitTypeId> = lab
        .mturk
        .hits()
        .await?
        .into_iter()
        .filter(|h| {
            h.requirements.iter().any(|r| {
                r.comparator == "DoesNotExist" && r.qualification_type_id == earlier.as_str()
            })
        })
        .map(|h| h.hit_type_id)
        .collect();
    let mut marked = Vec::new();
    for t in guarded {
        if lab.ledger.record_backfill_due(&t).await?.is_some() {
            marked.push(t);
        }
    }
    Ok(marked)
}

/// What the watch's first run will do with one HIT type.
#[derive(Debug, Clone, Serialize)]
pub struct FirstRunType {
    pub hit_type_id: HitTypeId,
    pub title: Option<String>,
    pub class: Class,
    /// HITs of it MTurk lists that may have submissions.
    pub hits: usize,
    /// The run subscribes this HIT type.
    pub covered: bool,
    /// Its live HITs the run guards (`GuardUnguardedHits`): moved into a
    /// new HIT type, which the run subscribes.
    pub guarded_hits: usize,
    /// Submissions whose workers the run excludes (of this HIT type's HITs,
    /// wherever they are moved), and how many workers.
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
    /// HIT types the run would subscribe (new guarded ones included).
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
/// by the same rules ([`coverage::plan_fix`], [`history_is_pools`],
/// [`split`]) the run applies.
pub async fn first_run(
    mturk: &Mturk,
    lists: &PoolLists,
    covering: Covering,
    start: OffsetDateTime,
    progress: &dyn Progress,
) -> Result<FirstRun, MturkError> {
    let (sorted, _) = coverage::sort_hits(mturk.hits().await?, lists);
    let guarded: BTreeSet<HitId> = if covering.guard_unguarded {
        let plan = coverage::plan_fix(sorted.iter().map(|(h, _)| h), lists);
        plan.hit_types.into_iter().flat_map(|t| t.hit_ids).collect()
    } else {
        BTreeSet::new()
    };
    let mut types: BTreeMap<HitTypeId, (FirstRunType, BTreeSet<WorkerId>)> = BTreeMap::new();
    let mut all_workers = BTreeSet::new();
    let mut failures = Vec::new();
    progress.start(sorted.len() as u64, "listing the HITs' submissions");
    for (hit, s) in &sorted {
        let moved = guarded.contains(&hit.hit_id);
        // What stays in the HIT type is covered as the watch sorts it then.
        let stays_covered = !moved
            && match s.class {
                Class::Ours | Class::Carried => true,
                Class::Unguarded => covering.cover_unguarded,
                Class::OtherList => false,
            };
        let (line, workers) = types
            .entry(hit.hit_type_id.clone())
            .or_insert_with(|| (first_run_line(hit, s.class), BTreeSet::new()));
        line.hits += 1;
        line.guarded_hits += usize::from(moved);
        line.covered |= stays_covered;
        progress.inc();
        if !(moved || stays_covered) {
            continue;
        }
        match engine::submissions_of(mturk, hit, |_| {}).await {
            Ok(Listed::Assignments(assignments)) => {
                // A moved HIT's history is not the pool's.
                let pools = !moved && history_is_pools(hit, *s, None, lists);
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
    progress.finish();
    Ok(first_run_totals(start, types, all_workers.len(), failures))
}

fn first_run_line(hit: &Hit, class: Class) -> FirstRunType {
    FirstRunType {
        hit_type_id: hit.hit_type_id.clone(),
        title: hit.title.clone(),
        class,
        hits: 0,
        covered: false,
        guarded_hits: 0,
        submissions: 0,
        workers: 0,
        left_out: HistoryLeftOut::default(),
    }
}

fn first_run_totals(
    start: OffsetDateTime,
    types: BTreeMap<HitTypeId, (FirstRunType, BTreeSet<WorkerId>)>,
    workers: usize,
    failures: Vec<Failure>,
) -> FirstRun {
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
    FirstRun {
        start,
        // A HIT type whose live HITs are guarded gives one new HIT type.
        subscribed: hit_types
            .iter()
            .map(|t| usize::from(t.covered) + usize::from(t.guarded_hits > 0))
            .sum(),
        submissions: hit_types.iter().map(|t| t.submissions).sum(),
        workers,
        left_out: left_out_all,
        hit_types,
        failures,
    }
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

    fn subscription(adopted: bool) -> Subscription {
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
            history_left_out: HistoryLeftOut::default(),
            history_adopted_at: adopted.then_some(START),
        }
    }

    #[test]
    fn a_hit_the_lab_guarded_with_the_pools_list_brings_its_history() {
        let (h, s) = hit("3GUARDED", guarded_by("3POOLQUAL"));
        assert!(history_is_pools(&h, s, None, &pool()));
        assert!(history_is_pools(&h, s, Some(&subscription(false)), &pool()));
        // Carried into the pool, an earlier list brings its history too,
        // though it does not keep the pool's excluded workers out.
        let lists = PoolLists {
            carried: vec![QualificationTypeId::parse("3OLDLIST").unwrap()],
            ..pool()
        };
        let (h, _) = hit("3OLDGUARD", guarded_by("3OLDLIST"));
        let s = coverage::classify(&h.requirements, &lists);
        assert_eq!(s.class, Class::Carried);
        assert!(s.class.admits_excluded());
        assert!(history_is_pools(&h, s, None, &lists));
        let other = coverage::classify(&h.requirements, &pool());
        assert_eq!(other.class, Class::OtherList);
        assert!(!history_is_pools(&h, other, None, &pool()));
    }

    #[test]
    fn an_unguarded_or_guard_moved_hit_brings_none_until_adopted() {
        let (h, s) = hit("3PLAIN", vec![]);
        assert!(!history_is_pools(&h, s, None, &pool()));
        let (moved, s_moved) = hit("3MOVED", guarded_by("3POOLQUAL"));
        let mut lists = pool();
        lists.moved.insert(moved.hit_id.clone());
        assert!(!history_is_pools(&moved, s_moved, None, &lists));
        assert!(!history_is_pools(
            &moved,
            s_moved,
            Some(&subscription(false)),
            &lists
        ));
        assert!(history_is_pools(&h, s, Some(&subscription(true)), &pool()));
        assert!(history_is_pools(
            &moved,
            s_moved,
            Some(&subscription(true)),
            &lists
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
