//! `report`: the ledger as one self-contained HTML page, for the lab and its
//! IRB file. The numbers and the page come from the library
//! (`ops::report`); this is arguments, the call and writing the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::ledger;
use mturk_exclusion::ops::report::{self, html, Options, Source};
use serde::Serialize;
use time::OffsetDateTime;

use super::export::parse_since;
use crate::context::{CliError, Context};
use crate::output;

/// Write an HTML report of the ledger: participations over time per study,
/// the exposure window, repeats and the accept-time check, releases.
///
/// One file that needs no network: styles and charts (inline SVG) are in
/// it, it runs no script and loads nothing, so it opens anywhere, prints,
/// and can go into the study's IRB file as it is. It reads the ledger
/// once (a full scan of the table) and changes nothing.
///
/// What it shows, each chart with a line on how to read it:
///
///   - participations per day (per week over more than 92 days) for each
///     study, i.e. each HIT type, by MTurk's submit time;
///
///   - the exposure window: from a worker's submission to the ledger
///     recording them excluded, as a histogram with p50, p90, p99 and max
///     (participations learned from notifications only: a backfill's
///     exclusion did not follow its submission);
///
///   - repeats not stopped (participations by a worker who had taken part
///     before), and what the accept-time check leaves in the ledger: its
///     claims and the assignments returned or abandoned. Workers the check
///     turned away are not in the ledger (it writes nothing when it
///     refuses): the page says so and points to the dashboard's metric;
///
///   - releases over time, and each release with its date and note.
///
/// The header names the stack, the table, the qualification, when the page
/// was made and the time it covers. All times are UTC. The ledger and the
/// qualification come from --stack (or --table and --qualification), as
/// for every command.
///
/// Worker ids are personal data: the page has none unless you pass
/// --with-worker-ids (then releases and repeat workers are listed by id).
/// Without it, any worker id the ledger knows is replaced by "[worker id]"
/// in release notes too.
///
/// The file is written beside FILE under a temporary name and renamed over
/// it, readable by you only (mode 0600): a report of the same name is
/// replaced whole, never half-written. `-o -` writes the page to stdout.
///
/// Examples:
///
///   mturk-exclusion report -o report.html
///
///   mturk-exclusion report --since 2026-01-01 -o spring-2026.html
///
/// Exit codes: 0 written; 2 bad input (an invalid --since, no --output), 3
/// the ledger cannot be read or the file cannot be written.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Where to write the page (`-` for stdout). An existing file of that
    /// name is replaced.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Leave out everything before DATE: YYYY-MM-DD (midnight UTC) or an
    /// RFC 3339 time such as 2026-03-02T17:04:11Z. Participations count
    /// from their submit time, releases and claims from when they were made.
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    pub since: Option<OffsetDateTime>,
    /// Put worker ids on the page (each release's worker, the repeat
    /// workers). Only if the lab needs them: they identify people.
    #[arg(long)]
    pub with_worker_ids: bool,
}

#[derive(Serialize)]
struct Written<'a> {
    output: &'a Path,
    generated_at: String,
    participations: u64,
    studies: usize,
    releases: usize,
    with_worker_ids: bool,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let ledger = ctx.ledger()?;
    let qualification = ctx.qualification()?;
    let now = OffsetDateTime::now_utc();
    let source = Source {
        stack: ctx.global.stack.clone(),
        table: ledger.table().to_owned(),
        qualification: qualification.to_string(),
        environment: ctx.environment_name().to_owned(),
    };
    let options = Options {
        since: args.since,
        with_worker_ids: args.with_worker_ids,
        now,
    };
    let report = report::gather(&ledger, &qualification, source, &options).await?;
    let page = html::render(&report);

    if args.output.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(page.as_bytes())
            .and_then(|()| out.flush())
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| CliError::Environment {
                message: format!("could not write the report to stdout: {e}"),
                hint: None,
                source: Some(Box::new(e)),
            });
    }
    // A report is made again and again: it replaces the old one.
    output::write_private(&args.output, page.as_bytes(), true)?;
    if ctx.global.json {
        output::print_json(&Written {
            output: &args.output,
            generated_at: ledger::stamp(now),
            participations: report.participations,
            studies: report.studies.len(),
            releases: report.releases.list.len(),
            with_worker_ids: args.with_worker_ids,
        })?;
    } else {
        println!(
            "Wrote the report to {} ({} participation{} in {} stud{}, {} release{}).",
            args.output.display(),
            report.participations,
            if report.participations == 1 { "" } else { "s" },
            report.studies.len(),
            if report.studies.len() == 1 {
                "y"
            } else {
                "ies"
            },
            report.releases.list.len(),
            if report.releases.list.len() == 1 {
                ""
            } else {
                "s"
            },
        );
        if args.with_worker_ids {
            println!(
                "It contains worker ids, which are personal data: store it as the IRB protocol says."
            );
        } else {
            println!("It contains no worker ids. Open it in any browser; it loads nothing.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
