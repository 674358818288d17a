//! Runs one function's `bootstrap` as Lambda would, once, against the local
//! stack: scripts/check-dist.sh uses it for the zips it has no dedicated
//! test for (a function added to template.yaml is checked from the day it
//! ships).
//!
//! ```text
//! cargo run -p testkit --example invoke_bootstrap -- LOGICAL_ID BOOTSTRAP EVENT_JSON
//! ```
//!
//! The environment is the function's `Environment.Variables` in
//! template.yaml, resolved against a fresh pipeline (ledger table, queues,
//! qualification, MTurk double): `!Ref` of the table, a queue or the
//! qualification parameter gives the local one, `!Ref` of another parameter
//! its default, `!Ref AWS::StackName` a fixed pool name. The binary runs
//! through testkit's Runtime API emulator (BOOTSTRAP_RUNNER applies). Prints
//! the init duration and the answer; exits 0 on a response, 1 otherwise.
//! Needs AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL_SQS (the local stack).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_yaml::Value as Yaml;
use testkit::pipeline::Pipeline;
use testkit::runtime_api::{FunctionProcess, Invocation, RuntimeApi};

const POOL: &str = "dist-check";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("invoke_bootstrap: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [logical_id, bootstrap, event] = args.as_slice() else {
        bail!("usage: invoke_bootstrap LOGICAL_ID BOOTSTRAP EVENT_JSON");
    };
    let event: serde_json::Value = serde_json::from_str(event).context("EVENT_JSON")?;
    let template: Yaml =
        serde_yaml::from_str(testkit::table::TEMPLATE).context("template.yaml is not YAML")?;
    let p = Pipeline::start().await;
    let mut env = function_env(&template, logical_id, &p)?;
    for var in ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS"] {
        env.push((
            var.into(),
            std::env::var(var)
                .with_context(|| format!("{var} is not set (start the local stack)"))?,
        ));
    }
    env.push(("AWS_ENDPOINT_URL_MTURK".into(), p.double.endpoint()));
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    env.push(("AWS_LAMBDA_LOG_LEVEL".into(), "INFO".into()));
    for (k, v) in &env {
        eprintln!("  {k}={v}");
    }

    let name = Path::new(bootstrap)
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| logical_id.clone());
    let api = RuntimeApi::start_named(&name).await?;
    let process = FunctionProcess::spawn(Path::new(bootstrap), &api, &env)?;
    let answer = api.invoke(event, Duration::from_secs(60)).await;
    let log = process.log_text();
    if let Some(polled) = api.first_poll() {
        eprintln!(
            "init duration: {} ms",
            polled.duration_since(process.spawned_at()).as_millis()
        );
    }
    eprintln!("--- function log ---\n{log}--- end of log ---");
    match answer {
        Ok(Invocation::Response(v)) => {
            println!("{v}");
            Ok(true)
        }
        Ok(other) => {
            eprintln!("function error: {other:?}");
            Ok(false)
        }
        Err(e) => {
            eprintln!("no answer: {e}");
            Ok(false)
        }
    }
}

/// The function's variables, with references resolved for `p`.
fn function_env(t: &Yaml, logical_id: &str, p: &Pipeline) -> anyhow::Result<Vec<(String, String)>> {
    let vars = t["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
        .as_mapping()
        .with_context(|| format!("{logical_id} has no Environment.Variables in template.yaml"))?;
    vars.iter()
        .map(|(k, v)| {
            let k = k.as_str().context("a variable name")?.to_owned();
            let v = resolve(t, v, p).with_context(|| format!("{logical_id}: {k}"))?;
            Ok((k, v))
        })
        .collect()
}

fn resolve(t: &Yaml, v: &Yaml, p: &Pipeline) -> anyhow::Result<String> {
    match v {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => {
            let name = tagged.value.as_str().context("!Ref of a non-string")?;
            reference(t, name, p)
        }
        Yaml::Mapping(m) if m.len() == 1 && m.contains_key("Ref") => {
            reference(t, m["Ref"].as_str().context("Ref of a non-string")?, p)
        }
        other => bail!("cannot resolve {other:?} locally: teach invoke_bootstrap"),
    }
}

fn reference(t: &Yaml, name: &str, p: &Pipeline) -> anyhow::Result<String> {
    match name {
        "AWS::StackName" => return Ok(POOL.into()),
        "AWS::Region" => return Ok("us-east-1".into()),
        "AWS::AccountId" => return Ok("123456789012".into()),
        "QualificationTypeId" => return Ok(p.qualification.as_str().into()),
        "MTurkEnvironment" => return Ok("sandbox".into()),
        _ => {}
    }
    if let Some(param) = t["Parameters"].get(name) {
        let default = param
            .get("Default")
            .with_context(|| format!("parameter {name} has no default"))?;
        return resolve(t, default, p);
    }
    let resource = t["Resources"]
        .get(name)
        .with_context(|| format!("{name} is neither a parameter nor a resource"))?;
    match resource["Type"].as_str() {
        Some("AWS::DynamoDB::Table") => Ok(p.ledger.table().into()),
        Some("AWS::SQS::Queue") if name.contains("DeadLetter") => Ok(p.queues.dlq_url.clone()),
        Some("AWS::SQS::Queue") => Ok(p.queues.url.clone()),
        other => bail!("!Ref {name} (a {other:?}) has no local stand-in"),
    }
}
