//! The admin CLI, the real binary, against DynamoDB Local, the SQS stand-in,
//! the MTurk double and the in-process handler. One test binary; the rules
//! the commands call are tested without the binary in the library's tests.

mod exclude;
mod export;
mod pools;
mod reconcile;
mod redrive;
mod release;
mod report;
mod setup;
mod status;
mod subscribe;

use testkit::pipeline::{CliRun, Pipeline};

const BINARY: &str = env!("CARGO_BIN_EXE_mturk-exclusion");

/// Runs this crate's `mturk-exclusion` binary against a pipeline.
pub(crate) trait CliExt {
    async fn cli(&self, args: &[&str]) -> CliRun;
    async fn cli_with_env(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> CliRun;
    async fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliRun;
}

impl CliExt for Pipeline {
    async fn cli(&self, args: &[&str]) -> CliRun {
        self.run_cli(BINARY, args, &[], None).await
    }
    async fn cli_with_env(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> CliRun {
        self.run_cli(BINARY, args, env, None).await
    }
    async fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliRun {
        self.run_cli(BINARY, args, &[], stdin).await
    }
}

/// Publishes a pipeline's table, queues and qualification as the outputs of
/// a CloudFormation stack, as `sam deploy` would (moto serves CloudFormation
/// on the SQS port), and returns the stack's name for `--stack`, with the
/// environment that makes the CLI find everything through it.
pub(crate) async fn deploy_outputs(p: &Pipeline) -> (String, Vec<(&'static str, Option<String>)>) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS").expect("AWS_ENDPOINT_URL_SQS is set");
    let cfn = aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::config::Builder::from(&p.stack.sdk)
            .endpoint_url(&endpoint)
            .build(),
    );
    let stack = testkit::unique_name("exclusion-stack").replace('-', "");
    let template = serde_json::json!({
        "Resources": { "Placeholder": { "Type": "AWS::SQS::Queue" } },
        "Outputs": {
            "TableName": { "Value": p.ledger.table() },
            "QueueUrl": { "Value": p.queues.url },
            "DeadLetterQueueUrl": { "Value": p.queues.dlq_url },
            "QualificationTypeId": { "Value": p.qualification.as_str() },
        }
    });
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(template.to_string())
        .send()
        .await
        .expect("moto creates the stack");
    let env = vec![
        ("MTURK_EXCLUSION_TABLE", None),
        ("MTURK_EXCLUSION_QUEUE_URL", None),
        ("MTURK_EXCLUSION_DLQ_URL", None),
        ("MTURK_EXCLUSION_QUALIFICATION", None),
        ("AWS_ENDPOINT_URL_CLOUDFORMATION", Some(endpoint)),
    ];
    (stack, env)
}
