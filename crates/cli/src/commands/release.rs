//! `release`: un-exclude workers. The ledger is marked first, so that no
//! stale notification can exclude them again, then MTurk revokes the
//! qualification, silently unless the lab wrote a reason.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::ids::{HitId, WorkerId};
use mturk_exclusion::ops::release::{self, Options, Report, Request};

use crate::context::{CliError, Context};
use crate::output;
use crate::workers_csv;

/// Release (un-exclude) workers, so they can take the lab's studies again
///
/// What to name (each flag repeats, and takes comma-separated ids):
///   --worker ID     released entirely: every participation the ledger holds for them.
///   --from-csv FILE the same, for each worker in the file (MTurk's batch-results CSV, a CSV
///                   with a WorkerId column, or one worker id per line; "-" reads stdin).
///   --hit ID        the workers of a HIT, found in the ledger, so this works long after MTurk
///                   disposed of the HIT. A worker who also took part in another HIT, or was
///                   excluded by hand, stays excluded (exclusion wins); the output names who was
///                   kept and why. Name several HITs at once to release them together.
///
/// The command acts on what it showed: only the workers of the plan are released, and each
/// worker found through a HIT is checked again just before the release; one who took part in
/// another study meanwhile is kept and reported as changed since the plan.
///
/// The ledger is changed first (when, and why: --note or --reason, on the exclusion and on
/// every participation), then MTurk revokes the qualification. A stale redelivery of an old
/// notification does not exclude a released worker again; a new submission, or
/// `exclude --worker`, does.
///
/// No email: without --reason, MTurk revokes silently. With --reason, MTurk emails that text to
/// each released worker. --note records why in the ledger only, never sent to anyone.
///
/// All input is checked before anything is done: an invalid id, an unreadable file or a bad CSV
/// row stops the command (exit 2). Releasing more than --confirm-above workers asks first;
/// without a terminal that is a no (exit 5), so scripts pass --yes.
///
/// Exit codes: 0 done; 1 done in part (a failure, or an id the ledger does not know; each is
/// named, and running again retries only what is missing); 2 bad input, nothing done;
/// 3 environment; 5 not confirmed, nothing done.
#[derive(ClapArgs, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A worker to release entirely (repeatable; comma-separated ids allowed).
    #[arg(long = "worker", value_name = "ID", value_delimiter = ',')]
    pub workers: Vec<String>,
    /// A HIT whose workers to release, unless they are excluded for another reason.
    #[arg(long = "hit", value_name = "ID", value_delimiter = ',')]
    pub hits: Vec<String>,
    /// A file of workers to release entirely ("-": stdin).
    #[arg(long = "from-csv", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Text MTurk EMAILS to each released worker. Leave it out to release silently.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Why, for the lab's own record: kept in the ledger, never sent.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Report who would be released and who kept; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask, however many workers are released.
    #[arg(long)]
    pub yes: bool,
    /// Ask before releasing more than this many workers.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub confirm_above: usize,
    /// Workers released at once (MTurk calls stay within --max-rps whatever this is).
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
}

