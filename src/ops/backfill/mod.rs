//! Backfill (`exclude`): find the workers of past studies and send each
//! participation through the Lambda's own path, so the ledger and MTurk end
//! up as if notifications had always been on.
//!
//! This module is `exclude`'s gathering (HITs, HIT types, CSV rows, workers
//! by hand) and its report; the work itself is the one backfill [`engine`],
//! which the watch uses too. A dry run and a real run take the same
//! decision, `exclusion::decide`: the real run through
//! `Excluder::exclude_*`, the dry run through `Excluder::predict_*`, which
//! reads the ledger and writes nothing.

pub mod engine;

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use tokio::time::Instant;

use crate::exclusion::{Outcome, Releases};
use crate::ids::{AssignmentId, HitId, HitTypeId, WorkerId};
use crate::ledger::{Learned, LedgerError, NewParticipation};
use crate::mturk::{Hit, MturkError};

pub use engine::{
    exclude_all, exclude_worker, participation_of, Gathered, Item, Listed, NotStarted,
    WorkerResult, FAILURE_STREAK_LIMIT,
};

use super::{Lab, Progress};

fn hit_gone_reason() -> String {
    "MTurk no longer knows this HIT (disposed 120 days after creation, or a typo); its workers \
     can still be excluded by worker id or from the batch CSV you downloaded"
        .into()
}

/// One assignment named in a file (MTurk's batch results).
#[derive(Debug, Clone)]
pub struct CsvParticipation {
    pub worker: WorkerId,
    pub assignment: AssignmentId,
    pub hit: HitId,
    pub hit_type: Option<HitTypeId>,
    /// Where it was read, for the report.
    pub file: String,
    pub line: u64,
}

/// What the lab named.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub hits: Vec<HitId>,
    pub hit_types: Vec<HitTypeId>,
    /// Named by hand: `--worker`, and file rows without an assignment.
    pub workers: Vec<WorkerId>,
    /// File rows naming an assignment, in file order, repeats included.
    pub csv: Vec<CsvParticipation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub dry_run: bool,
    /// `Override` only on the lab's explicit request (`--override-releases`).
    pub releases: Releases,
    /// Workers handled at once (MTurk calls stay within the rate limit).
    pub concurrency: usize,
    /// No worker is started after this (one started finishes); the rest
    /// are reported as not attempted, for a rerun.
    pub deadline: Option<Instant>,
}

/// A row that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    pub file: String,
    pub line: u64,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub worker_id: Option<WorkerId>,
    pub assignment_id: Option<AssignmentId>,
    pub hit_id: Option<HitId>,
    pub hit_type_id: Option<HitTypeId>,
    pub reason: String,
}

impl Failure {
    /// A HIT whose submissions could not be listed.
    pub fn listing(hit: &Hit, e: &MturkError) -> Failure {
        Failure {
            hit_type_id: Some(hit.hit_type_id.clone()),
            ..Failure::of_hit(&hit.hit_id, e)
        }
    }

