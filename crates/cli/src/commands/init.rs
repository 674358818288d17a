//! `init`: the lab's exclusion qualification type, created once.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::ids::QualificationTypeId;
use serde::Serialize;

use crate::context::{CliError, Context};
use crate::output;

/// Create the lab's "already took part" qualification type.
///
/// One qualification type is one exclusion pool's list. If the account
/// already has a qualification type with this name, `init` stops with exit
/// code 2 and names it: a second pool made with the same name would
/// silently share the first pool's list. Pass --name with a new name for a
/// new pool, or --reuse to print the existing type's id on purpose (the same
/// pool, e.g. deploying it again); nothing is created then. The type is Active, not
/// auto-granted and not requestable by workers. Its name and description are
/// visible to workers, so keep them neutral (they must not reveal what the
/// studies are about). Run it once per environment: the sandbox and
/// production have separate qualification types.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The qualification type's name (unique in the account, seen by workers).
    #[arg(long, default_value = "Took part in an earlier study of this lab")]
    pub name: String,
    /// The description workers see.
    #[arg(
        long,
        default_value = "You have already taken part in one of our studies. Each study is open once per person; thank you for your interest."
    )]
    pub description: String,
    /// Use the existing qualification type of this name instead of stopping:
    /// the lab means the same pool (its list is shared with whatever already
    /// uses it).
    #[arg(long)]
    pub reuse: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    qualification_type_id: String,
    name: &'a str,
    created: bool,
    environment: &'a str,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    if args.name.trim().is_empty() || args.description.trim().is_empty() {
        return Err(CliError::Usage(
            "--name and --description must not be empty".into(),
        ));
    }
    let (id, created) = match ctx.mturk.find_qualification_type(&args.name).await? {
        Some(id) => (found(ctx, &args, id)?, false),
        None => match ctx
            .mturk
            .create_qualification_type(&args.name, &args.description)
            .await
        {
            Ok(id) => (id, true),
            // Created by someone else between our look-up and our create.
            Err(e)
                if e.turk_error_code()
                    == Some("AWS.MechanicalTurk.QualificationTypeAlreadyExists") =>
            {
                match ctx.mturk.find_qualification_type(&args.name).await? {
                    Some(id) => (found(ctx, &args, id)?, false),
                    None => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        },
    };
    let report = Report {
        qualification_type_id: id.to_string(),
        name: &args.name,
        created,
        environment: ctx.environment_name(),
    };
    if ctx.global.json {
        output::print_json(&report)?;
    } else {
        println!(
            "{} qualification type {id} ({}) in MTurk {}.",
            if created { "Created" } else { "Found existing" },
            args.name,
            report.environment
        );
        println!("\nDeploy the stack with it:\n  sam deploy --guided --parameter-overrides QualificationTypeId={id} MTurkEnvironment={}", report.environment);
        println!("\nThen add it to every HIT: mturk-exclusion requirement --qualification {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// An existing qualification type of the name asked for: the pool it is
/// the list of goes on only when the lab says so.
fn found(
    ctx: &Context,
    args: &Args,
    id: QualificationTypeId,
) -> Result<QualificationTypeId, CliError> {
    if args.reuse {
        return Ok(id);
    }
    Err(CliError::Usage(format!(
        "a qualification type named {:?} already exists in MTurk {} ({id}): it is the list of the \
         pool that uses it, and a new pool made with it would share that list. For a new pool, \
         pass --name with a name of its own; to use this one on purpose (the same pool), pass --reuse",
        args.name,
        ctx.environment_name()
    )))
}