fn read(args: &Args) -> Result<Request, CliError> {
    let mut problems = Vec::new();
    let mut workers =
        workers_csv::parse_ids("--worker", &args.workers, WorkerId::parse, &mut problems);
    let hits = workers_csv::parse_ids("--hit", &args.hits, HitId::parse, &mut problems);
    for (flag, text) in [("--reason", &args.reason), ("--note", &args.note)] {
        if text.as_deref().is_some_and(|t| t.trim().is_empty()) {
            problems.push(format!("{flag} is empty: leave it out, or write the text"));
        }
    }
    let mut seen: HashSet<WorkerId> = workers.iter().cloned().collect();
    for path in &args.files {
        let file = workers_csv::read(path)?;
        for bad in file.bad {
            problems.push(format!("{} line {}: {}", bad.file, bad.line, bad.problem));
        }
        if file.rows.is_empty() {
            problems.push(format!("{}: no worker id in the file", file.name));
        }
        for row in file.rows {
            if seen.insert(row.worker.clone()) {
                workers.push(row.worker);
            }
        }
    }
    if !problems.is_empty() {
        return Err(CliError::Usage(format!(
            "nothing was done; fix these and run again:\n  {}",
            problems.join("\n  ")
        )));
    }
    if workers.is_empty() && hits.is_empty() {
        return Err(CliError::Usage(
            "name whom to release: --worker, --hit or --from-csv (see --help)".into(),
        ));
    }
    Ok(Request { workers, hits })
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let request = read(&args)?;
    let json = ctx.global.json;
    let lab = ctx.lab().await?;
    if let Some(reason) = &args.reason {
        let tense = if args.dry_run {
            "would email"
        } else {
            "emails"
        };
        // In full: this is exactly what workers will read.
        eprintln!(
            "warning: with --reason, MTurk {tense} this text to each released worker: \"{}\"",
            reason.escape_debug()
        );
    }
    let plan = release::plan(&lab, &request).await?;
    let n = plan.targets.len();
    if !args.dry_run && !args.yes && n > args.confirm_above {
        eprintln!(
            "About to release {} (more than --confirm-above {}); {} kept excluded.",
            workers(n),
            args.confirm_above,
            plan.kept.len()
        );
        let question = format!(
            "Release {}{}?",
            workers(n),
            if args.reason.is_some() {
                " and email each of them the reason"
            } else {
                ""
            }
        );
        if !output::confirm(&question) {
            return Err(CliError::Aborted(format!(
                "not confirmed: nothing was changed (run with --dry-run to see the list, and pass \
                 --yes to release {} without asking)",
                workers(n)
            )));
        }
    }
    let options = Options {
        note: args.note.clone(),
        email_reason: args.reason.clone(),
        dry_run: args.dry_run,
        concurrency: usize::from(args.concurrency),
    };
    let bar = output::Bar::new(json || args.dry_run);
    let report = release::execute(&lab, plan, &options, &bar).await;
    print(&report, json)?;
    let s = &report.summary;
    let problems: Vec<String> = [(s.failed, "failed"), (s.not_found, "not found")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if !problems.is_empty() {
        return Err(CliError::Partial(format!(
            "{} (each named above); the rest was {}",
            problems.join(", "),
            if args.dry_run {
                "checked"
            } else {
                "done, and running the same command again retries only what is missing"
            }
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

fn print(report: &Report, json: bool) -> Result<(), CliError> {
    if json {
        return output::print_json(report);
    }
    let verb = if report.dry_run {
        "Would release"
    } else {
        "Released"
    };
    for r in &report.released {
        let how = if r.hit_ids.is_empty() {
            "named".to_owned()
        } else {
            format!("only took part in HIT {}", r.hit_ids.join(", HIT "))
        };
        let mturk = match r.mturk {
            Some("revoked") if report.reason_emailed => "; MTurk revoked, reason emailed",
            Some("revoked") => "; MTurk revoked, no email",
            Some(_) => "; MTurk had no grant to revoke",
            None => "",
        };
        let already = if r.already_released {
            "; the ledger already said released"
        } else {
            ""
        };
        let changed = match r.changed_since {
            Some(state) => format!("; the ledger changed while releasing, now {state}"),
            None => String::new(),
        };
        println!("{verb} {} ({how}{already}{mturk}{changed})", r.worker_id);
    }
    for k in &report.kept {
        println!("Kept {} excluded: {}", k.worker_id, k.reason);
    }
    for n in &report.not_found {
        let kind = if n.kind == "hit" { "HIT" } else { "worker" };
        println!("Not found: {kind} {}: {}", n.id, n.reason);
    }
    for f in &report.failed {
        println!(
            "Failed: {} at the {} step: {}",
            f.worker_id, f.step, f.reason
        );
    }
    let s = &report.summary;
    println!();
    if report.dry_run {
        println!("Dry run: nothing was changed.");
    }
    println!(
        "{}: {}; kept excluded: {}{}; not found: {}; failed: {}.",
        verb,
        workers(s.released),
        s.kept,
        if s.changed_since_plan > 0 {
            format!(" ({} changed since the plan)", s.changed_since_plan)
        } else {
            String::new()
        },
        s.not_found,
        s.failed
    );
    Ok(())
}
