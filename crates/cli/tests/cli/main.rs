//! The admin CLI, the real binary, against DynamoDB Local, the SQS stand-in,
//! the MTurk double and the in-process handler. One test binary; the rules
//! the commands call are tested without the binary in the library's tests.

mod adopt;
mod claims;
mod coverage;
mod dist;
mod exclude;
mod export;
mod policy;
mod pools;
mod reconcile;
mod redrive;
mod release;
mod report;
mod setup;
mod stack;
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

/// A stack "deployed" for a pipeline: its table, queues and qualification
/// published as a CloudFormation stack's outputs, as `sam deploy` would
/// (moto serves CloudFormation on the SQS port), so `--stack` finds them.
pub(crate) struct Deployed {
    pub name: String,
    endpoint: String,
    cfn: aws_sdk_cloudformation::Client,
}

impl Deployed {
    /// `parameters` are the stack's parameter values (e.g. RequireSourceAccount).
    pub async fn new(p: &Pipeline, parameters: &[(&str, &str)]) -> Deployed {
        let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS").expect("AWS_ENDPOINT_URL_SQS is set");
        let cfn = aws_sdk_cloudformation::Client::from_conf(
            aws_sdk_cloudformation::config::Builder::from(&p.stack.sdk)
                .endpoint_url(&endpoint)
                .build(),
        );
        let name = testkit::unique_name("exclusion-stack").replace('-', "");
        let declared: serde_json::Map<String, serde_json::Value> = parameters
            .iter()
            .map(|(k, _)| ((*k).to_owned(), serde_json::json!({ "Type": "String" })))
            .collect();
        let template = serde_json::json!({
            "Parameters": declared,
            "Resources": { "Placeholder": { "Type": "AWS::SQS::Queue" } },
            "Outputs": {
                "TableName": { "Value": p.ledger.table() },
                "QueueUrl": { "Value": p.queues.url },
                "DeadLetterQueueUrl": { "Value": p.queues.dlq_url },
                "QualificationTypeId": { "Value": p.qualification.as_str() },
            }
        });
        let values = parameters.iter().map(|(k, v)| {
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key(*k)
                .parameter_value(*v)
                .build()
        });
        cfn.create_stack()
            .stack_name(&name)
            .template_body(template.to_string())
            .set_parameters(Some(values.collect()))
            .send()
            .await
            .expect("moto creates the stack");
        Deployed {
            name,
            endpoint,
            cfn,
        }
    }

    /// The CLI's environment without the pipeline's names, so that
    /// everything must come from the stack.
    pub fn env(&self) -> Vec<(&str, Option<&str>)> {
        vec![
            ("MTURK_EXCLUSION_TABLE", None),
            ("MTURK_EXCLUSION_QUEUE_URL", None),
            ("MTURK_EXCLUSION_DLQ_URL", None),
            ("MTURK_EXCLUSION_QUALIFICATION", None),
            (
                "AWS_ENDPOINT_URL_CLOUDFORMATION",
                Some(self.endpoint.as_str()),
            ),
        ]
    }

    pub async fn delete(&self) {
        let _ = self.cfn.delete_stack().stack_name(&self.name).send().await;
    }
}
