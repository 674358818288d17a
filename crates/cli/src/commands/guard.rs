//! `guard`: how a HIT page asks the stack's check URL before the worker
//! starts, with the URL filled in.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::aws::{self, Limits};

use crate::context::{stack_outputs, CliError, Global};
use crate::output;

/// The recipes, with `{{CHECK_URL}}` where the stack's check URL goes.
const RECIPES: &str = include_str!("../../../../web/recipes.md");
/// The placeholder, replaced exactly and nowhere else.
const PLACEHOLDER: &str = "{{CHECK_URL}}";

/// Print how to stop repeat and busy workers on the HIT page itself, right
/// after they accept, with your stack's check URL filled in.
///
/// Exclusion at submission keeps a worker out of your *next* studies. The
/// check URL (the stack's `CheckUrl` output, a Lambda Function URL) also
/// covers the moment before: a page that includes `web/guard.js` asks it
/// whether the worker who just accepted already took part in one of your
/// studies, or holds another of your HITs right now, and if so asks them
/// kindly to return the HIT before doing any work. Nobody is rejected, and
/// the page shows the task whenever the check is slow or down.
///
/// This prints the guard.js snippet and copy-ready recipes for an
/// ExternalQuestion or HTMLQuestion page, jsPsych, Qualtrics, psiTurk and
/// oTree. The URL comes from --check-url (or MTURK_EXCLUSION_CHECK_URL), or
/// else from the stack's CheckUrl output (--stack or MTURK_EXCLUSION_STACK;
/// this reads CloudFormation and nothing else).
///
/// Examples:
///   mturk-exclusion guard --stack mturk-exclusion > recipes.md
///   mturk-exclusion guard --check-url https://abc123.lambda-url.us-east-1.on.aws/
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The check URL to fill in, instead of the stack's CheckUrl output.
    #[arg(long, env = "MTURK_EXCLUSION_CHECK_URL", value_name = "URL")]
    pub check_url: Option<String>,
}

/// A URL that can be pasted into HTML, JavaScript and a Qualtrics field
/// as it is.
fn validate(url: &str) -> Result<String, CliError> {
    let url = url.trim();
    let scheme_ok = url.starts_with("https://")
        || url.starts_with("http://127.0.0.1")
        || url.starts_with("http://localhost");
    let clean = url.chars().all(|c| {
        c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\' | '{' | '}')
    });
    if !scheme_ok || !clean || url.contains('?') || url.contains('#') {
        return Err(CliError::Usage(format!(
            "--check-url {}: expected the stack's CheckUrl output, like \
             https://abc123.lambda-url.us-east-1.on.aws/ (https, no query, no quotes)",
            mturk_exclusion::ids::shown(url)
        )));
    }
    Ok(url.to_owned())
}

/// The recipes with the placeholder replaced (that exact string only).
pub fn fill(url: &str) -> String {
    let usage = format!(
        "The page side is web/guard.js (no dependencies, no build step). Put it next to\n\
         your HIT page and include it after the task's markup:\n\n\
         \x20   <script src=\"guard.js\" data-endpoint=\"{PLACEHOLDER}\" data-task=\"#task\"\n\
         \x20           data-message=\"#guard-message\" data-timeout-ms=\"4000\"></script>\n\n\
         web/hit-page.html is a complete example.\n\n"
    );
    format!("{usage}{RECIPES}").replace(PLACEHOLDER, url)
}

async fn stack_check_url(global: &Global) -> Result<String, CliError> {
    let Some(stack) = global.stack.as_deref() else {
        return Err(CliError::Usage(
            "no check URL: pass --check-url URL, or --stack NAME to read the stack's CheckUrl output"
                .into(),
        ));
    };
    let sdk = aws::load(global.profile.as_deref(), Limits::default()).await;
    stack_outputs(&sdk, stack)
        .await?
        .remove("CheckUrl")
        .ok_or_else(|| {
            CliError::environment(
                format!("stack {stack} has no CheckUrl output"),
                "deploy the current template.yaml (it adds ExclusionCheckFunction and its URL)",
            )
        })
}

pub async fn run(global: &Global, args: Args) -> Result<ExitCode, CliError> {
    let url = match &args.check_url {
        Some(u) => u.clone(),
        None => stack_check_url(global).await?,
    };
    let url = validate(&url)?;
    let text = fill(&url);
    if global.json {
        output::print_json(&serde_json::json!({ "check_url": url, "recipes": text }))?;
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_only_the_placeholder() {
        let url = "https://abc123.lambda-url.us-east-1.on.aws/";
        let text = fill(url);
        assert!(!text.contains(PLACEHOLDER));
        assert!(!text.contains("CHECK_URL"), "no other spelling left behind");
        assert!(text.contains(&format!("data-endpoint=\"{url}\"")));
        assert!(text.contains("Qualtrics"));
        assert_eq!(
            text.matches(url).count(),
            format!("x{RECIPES}").matches(PLACEHOLDER).count() + 1
        );
    }

    #[test]
    fn refuses_what_cannot_be_pasted() {
        assert!(validate("https://abc.lambda-url.us-east-1.on.aws/").is_ok());
        assert!(validate("http://127.0.0.1:9000/lambda-url/exclusion-check/").is_ok());
        for bad in [
            "http://example.com/",
            "https://x/\"><script>",
            "https://x/?workerId=1",
            "ftp://x/",
            "{{CHECK_URL}}",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
