//! `adopt`: the lab's history, taken into the pool when the lab chooses:
//! what the watch left out, or the holders of an earlier exclusion list.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::exclusion::Tally;
use mturk_exclusion::ids::{HitTypeId, QualificationTypeId};
use mturk_exclusion::ops::backfill::Failure;
use mturk_exclusion::ops::history::{self, AdoptError, AdoptPlan, Adopted, CarriedOver};
use serde::Serialize;

use crate::context::{CliError, Context};
use crate::output;
use crate::workers_csv;

/// Workers above this many are excluded only once the lab confirms (or passes --yes).
const CONFIRM_ABOVE: usize = 100;

/// Adopt the lab's history: exclude the earlier workers the watch left out, or carry an old list over
///
/// The pool starts when the stack made its ledger table (`status` shows the time). The
/// watch excludes every submission made since then to any HIT type it covers, and every
/// earlier one to HITs that require this pool's qualification with DoesNotExist: the lab
/// said those workers belong to its list. Earlier submissions to other HITs (pilots, norming
/// surveys, unrelated tasks; as far back as MTurk still lists them, 120 days at most) are
/// the lab's history. A requirement added later (`coverage --fix`, GuardUnguardedHits) does
/// not make a HIT's history the pool's. The watch leaves the history out and counts it per
/// HIT type (`status`, `coverage`, the report); this command takes it in:
///   adopt                          every HIT type with history left out
///   adopt --hit-type ID            that HIT type's history (repeatable; comma-separated)
///   adopt --from-qualification ID  the holders of the lab's earlier exclusion
///                                  qualification: each is excluded by this pool, and the
///                                  watch covers the HITs that require it with
///                                  DoesNotExist, their earlier workers included. Their
///                                  live HITs count as unguarded until they require this
///                                  pool's qualification too (`coverage --fix`)
///
/// It lists the history on MTurk again and shows it per HIT type first; --dry-run stops there
/// and predicts each worker's outcome, changing nothing. Above 100 workers it asks; without a
/// terminal that is a no (exit 5), so scripts pass --yes.
///
/// Each submission takes the Lambda's own path: recorded in the ledger, then the
/// qualification granted with SendNotification=false. No email, no block, no rejection. A
/// worker the lab released stays released for what they submitted before the release. An
/// adopted HIT type's history is the pool's from then on: the watch never leaves it out again.
///
/// Examples:
///   mturk-exclusion --stack mturk-exclusion adopt --dry-run
///   mturk-exclusion --stack mturk-exclusion adopt --hit-type 3ABCDEFGHIJKLMNOPQRSTUVWXYZ012
///   mturk-exclusion --stack mturk-exclusion adopt --from-qualification 3OLDLISTQUALIFICATIONID0 --yes
///
/// Exit codes: 0 done (or nothing to adopt); 1 done in part (each failure named: running
/// again retries, and the watch's next run finishes a HIT type's history); 2 bad input, or a
/// HIT type this pool does not cover; 3 environment; 5 not confirmed, nothing changed.
#[derive(ClapArgs, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A HIT type whose history to adopt (repeatable; comma-separated ids allowed).
    #[arg(
        long = "hit-type",
        value_name = "ID",
        value_delimiter = ',',
        conflicts_with = "from_qualification"
    )]
    pub hit_types: Vec<String>,
    /// The lab's earlier exclusion qualification: carry its holders into this pool.
    #[arg(long, value_name = "ID")]
    pub from_qualification: Option<String>,
    /// Show what would be adopted and predict each outcome; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask, whatever the number of workers.
    #[arg(long)]
    pub yes: bool,
    /// Workers handled at once (MTurk calls stay within --max-rps whatever this is).
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
}

#[derive(Serialize)]
struct HistoryOutput<'a> {
    pool_start: String,
    hit_types: &'a [history::HistoryOfType],
    workers: usize,
    submissions: u64,
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    adopted: Option<&'a Adopted>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let mut problems = Vec::new();
    let hit_types = workers_csv::parse_ids(
        "--hit-type",
        &args.hit_types,
        HitTypeId::parse,
        &mut problems,
    );
    let from = args
        .from_qualification
        .as_deref()
        .map(|q| {
            QualificationTypeId::parse(q).map_err(|e| format!("--from-qualification {q:?}: {e}"))
        })
        .transpose()
        .unwrap_or_else(|e| {
            problems.push(e);
            None
        });
    if !problems.is_empty() {
        return Err(CliError::Usage(format!(
            "nothing was done; fix these and run again:\n  {}",
            problems.join("\n  ")
        )));
    }
    let lab = ctx.lab().await?;
    match from {
        Some(q) => carry_over(ctx, &lab, &q, &args).await,
        None => adopt_history(ctx, &lab, &hit_types, &args).await,
    }
}

fn adopt_error(e: AdoptError) -> CliError {
    match e {
        AdoptError::NotCovered(_) | AdoptError::OwnList(_) => CliError::Usage(e.to_string()),
        AdoptError::Ledger(e) => e.into(),
        AdoptError::Mturk(e) => e.into(),
    }
}