    fn of_hit(hit: &HitId, e: &MturkError) -> Failure {
        Failure {
            worker_id: None,
            assignment_id: None,
            hit_id: Some(hit.clone()),
            hit_type_id: None,
            reason: e.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NotFound {
    /// "hit" or "hit_type".
    pub kind: &'static str,
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HitLine {
    pub hit_id: HitId,
    pub hit_type_id: HitTypeId,
    pub assignments: usize,
}

/// A released worker's participations that were kept released.
#[derive(Debug, Clone, Serialize)]
pub struct KeptReleased {
    pub worker_id: WorkerId,
    /// The participations kept released (absent for a worker named by hand).
    pub assignment_ids: Vec<AssignmentId>,
}

/// A file row whose WorkerId disagrees with who did that assignment
/// according to the ledger, MTurk or another row: not recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub file: String,
    pub line: u64,
    pub assignment_id: AssignmentId,
    /// What the row says.
    pub worker_id: WorkerId,
    /// What the other source says.
    pub other_worker_id: WorkerId,
    /// "ledger", "mturk" or "file" (two rows disagree).
    pub according_to: &'static str,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub newly_excluded: usize,
    pub already_excluded: usize,
    pub kept_released: usize,
    pub failed: usize,
    pub not_found: usize,
    pub bad_rows: usize,
    pub mismatched: usize,
    /// Participations handled (assignments, plus workers named by hand).
    pub participations: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub override_releases: bool,
    pub summary: Summary,
    pub newly_excluded: Vec<WorkerId>,
    pub already_excluded: Vec<WorkerId>,
    pub kept_released: Vec<KeptReleased>,
    pub failed: Vec<Failure>,
    pub not_found: Vec<NotFound>,
    pub bad_rows: Vec<BadRow>,
    pub mismatched: Vec<Mismatch>,
    pub hits: Vec<HitLine>,
    pub notes: Vec<String>,
}

/// Gathers, then excludes (or predicts) everything the lab named.
/// A ledger that cannot be read at all stops here, before anything is done.
pub async fn run(
    lab: &Lab,
    request: Request,
    bad_rows: Vec<BadRow>,
    options: Options,
    progress: &dyn Progress,
) -> Result<Report, LedgerError> {
    // A missing table or a wrong region is the environment's fault: say so
    // once rather than as one failure per worker.
    lab.ledger.last_heartbeat().await?;
    let mut report = Report {
        dry_run: options.dry_run,
        override_releases: options.releases == Releases::Override,
        bad_rows,
        ..Report::default()
    };
    let gathered = gather(lab, request, &mut report, progress).await?;
    let results = exclude_all(lab, gathered, options, progress).await;
    tally(&mut report, results);
    Ok(report)
}

/// Finds every participation to exclude: the assignments of the HITs and
/// HIT types MTurk still lists, the file rows (checked against the ledger
/// and MTurk), and the workers named by hand, last.
pub async fn gather(
    lab: &Lab,
    request: Request,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<Gathered, LedgerError> {
    let hits = hits_to_walk(lab, &request.hits, &request.hit_types, report).await;
    let mut hit_types: HashMap<HitId, HitTypeId> = hits
        .iter()
        .map(|h| (h.hit_id.clone(), h.hit_type_id.clone()))
        .collect();
    let mut by_worker = Gathered::new();
    // Assignment → its worker, as MTurk listed it.
    let mut listed: HashMap<AssignmentId, WorkerId> = HashMap::new();

    progress.start(hits.len() as u64, "listing HITs");
    for hit in &hits {
        let listing = engine::submissions_of(&lab.mturk, hit, |n| {
            progress.message(format!("HIT {}: {n} assignments", hit.hit_id))
        })
        .await;
        progress.inc();
        match listing {
            Ok(Listed::Assignments(assignments)) => {
                report.hits.push(HitLine {
                    hit_id: hit.hit_id.clone(),
                    hit_type_id: hit.hit_type_id.clone(),
                    assignments: assignments.len(),
                });
                engine::add_listed(&mut by_worker, &mut listed, assignments);
            }
            // Disposed between the look-up and the listing.
            Ok(Listed::Gone) => report.not_found.push(NotFound {
                kind: "hit",
                id: hit.hit_id.to_string(),
                reason: hit_gone_reason(),
            }),
            Err(e) => report.failed.push(Failure::of_hit(&hit.hit_id, &e)),
        }
    }
    progress.finish();

    for row in trusted_rows(lab, request.csv, &listed, report).await? {
        // A batch CSV usually lacks nothing but, when it has no HITTypeId
        // column, the HIT type: one GetHIT per distinct HIT supplies it.
        let hit_type = match row.hit_type {
            Some(t) => Some(t),
            None => match hit_types.get(&row.hit) {
                Some(t) => Some(t.clone()),
                None => {
                    let found = hit_type_of(lab, &row.hit, report).await;
                    if let Some(t) = &found {
                        hit_types.insert(row.hit.clone(), t.clone());
                    }
                    found
                }
            },
        };
        by_worker
            .entry(row.worker.clone())
            .or_default()
            .push(Item::Participation(NewParticipation {
                worker_id: row.worker,
                assignment_id: row.assignment,
                hit_id: row.hit,
                hit_type_id: hit_type,
                submit_time: None,
                learned: Learned::Backfill,
            }));
    }
    // Named by hand last, so that their own participations are recorded first.
    for worker in request.workers {
        let items = by_worker.entry(worker).or_default();
        if !items.iter().any(|i| matches!(i, Item::ByHand)) {
            items.push(Item::ByHand);
        }
    }
    Ok(by_worker)
}

/// The file rows that can be recorded: one per assignment, and only when
/// no other source names another worker for it. Who did an assignment is
/// a fact; a file that disagrees with MTurk, the ledger or itself is
/// reported, not believed.
async fn trusted_rows(
    lab: &Lab,
    rows: Vec<CsvParticipation>,
    listed: &HashMap<AssignmentId, WorkerId>,
    report: &mut Report,
) -> Result<Vec<CsvParticipation>, LedgerError> {
    let mismatch = |row: &CsvParticipation, other: &WorkerId, according_to| Mismatch {
        file: row.file.clone(),
        line: row.line,
        assignment_id: row.assignment.clone(),
        worker_id: row.worker.clone(),
        other_worker_id: other.clone(),
        according_to,
    };
    // Assignment → the workers the files name for it.
    let mut named: HashMap<&AssignmentId, HashSet<&WorkerId>> = HashMap::new();
    for row in &rows {
        named
            .entry(&row.assignment)
            .or_default()
            .insert(&row.worker);
    }
    let mut seen = HashSet::new();
    let mut trusted = Vec::new();
    for row in &rows {
        if named[&row.assignment].len() > 1 {
            let other = named[&row.assignment]
                .iter()
                .find(|w| **w != &row.worker)
                .copied()
                .unwrap_or(&row.worker);
            report.mismatched.push(mismatch(row, other, "file"));
            continue;
        }
        if !seen.insert(row.assignment.clone()) {
            continue;
        }
        if let Some(worker) = listed.get(&row.assignment) {
            if worker != &row.worker {
                report.mismatched.push(mismatch(row, worker, "mturk"));
            }
            // Listed by MTurk: recorded from there already.
            continue;
        }
        if let Some(known) = lab.ledger.participation(&row.assignment).await? {
            if known.worker_id != row.worker {
                report
                    .mismatched
                    .push(mismatch(row, &known.worker_id, "ledger"));
                continue;
            }
        }
        trusted.push(row.clone());
    }
    Ok(trusted)
}

/// The HITs named directly and through their HIT type, each once.
async fn hits_to_walk(
    lab: &Lab,
    hit_ids: &[HitId],
    hit_types: &[HitTypeId],
    report: &mut Report,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    let mut seen = HashSet::new();
    if !hit_types.is_empty() {
        match lab.mturk.hits().await {
            Ok(listed) => {
                for t in hit_types {
                    let of_type: Vec<&Hit> =
                        listed.iter().filter(|h| &h.hit_type_id == t).collect();
                    if of_type.is_empty() {
                        report.not_found.push(NotFound {
                            kind: "hit_type",
                            id: t.to_string(),
                            reason: "MTurk lists no HIT of this HIT type (HITs are disposed 120 \
                                     days after creation, or a typo); their workers can still be \
                                     excluded by worker id or from the batch CSVs you downloaded"
                                .into(),
                        });
                    }
                    for h in of_type {
                        if seen.insert(h.hit_id.clone()) {
                            hits.push(h.clone());
                        }
                    }
                }
            }
            Err(e) => {
                for t in hit_types {
                    report.failed.push(Failure {
                        worker_id: None,
                        assignment_id: None,
                        hit_id: None,
                        hit_type_id: Some(t.clone()),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    for id in hit_ids {
        if seen.contains(id) {
            continue;
        }
        match lab.mturk.hit(id).await {
            Ok(hit) => {
                seen.insert(id.clone());
                hits.push(hit);
            }
            Err(e) if e.is_hit_gone() => report.not_found.push(NotFound {
                kind: "hit",
                id: id.to_string(),
                reason: hit_gone_reason(),
            }),
            Err(e) => report.failed.push(Failure::of_hit(id, &e)),
        }
    }
    hits
}

/// The HIT type of a HIT named in a file; a disposed HIT's rows are still
/// recorded, only without it.
async fn hit_type_of(lab: &Lab, hit: &HitId, report: &mut Report) -> Option<HitTypeId> {
    match lab.mturk.hit(hit).await {
        Ok(h) => Some(h.hit_type_id),
        Err(e) if e.is_hit_gone() => {
            report.notes.push(format!(
                "HIT {hit} (from a CSV): MTurk no longer knows this HIT; its rows are recorded \
                 without a HIT type"
            ));
            None
        }
        Err(e) => {
            report.notes.push(format!(
                "HIT {hit} (from a CSV): could not look up its HIT type ({e}); its rows are \
                 recorded without one, and a later run fills it in"
            ));
            None
        }
    }
}

/// Sorts the workers' results into the report: each worker is newly
/// excluded, already excluded or kept released (in that precedence);
/// participations kept released are listed whatever their worker's lot.
pub fn tally(report: &mut Report, results: Vec<WorkerResult>) {
    let mut results = results;
    results.sort_by(|a, b| a.worker.cmp(&b.worker));
    for r in results {
        let worker = r.worker;
        report.summary.participations += r.outcomes.len() + r.failures.len();
        let any = |want: &[Outcome]| r.outcomes.iter().any(|(_, o)| want.contains(o));
        if any(&[Outcome::Excluded]) {
            report.newly_excluded.push(worker.clone());
        } else if any(&[Outcome::AlreadyExcluded, Outcome::Duplicate]) {
            report.already_excluded.push(worker.clone());
        }
        if any(&[Outcome::KeptReleased]) {
            report.kept_released.push(KeptReleased {
                worker_id: worker,
                assignment_ids: r
                    .outcomes
                    .iter()
                    .filter(|(_, o)| *o == Outcome::KeptReleased)
                    .filter_map(|(a, _)| a.clone())
                    .collect(),
            });
        }
        report.failed.extend(r.failures);
    }
    report.summary.newly_excluded = report.newly_excluded.len();
    report.summary.already_excluded = report.already_excluded.len();
    report.summary.kept_released = report.kept_released.len();
    report.summary.failed = report.failed.len();
    report.summary.not_found = report.not_found.len();
    report.summary.bad_rows = report.bad_rows.len();
    report.summary.mismatched = report.mismatched.len();
}
