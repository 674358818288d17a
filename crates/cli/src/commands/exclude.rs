//! `exclude`: backfill. Finds the workers of HITs, HIT types, id lists and
//! batch CSVs, and sends each participation through the same `Excluder` path
//! as the Lambda, so the ledger and MTurk end up as if notifications had
//! always been on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Args as ClapArgs;
use futures::stream::{self, StreamExt};
use mturk_exclusion::exclusion::{Excluder, ExclusionError, Outcome, Releases};
use mturk_exclusion::ids::{AssignmentId, HitId, HitTypeId, WorkerId};
use mturk_exclusion::ledger::{ExclusionState, Learned, NewParticipation};
use mturk_exclusion::mturk::{Hit, MturkError};
use serde::Serialize;

use crate::context::{CliError, Context};
use crate::output;
use crate::workers_csv::{self, BadRow};

/// Exclude the workers of past studies: record them in the ledger and grant the qualification
///
/// For studies that ran before notifications were set up, or whose notifications were lost.
/// Each participation takes the Lambda's own path: recorded in the ledger first, then the
/// qualification is granted with SendNotification=false. No email, no block, no rejection.
///
/// What to name (each flag repeats, and takes comma-separated ids):
///   --hit ID        every Submitted, Approved and Rejected assignment of the HIT (all pages;
///                   work still in progress is not excluded). MTurk disposes of a HIT 120 days
///                   after its creation; a HIT it no longer knows is reported and the rest go
///                   on. Its workers can still be excluded with --worker or --from-csv.
///   --hit-type ID   every HIT of that HIT type that MTurk still lists.
///   --worker ID     a worker, recorded as excluded by hand.
///   --from-csv FILE MTurk's batch-results CSV (WorkerId, AssignmentId and HITId are recorded
///                   as real participations), any CSV with a WorkerId column, or a plain list:
///                   one worker id per line, optional WorkerId header, blank lines and #
///                   comments ignored. "-" reads standard input.
///
/// Bad input: an invalid id on the command line or an unreadable file stops everything before
/// anything is done (exit 2). A bad CSV row does not: it is reported with its line number, the
/// good rows go on, and the run ends with exit 1 so a script notices.
///
/// Running it again does only what is missing: the ledger answers "already excluded" without
/// calling MTurk. A worker the lab released stays released when an assignment the ledger already
/// knew is seen again; a new assignment, or naming the worker with --worker or in a plain list,
/// excludes them again (exclusion wins).
///
/// --dry-run reads MTurk's HIT listings and the ledger, and reports per worker what would
/// happen; it writes nothing anywhere.
///
/// Exit codes: 0 done; 1 done in part (failed items, HITs MTurk no longer knows, bad CSV rows;
/// each is named, and running again retries only those); 2 bad input, nothing done;
/// 3 environment (credentials, table, qualification).
#[derive(ClapArgs, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A HIT whose workers to exclude (repeatable; comma-separated ids allowed).
    #[arg(long = "hit", value_name = "ID", value_delimiter = ',')]
    pub hits: Vec<String>,
    /// A HIT type: every HIT of it that MTurk still lists.
    #[arg(long = "hit-type", value_name = "ID", value_delimiter = ',')]
    pub hit_types: Vec<String>,
    /// A worker to exclude by hand.
    #[arg(long = "worker", value_name = "ID", value_delimiter = ',')]
    pub workers: Vec<String>,
    /// A batch-results CSV, a CSV with a WorkerId column, or a list of worker ids ("-": stdin).
    #[arg(long = "from-csv", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Report what would change; write nothing to MTurk or the ledger.
    #[arg(long)]
    pub dry_run: bool,
    /// Workers handled at once (MTurk calls stay within --max-rps whatever this is).
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
}

/// After this many workers in a row failed, the run stops starting new
/// ones: the cause is almost surely shared (throttling, a network outage),
/// and a rerun resumes where it stopped.
const FAILURE_STREAK_LIMIT: usize = 25;

const HIT_GONE: &str = "AWS.MechanicalTurk.HITDoesNotExist";

fn hit_gone_reason() -> String {
    "MTurk no longer knows this HIT (disposed 120 days after creation, or a typo); its workers \
     can still be excluded by worker id or from the batch CSV you downloaded"
        .into()
}

