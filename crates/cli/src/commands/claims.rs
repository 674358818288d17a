//! `clear-claim`: free workers the accept-time check holds as "busy".

use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::ids::WorkerId;
use mturk_exclusion::ops::claims;
use serde::Serialize;

use crate::context::{CliError, Context};
use crate::output;
use crate::workers_csv;

/// Clear the accept-time check's claim on workers, so they are free at once
///
/// A claim holds a worker "busy" for the lab's other HITs until the assigned HIT is submitted,
/// returned or abandoned, or its time runs out (the shorter of ClaimMinutes and the HIT's
/// assignment duration). Clear it when a worker writes that they are told "busy" but hold none
/// of your HITs: anyone who knows a worker id and one of your live HIT ids can claim that
/// worker (docs/security.md). `status` counts the live claims; the report counts claims that
/// ended with no word from MTurk.
///
/// Only the claim is removed: an exclusion stays as it is (`release` undoes those). A worker
/// with no claim is named as not found (exit 1).
#[derive(ClapArgs, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A worker whose claim to clear (repeatable; comma-separated ids allowed).
    #[arg(
        long = "worker",
        value_name = "ID",
        value_delimiter = ',',
        required = true
    )]
    pub workers: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    cleared: Vec<String>,
    not_found: Vec<String>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let mut problems = Vec::new();
    let workers = workers_csv::parse_ids("--worker", &args.workers, WorkerId::parse, &mut problems);
    if !problems.is_empty() {
        return Err(CliError::Usage(format!(
            "nothing was done; fix these and run again:\n  {}",
            problems.join("\n  ")
        )));
    }
    let lab = ctx.lab().await?;
    let out = claims::clear(&lab, &workers).await?;
    let code = if out.not_found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if ctx.global.json {
        output::print_json(&Report {
            cleared: out.cleared.iter().map(ToString::to_string).collect(),
            not_found: out.not_found.iter().map(ToString::to_string).collect(),
        })?;
        return Ok(code);
    }
    for w in &out.cleared {
        println!("Cleared the claim on {w}: free for the lab's HITs now");
    }
    for w in &out.not_found {
        println!("Not found: worker {w} has no claim");
    }
    Ok(code)
}
