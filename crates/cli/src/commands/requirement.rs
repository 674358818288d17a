//! `requirement`: what to add to each HIT so excluded workers never see it.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::ids::QualificationTypeId;

use crate::context::{stack_outputs, CliError, Global};
use crate::output;

/// Print the QualificationRequirement that keeps excluded workers out of a HIT.
///
/// `DoesNotExist` is the only comparator that works: value comparators
/// (LessThan, NotEqualTo, NotIn) fail for workers who lack the qualification,
/// which would shut out everyone new. `DiscoverPreviewAndAccept` hides the
/// HIT from excluded workers entirely, so they never start it and are never
/// rejected. Released workers (revoked) pass `DoesNotExist` again.
///
/// The qualification is --qualification's, else the --stack's. With several
/// exclusion pools (one stack each), a HIT may require several of them:
/// add one DoesNotExist requirement per pool it must respect, e.g.
///   mturk-exclusion requirement --stack deception --format json
///   mturk-exclusion requirement --stack pilots --format json
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The format to print: every form, or just one.
    #[arg(long, value_enum, default_value = "all")]
    pub format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    All,
    Json,
    Boto3,
    Psiturk,
}

pub async fn run(global: &Global, args: Args) -> Result<ExitCode, CliError> {
    let raw = match (&global.qualification, &global.stack) {
        (Some(q), _) => q.clone(),
        // One stack is one pool: its qualification is what its HITs require.
        (None, Some(stack)) => {
            let sdk = aws::load(global.profile.as_deref(), Limits::default()).await;
            stack_outputs(&sdk, stack)
                .await?
                .remove("QualificationTypeId")
                .ok_or_else(|| {
                    CliError::environment(
                        format!("stack {stack} has no QualificationTypeId output"),
                        "check --stack names a stack deployed from template.yaml",
                    )
                })?
        }
        (None, None) => {
            return Err(CliError::Usage(
                "pass --stack NAME or --qualification ID (or set MTURK_EXCLUSION_QUALIFICATION); `mturk-exclusion init` prints it".into(),
            ))
        }
    };
    let q = QualificationTypeId::parse(&raw)
        .map_err(|e| CliError::Usage(format!("--qualification: {e}")))?;
    let json = serde_json::json!({
        "QualificationTypeId": q.as_str(),
        "Comparator": "DoesNotExist",
        "ActionsGuarded": "DiscoverPreviewAndAccept",
    });
    if global.json || args.format == Format::Json {
        output::print_json(&json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let boto3 = format!(
        r#"exclusion = {{
    "QualificationTypeId": "{q}",
    "Comparator": "DoesNotExist",
    "ActionsGuarded": "DiscoverPreviewAndAccept",
}}
mturk.create_hit(..., QualificationRequirements=[exclusion, *other_requirements])"#
    );
    // psiTurk 3 turns each id in block_quals into a DoesNotExist requirement.
    let psiturk = format!("[HIT Configuration]\nblock_quals = {q}");
    let show = |title: &str, body: &str| println!("{title}\n{body}\n");
    if args.format == Format::All {
        let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
        show(
            "QualificationRequirement (JSON, for the API or the AWS CLI):",
            &pretty,
        );
    }
    if matches!(args.format, Format::All | Format::Boto3) {
        show("boto3:", &boto3);
    }
    if matches!(args.format, Format::All | Format::Psiturk) {
        show("psiTurk 3 (config.txt):", &psiturk);
    }
    Ok(ExitCode::SUCCESS)
}