/// One assignment named in a CSV.
struct CsvParticipation {
    worker: WorkerId,
    assignment: AssignmentId,
    hit: HitId,
    hit_type: Option<HitTypeId>,
}

struct Input {
    hits: Vec<HitId>,
    hit_types: Vec<HitTypeId>,
    /// Named by hand: `--worker`, and rows without an assignment.
    workers: Vec<WorkerId>,
    csv_participations: Vec<CsvParticipation>,
    bad_rows: Vec<BadRow>,
}

impl Input {
    fn read(args: &Args) -> Result<Input, CliError> {
        let mut problems = Vec::new();
        let hits = workers_csv::parse_ids("--hit", &args.hits, HitId::parse, &mut problems);
        let hit_types = workers_csv::parse_ids(
            "--hit-type",
            &args.hit_types,
            HitTypeId::parse,
            &mut problems,
        );
        let mut workers =
            workers_csv::parse_ids("--worker", &args.workers, WorkerId::parse, &mut problems);
        if !problems.is_empty() {
            return Err(CliError::Usage(format!(
                "nothing was done; fix these and run again:\n  {}",
                problems.join("\n  ")
            )));
        }
        let mut seen_workers: HashSet<WorkerId> = workers.iter().cloned().collect();
        let mut seen_assignments = HashSet::new();
        let mut csv_participations = Vec::new();
        let mut bad_rows = Vec::new();
        let mut csv_rows = 0;
        for path in &args.files {
            let file = workers_csv::read(path)?;
            if file.rows.is_empty() && file.bad.is_empty() {
                return Err(CliError::Usage(format!(
                    "--from-csv {}: no worker id in the file; nothing was done",
                    file.name
                )));
            }
            csv_rows += file.rows.len();
            bad_rows.extend(file.bad);
            for row in file.rows {
                match row.assignment {
                    Some((assignment, hit)) => {
                        if seen_assignments.insert(assignment.clone()) {
                            csv_participations.push(CsvParticipation {
                                worker: row.worker,
                                assignment,
                                hit,
                                hit_type: row.hit_type,
                            });
                        }
                    }
                    None => {
                        if seen_workers.insert(row.worker.clone()) {
                            workers.push(row.worker);
                        }
                    }
                }
            }
        }
        if hits.is_empty() && hit_types.is_empty() && workers.is_empty() && csv_rows == 0 {
            if !bad_rows.is_empty() {
                return Err(CliError::Usage(format!(
                    "no usable row, nothing was done:\n  {}",
                    bad_rows
                        .iter()
                        .map(|b| format!("{} line {}: {}", b.file, b.line, b.problem))
                        .collect::<Vec<_>>()
                        .join("\n  ")
                )));
            }
            return Err(CliError::Usage(
                "name what to exclude: --hit, --hit-type, --worker or --from-csv (see --help)"
                    .into(),
            ));
        }
        Ok(Input {
            hits,
            hit_types,
            workers,
            csv_participations,
            bad_rows,
        })
    }
}

