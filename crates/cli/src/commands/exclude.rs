//! `exclude`: backfill. Finds the workers of HITs, HIT types, id lists and
//! batch CSVs, and sends each participation through the same `Excluder` path
//! as the Lambda, so the ledger and MTurk end up as if notifications had
//! always been on.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::exclusion::Releases;
use mturk_exclusion::ids::{HitId, HitTypeId, WorkerId};
use mturk_exclusion::ops::backfill::{self, BadRow, CsvParticipation, Options, Report, Request};

use crate::context::{CliError, Context};
use crate::output;
use crate::workers_csv;

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
/// calling MTurk.
///
/// A release stands against older participations: a worker the lab released stays released for
/// every participation submitted at or before the release (the output lists those kept
/// released). A later submission, naming the worker with --worker or in a plain list, or
/// --override-releases excludes them again (exclusion wins).
///
/// A batch CSV row whose WorkerId disagrees with the worker the ledger or MTurk has for that
/// AssignmentId (or with another row) is reported and not recorded.
///
/// --dry-run reads MTurk's HIT listings and the ledger, and reports per worker what would
/// happen, decided by the same rule as a real run; it writes nothing anywhere.
///
/// Exit codes: 0 done; 1 done in part (failed items, HITs MTurk no longer knows, bad or
/// mismatched CSV rows;
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
    /// Exclude again workers the lab released, for participations submitted before their release.
    #[arg(long)]
    pub override_releases: bool,
    /// Workers handled at once (MTurk calls stay within --max-rps whatever this is).
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
    /// Start no new worker after this many minutes (a worker started finishes); those not
    /// started are listed as not attempted, and running the same command again goes on.
    #[arg(long, value_name = "MINUTES",
          value_parser = clap::value_parser!(u32).range(1..=10_080))]
    pub time_limit: Option<u32>,
}

struct Input {
    request: Request,
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
        let mut csv = Vec::new();
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
                    // Repeats too: the library tells agreeing ones from disagreeing ones.
                    Some((assignment, hit)) => csv.push(CsvParticipation {
                        worker: row.worker,
                        assignment,
                        hit,
                        hit_type: row.hit_type,
                        file: file.name.clone(),
                        line: row.line,
                    }),
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
            request: Request {
                hits,
                hit_types,
                workers,
                csv,
            },
            bad_rows,
        })
    }
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let input = Input::read(&args)?;
    let lab = ctx.lab().await?;
    let json = ctx.global.json;
    let options = Options {
        dry_run: args.dry_run,
        releases: if args.override_releases {
            Releases::Override
        } else {
            Releases::Respect
        },
        concurrency: usize::from(args.concurrency),
        deadline: args.time_limit.map(|minutes| {
            tokio::time::Instant::now() + std::time::Duration::from_secs(u64::from(minutes) * 60)
        }),
    };
    let bar = output::Bar::new(json);
    let report = backfill::run(&lab, input.request, input.bad_rows, options, &bar).await?;
    print(&report, json)?;
    let s = &report.summary;
    let problems: Vec<String> = [
        (s.failed, "failed"),
        (s.not_found, "not found"),
        (s.bad_rows, "bad CSV rows"),
        (
            s.mismatched,
            "CSV rows naming another worker than the ledger or MTurk",
        ),
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

fn workers(n: usize) -> String {
    if n == 1 {
        "1 worker".into()
    } else {
        format!("{n} workers")
    }
}

/// Ids one after the other, as a `String` list's `join` would.
pub(crate) fn joined(ids: &[impl AsRef<str>], separator: &str) -> String {
    ids.iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(separator)
}

/// Lists ids inline when there are few enough to read.
fn few(ids: &[WorkerId]) -> String {
    const SHOWN: usize = 20;
    if ids.is_empty() {
        String::new()
    } else if ids.len() <= SHOWN {
        format!(": {}", joined(ids, ", "))
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
    for m in &report.mismatched {
        let other = match m.according_to {
            "file" => "another row",
            "mturk" => "MTurk",
            _ => "the ledger",
        };
        println!(
            "{} line {}: assignment {} was done by {} according to {other}, not {}; not recorded",
            m.file, m.line, m.assignment_id, m.other_worker_id, m.worker_id
        );
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
            "Kept released: {} (the lab released them after these participations; a later \
             submission excludes them again, and --override-releases does now)",
            workers(s.kept_released)
        );
        for k in &report.kept_released {
            if k.assignment_ids.is_empty() {
                println!("  {}", k.worker_id);
            } else {
                println!(
                    "  {} (assignments {})",
                    k.worker_id,
                    joined(&k.assignment_ids, ", ")
                );
            }
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