/// Asks before a large change, unless --yes or a dry run.
fn confirmed(args: &Args, workers: usize, what: &str) -> Result<(), CliError> {
    if args.dry_run || args.yes || workers <= CONFIRM_ABOVE {
        return Ok(());
    }
    let question = format!("Exclude {workers} worker(s) {what} from this pool's future studies?");
    if output::confirm(&question) {
        Ok(())
    } else {
        Err(CliError::Aborted(
            "not confirmed: nothing was changed (run with --dry-run to see them, and pass --yes to adopt without asking)".into(),
        ))
    }
}

async fn adopt_history(
    ctx: &Context,
    lab: &mturk_exclusion::ops::Lab,
    hit_types: &[HitTypeId],
    args: &Args,
) -> Result<ExitCode, CliError> {
    let json = ctx.global.json;
    let bar = output::Bar::new(json);
    let plan = history::plan_adoption(lab, hit_types, &bar)
        .await
        .map_err(adopt_error)?;
    if !json {
        print_plan(&plan);
    }
    let (workers, submissions, start) = (plan.workers(), plan.submissions(), plan.start);
    let lines = plan.hit_types.clone();
    if workers > 0 {
        confirmed(
            args,
            workers,
            "who took part in these HITs before the pool's start",
        )?;
    }
    let adopted = history::adopt(lab, plan, args.dry_run, usize::from(args.concurrency), &bar)
        .await
        .map_err(adopt_error)?;
    if json {
        output::print_json(&HistoryOutput {
            pool_start: mturk_exclusion::ledger::stamp(start),
            hit_types: &lines,
            workers,
            submissions,
            dry_run: args.dry_run,
            adopted: Some(&adopted),
        })?;
    } else {
        print_outcome(&adopted.tally, &adopted.failures, args.dry_run);
    }
    outcome(&adopted.failures, "submission(s) or HIT(s) not adopted")
}

async fn carry_over(
    ctx: &Context,
    lab: &mturk_exclusion::ops::Lab,
    earlier: &QualificationTypeId,
    args: &Args,
) -> Result<ExitCode, CliError> {
    let json = ctx.global.json;
    let bar = output::Bar::new(json);
    let holders = history::holders_of(lab, earlier)
        .await
        .map_err(adopt_error)?;
    if !json {
        println!(
            "Qualification {earlier}: {} worker(s) hold it{}.",
            holders.0.len(),
            if holders.1.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} listed id(s) are not worker ids and are left alone)",
                    holders.1.len()
                )
            }
        );
    }
    confirmed(args, holders.0.len(), &format!("holding {earlier}"))?;
    let carried: CarriedOver = history::carry_over(
        lab,
        earlier,
        holders,
        args.dry_run,
        usize::from(args.concurrency),
        &bar,
    )
    .await
    .map_err(adopt_error)?;
    if json {
        output::print_json(&carried)?;
    } else {
        print_outcome(&carried.tally, &carried.failures, args.dry_run);
        if !args.dry_run {
            println!(
                "The watch now covers the HITs that require {earlier} with DoesNotExist, their earlier workers included. They still admit workers this pool excludes from now on: `coverage --fix` adds this pool's requirement to the live ones."
            );
        }
    }
    outcome(&carried.failures, "worker(s) not carried over")
}

fn print_plan(plan: &AdoptPlan) {
    let start = mturk_exclusion::ledger::stamp(plan.start);
    if plan.hit_types.is_empty() {
        println!("No history left out: nothing to adopt (the pool started {start}).");
        return;
    }
    println!("History from before the pool's start ({start}):");
    for t in &plan.hit_types {
        println!(
            "  {}  \"{}\"  {} submission(s) to {} HIT(s) by {} worker(s)",
            t.hit_type_id,
            t.title.as_deref().unwrap_or(""),
            t.left_out.submissions,
            t.left_out.hits,
            t.workers
        );
    }
    println!(
        "  in all: {} submission(s) by {} worker(s)",
        plan.submissions(),
        plan.workers()
    );
}

fn print_outcome(tally: &Tally, failures: &[Failure], dry_run: bool) {
    let verb = if dry_run { "would be" } else { "were" };
    println!(
        "{} worker(s) {verb} excluded; {} already were; {} duplicate submission(s); {} kept released.",
        tally.excluded, tally.already_excluded, tally.duplicates, tally.kept_released
    );
    for f in failures {
        println!(
            "  failed: {}{}{}",
            f.worker_id
                .as_ref()
                .map(|w| format!("worker {w}: "))
                .unwrap_or_default(),
            f.hit_id
                .as_ref()
                .map(|h| format!("HIT {h}: "))
                .unwrap_or_default(),
            f.reason
        );
    }
    if dry_run {
        println!("\nDry run: nothing was changed.");
    }
}

fn outcome(failures: &[Failure], what: &str) -> Result<ExitCode, CliError> {
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::Partial(format!(
            "{} {what} (each is named above); run the same command again",
            failures.len()
        )))
    }
}