/// What one worker's participations came to.
#[derive(Debug, Default)]
struct WorkerResult {
    worker: Option<WorkerId>,
    outcomes: Vec<(Option<AssignmentId>, Outcome)>,
    failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
struct Failure {
    worker_id: Option<String>,
    assignment_id: Option<String>,
    hit_id: Option<String>,
    hit_type_id: Option<String>,
    reason: String,
}

impl Failure {
    fn of_hit(hit: &HitId, e: &MturkError) -> Failure {
        Failure {
            worker_id: None,
            assignment_id: None,
            hit_id: Some(hit.to_string()),
            hit_type_id: None,
            reason: e.to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
struct NotFound {
    /// "hit" or "hit_type".
    kind: &'static str,
    id: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct HitLine {
    hit_id: String,
    hit_type_id: String,
    assignments: usize,
}

#[derive(Debug, Serialize)]
struct KeptReleased {
    worker_id: String,
    /// Assignments seen again that the lab had already released.
    assignment_ids: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    newly_excluded: usize,
    already_excluded: usize,
    kept_released: usize,
    failed: usize,
    not_found: usize,
    bad_rows: usize,
    /// Participations handled (assignments, plus workers named by hand).
    participations: usize,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    dry_run: bool,
    summary: Summary,
    newly_excluded: Vec<String>,
    already_excluded: Vec<String>,
    kept_released: Vec<KeptReleased>,
    failed: Vec<Failure>,
    not_found: Vec<NotFound>,
    bad_rows: Vec<BadRow>,
    hits: Vec<HitLine>,
    notes: Vec<String>,
}

/// One thing to exclude: a participation, or (None) the worker by hand.
type Item = Option<NewParticipation>;

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let input = Input::read(&args)?;
    let excluder = ctx.excluder().await?;
    // A missing table or a wrong region is the environment's fault: say so
    // once (exit 3) rather than as one failure per worker.
    excluder.ledger().last_heartbeat().await?;
    let json = ctx.global.json;
    let mut report = Report {
        dry_run: args.dry_run,
        bad_rows: input.bad_rows,
        ..Report::default()
    };

    let hits = hits_to_walk(&excluder, &input.hits, &input.hit_types, &mut report).await;
    let mut hit_types: HashMap<HitId, HitTypeId> = hits
        .iter()
        .map(|h| (h.hit_id.clone(), h.hit_type_id.clone()))
        .collect();
    let mut by_worker: BTreeMap<WorkerId, Vec<Item>> = BTreeMap::new();
    let mut known_assignments = HashSet::new();

    let bar = output::progress(hits.len() as u64, "listing HITs", json);
    for hit in &hits {
        let listed = excluder
            .mturk()
            .assignments_for_hit(hit, |n| {
                bar.set_message(format!("HIT {}: {n} assignments", hit.hit_id))
            })
            .await;
        bar.inc(1);
        match listed {
            Ok(assignments) => {
                report.hits.push(HitLine {
                    hit_id: hit.hit_id.to_string(),
                    hit_type_id: hit.hit_type_id.to_string(),
                    assignments: assignments.len(),
                });
                for a in assignments {
                    if !known_assignments.insert(a.assignment_id.clone()) {
                        continue;
                    }
                    by_worker.entry(a.worker_id.clone()).or_default().push(Some(
                        NewParticipation {
                            worker_id: a.worker_id,
                            assignment_id: a.assignment_id,
                            hit_id: a.hit_id,
                            hit_type_id: a.hit_type_id,
                            submit_time: a.submit_time,
                            learned: Learned::Backfill,
                        },
                    ));
                }
            }
            // Disposed between the look-up and the listing.
            Err(e) if e.turk_error_code() == Some(HIT_GONE) => report.not_found.push(NotFound {
                kind: "hit",
                id: hit.hit_id.to_string(),
                reason: hit_gone_reason(),
            }),
            Err(e) => report.failed.push(Failure::of_hit(&hit.hit_id, &e)),
        }
    }
    bar.finish_and_clear();

    // A batch CSV usually lacks nothing but, when it has no HITTypeId
    // column, the HIT type: one GetHIT per distinct HIT supplies it.
    for row in input.csv_participations {
        if !known_assignments.insert(row.assignment.clone()) {
            continue;
        }
        let hit_type = match row.hit_type {
            Some(t) => Some(t),
            None => match hit_types.get(&row.hit) {
                Some(t) => Some(t.clone()),
                None => {
                    let found = hit_type_of(&excluder, &row.hit, &mut report).await;
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
            .push(Some(NewParticipation {
                worker_id: row.worker,
                assignment_id: row.assignment,
                hit_id: row.hit,
                hit_type_id: hit_type,
                submit_time: None,
                learned: Learned::Backfill,
            }));
    }
    // Named by hand last, so that their own participations are recorded first.
    for worker in input.workers {
        by_worker.entry(worker).or_default().push(None);
    }

    let results = exclude_all(&excluder, by_worker, &args, json).await;
    tally(&mut report, results);
    print(&report, json)?;
    let s = &report.summary;
    let problems: Vec<String> = [
        (s.failed, "failed"),
        (s.not_found, "not found"),
        (s.bad_rows, "bad CSV rows"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !problems.is_empty() {
        let done = if args.dry_run {
            "the rest was checked"
        } else {
            "the rest was done; running the same command again retries only what is missing"
        };
        return Err(CliError::Partial(format!(
            "{} (each named above); {done}",
            problems.join(", ")
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// The HITs named directly and through their HIT type, each once.
async fn hits_to_walk(
    excluder: &Excluder,
    hit_ids: &[HitId],
    hit_types: &[HitTypeId],
    report: &mut Report,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    let mut seen = HashSet::new();
    if !hit_types.is_empty() {
        match excluder.mturk().hits().await {
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
                        hit_type_id: Some(t.to_string()),
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
        match excluder.mturk().hit(id).await {
            Ok(hit) => {
                seen.insert(id.clone());
                hits.push(hit);
            }
            Err(e) if e.turk_error_code() == Some(HIT_GONE) => report.not_found.push(NotFound {
                kind: "hit",
                id: id.to_string(),
                reason: hit_gone_reason(),
            }),
            Err(e) => report.failed.push(Failure::of_hit(id, &e)),
        }
    }
    hits
}

/// The HIT type of a HIT named in a CSV; a disposed HIT's rows are still
/// recorded, only without it.
async fn hit_type_of(excluder: &Excluder, hit: &HitId, report: &mut Report) -> Option<HitTypeId> {
    match excluder.mturk().hit(hit).await {
        Ok(h) => Some(h.hit_type_id),
        Err(e) if e.turk_error_code() == Some(HIT_GONE) => {
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

/// Each worker's participations one after the other (so one worker is
/// never granted twice at once), several workers at a time.
async fn exclude_all(
    excluder: &Excluder,
    by_worker: BTreeMap<WorkerId, Vec<Item>>,
    args: &Args,
    json: bool,
) -> Vec<WorkerResult> {
    let what = if args.dry_run {
        "checking"
    } else {
        "excluding"
    };
    let bar = output::progress(by_worker.len() as u64, what, json);
    let streak = AtomicUsize::new(0);
    let results = stream::iter(by_worker)
        .map(|(worker, items)| {
            let (bar, streak) = (&bar, &streak);
            async move {
                let result = if streak.load(Ordering::Relaxed) >= FAILURE_STREAK_LIMIT {
                    not_attempted(&worker, &items)
                } else if args.dry_run {
                    predict(excluder, &worker, items).await
                } else {
                    exclude_worker(excluder, &worker, items).await
                };
                if result.outcomes.is_empty() && !result.failures.is_empty() {
                    streak.fetch_add(1, Ordering::Relaxed);
                } else {
                    streak.store(0, Ordering::Relaxed);
                }
                bar.inc(1);
                WorkerResult {
                    worker: Some(worker),
                    ..result
                }
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .collect::<Vec<_>>()
        .await;
    bar.finish_and_clear();
    results
}

fn failure(worker: &WorkerId, item: &Item, reason: String) -> Failure {
    Failure {
        worker_id: Some(worker.to_string()),
        assignment_id: item.as_ref().map(|p| p.assignment_id.to_string()),
        hit_id: item.as_ref().map(|p| p.hit_id.to_string()),
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

fn not_attempted(worker: &WorkerId, items: &[Item]) -> WorkerResult {
    WorkerResult {
        failures: items
            .iter()
            .map(|item| {
                failure(
                    worker,
                    item,
                    format!(
                        "not attempted: {FAILURE_STREAK_LIMIT} workers in a row had failed, so \
                         the run stopped starting new ones; run again once the cause is fixed"
                    ),
                )
            })
            .collect(),
        ..WorkerResult::default()
    }
}

async fn exclude_worker(excluder: &Excluder, worker: &WorkerId, items: Vec<Item>) -> WorkerResult {
    let mut result = WorkerResult::default();
    for item in items {
        let outcome = match &item {
            Some(p) => {
                excluder
                    .exclude_participation(p.clone(), Releases::Respect)
                    .await
            }
            None => excluder.exclude_worker(worker, Learned::Manual).await,
        };
        match outcome {
            Ok(o) => result.outcomes.push((item.map(|p| p.assignment_id), o)),
            Err(e) => result.failures.push(exclusion_failure(worker, &item, &e)),
        }
    }
    result
}

/// What `exclude_worker` would do, read from the ledger alone: the same
/// decisions as `Excluder`, without writing.
async fn predict(excluder: &Excluder, worker: &WorkerId, items: Vec<Item>) -> WorkerResult {
    let mut result = WorkerResult::default();
    let standing = match excluder
        .ledger()
        .exclusion(worker, excluder.qualification())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let e = ExclusionError::from(e);
            for item in &items {
                result.failures.push(exclusion_failure(worker, item, &e));
            }
            return result;
        }
    };
    let excluded = standing.is_some_and(|x| x.state == ExclusionState::Excluded);
    for item in items {
        let outcome = match &item {
            _ if excluded => Ok(Outcome::AlreadyExcluded),
            // Naming a worker by hand excludes them, released or not.
            None => Ok(Outcome::Excluded),
            Some(p) => match excluder.ledger().participation(&p.assignment_id).await {
                Ok(Some(known)) if known.released_at.is_some() => Ok(Outcome::KeptReleased),
                Ok(_) => Ok(Outcome::Excluded),
                Err(e) => Err(ExclusionError::from(e)),
            },
        };
        match outcome {
            Ok(o) => result.outcomes.push((item.map(|p| p.assignment_id), o)),
            Err(e) => result.failures.push(exclusion_failure(worker, &item, &e)),
        }
    }
    result
}

fn tally(report: &mut Report, results: Vec<WorkerResult>) {
    let mut results = results;
    results.sort_by(|a, b| a.worker.cmp(&b.worker));
    for r in results {
        let Some(worker) = r.worker else { continue };
        report.summary.participations += r.outcomes.len() + r.failures.len();
        let any = |want: &[Outcome]| r.outcomes.iter().any(|(_, o)| want.contains(o));
        if any(&[Outcome::Excluded]) {
            report.newly_excluded.push(worker.to_string());
        } else if any(&[Outcome::AlreadyExcluded, Outcome::Duplicate]) {
            report.already_excluded.push(worker.to_string());
        } else if any(&[Outcome::KeptReleased]) {
            report.kept_released.push(KeptReleased {
                worker_id: worker.to_string(),
                assignment_ids: r
                    .outcomes
                    .iter()
                    .filter_map(|(a, _)| a.as_ref().map(ToString::to_string))
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
}

fn workers(n: usize) -> String {
    if n == 1 {
        "1 worker".into()
    } else {
        format!("{n} workers")
    }
}

/// Lists ids inline when there are few enough to read.
fn few(ids: &[String]) -> String {
    const SHOWN: usize = 20;
    if ids.is_empty() {
        String::new()
    } else if ids.len() <= SHOWN {
        format!(": {}", ids.join(", "))
    } else {
        " (--json lists them)".into()
    }
}

fn print(report: &Report, json: bool) -> Result<(), CliError> {
    if json {
        return output::print_json(report);
    }
    for h in &report.hits {
        let plural = if h.assignments == 1 { "" } else { "s" };
        println!(
            "HIT {} (HIT type {}): {} submitted assignment{plural}",
            h.hit_id, h.hit_type_id, h.assignments
        );
    }
    for n in &report.not_found {
        let kind = if n.kind == "hit" { "HIT" } else { "HIT type" };
        println!("{kind} {}: {}", n.id, n.reason);
    }
    for b in &report.bad_rows {
        println!("{} line {}: {}", b.file, b.line, b.problem);
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    println!();
    let s = &report.summary;
    if report.dry_run {
        println!("Dry run: nothing was changed.");
        println!(
            "Would be newly excluded: {}{}",
            workers(s.newly_excluded),
            few(&report.newly_excluded)
        );
    } else {
        println!(
            "Newly excluded: {}{}",
            workers(s.newly_excluded),
            few(&report.newly_excluded)
        );
    }
    println!(
        "Already excluded: {}{}",
        workers(s.already_excluded),
        few(&report.already_excluded)
    );
    if s.kept_released > 0 {
        println!(
            "Kept released: {} (the lab released them; an assignment already known does not \
             exclude them again, a new one would)",
            workers(s.kept_released)
        );
        for k in &report.kept_released {
            println!(
                "  {} (assignments {})",
                k.worker_id,
                k.assignment_ids.join(", ")
            );
        }
    }
    println!("Failed: {}", s.failed);
    for f in &report.failed {
        let mut what = Vec::new();
        if let Some(w) = &f.worker_id {
            what.push(format!("worker {w}"));
        }
        if let Some(a) = &f.assignment_id {
            what.push(format!("assignment {a}"));
        }
        if let Some(h) = &f.hit_id {
            what.push(format!("HIT {h}"));
        }
        if let Some(t) = &f.hit_type_id {
            what.push(format!("HIT type {t}"));
        }
        println!("  {}: {}", what.join(", "), f.reason);
    }
    Ok(())
}
