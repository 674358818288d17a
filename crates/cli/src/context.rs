//! What every command shares: global options, the clients built once, and
//! errors that say what was wrong, what to do, and which exit code follows.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use clap::Args;
use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::ids::QualificationTypeId;
use mturk_exclusion::ledger::{Ledger, LedgerError, LedgerErrorKind};
use mturk_exclusion::mturk::{Mturk, MturkEnvironment, MturkError, MturkErrorKind};
use mturk_exclusion::ops::Lab;
use mturk_exclusion::rate::RateLimiter;

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// AWS profile for the lab's account (default: the standard chain).
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// Use the MTurk requester sandbox (the default without --stack; with
    /// --stack, the stack's MTurkEnvironment decides and a flag that
    /// disagrees is refused).
    #[arg(long, global = true, conflicts_with = "production")]
    pub sandbox: bool,
    /// Use real MTurk: real workers, real grants (with --stack, only
    /// together with a production stack).
    #[arg(long, global = true, env = "MTURK_EXCLUSION_PRODUCTION")]
    pub production: bool,
    /// The deployed SAM stack; its outputs supply the table, queues and
    /// qualification, and its MTurkEnvironment the MTurk environment.
    #[arg(
        long,
        global = true,
        env = "MTURK_EXCLUSION_STACK",
        value_name = "NAME"
    )]
    pub stack: Option<String>,
    /// The ledger table (default: the stack's TableName output).
    #[arg(
        long,
        global = true,
        env = "MTURK_EXCLUSION_TABLE",
        value_name = "NAME"
    )]
    pub table: Option<String>,
    /// The lab's exclusion qualification type id (default: the stack's).
    #[arg(
        long,
        global = true,
        env = "MTURK_EXCLUSION_QUALIFICATION",
        value_name = "ID"
    )]
    pub qualification: Option<String>,
    /// The queue MTurk notifies (default: the stack's QueueUrl output).
    #[arg(
        long,
        global = true,
        env = "MTURK_EXCLUSION_QUEUE_URL",
        value_name = "URL"
    )]
    pub queue_url: Option<String>,
    /// The dead-letter queue (default: the stack's DeadLetterQueueUrl output).
    #[arg(
        long,
        global = true,
        env = "MTURK_EXCLUSION_DLQ_URL",
        value_name = "URL"
    )]
    pub dlq_url: Option<String>,
    /// The most MTurk calls per second from this CLI; below it the CLI slows
    /// down by itself when MTurk throttles, and speeds up again after.
    #[arg(
        long,
        global = true,
        env = "MTURK_MAX_RPS",
        default_value_t = mturk_exclusion::rate::DEFAULT_CEILING,
        value_name = "N"
    )]
    pub max_rps: f64,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Exit codes, documented in `--help`.
pub mod exit {
    pub const PARTIAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const ENVIRONMENT: u8 = 3;
    pub const CHECK_FAILED: u8 = 4;
    pub const ABORTED: u8 = 5;
}

/// Why a command stopped. Each variant maps to one exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The caller's input is wrong; nothing was done.
    #[error("{0}")]
    Usage(String),
    /// The account, credentials or resources are not as expected.
    #[error("{message}")]
    Environment {
        message: String,
        hint: Option<String>,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A check ran and did not pass (the report was already printed).
    #[error("{0}")]
    CheckFailed(String),
    /// Some items failed; the rest were done (the report was already printed).
    #[error("{0}")]
    Partial(String),
    /// The user declined a confirmation.
    #[error("{0}")]
    Aborted(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Environment { .. } => exit::ENVIRONMENT,
            CliError::CheckFailed(_) => exit::CHECK_FAILED,
            CliError::Partial(_) => exit::PARTIAL,
            CliError::Aborted(_) => exit::ABORTED,
        }
    }

    pub fn environment(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Environment {
            message: message.into(),
            hint: Some(hint.into()),
            source: None,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            CliError::Environment { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }
}

impl From<LedgerError> for CliError {
    fn from(e: LedgerError) -> Self {
        let hint = match e.kind {
            LedgerErrorKind::TableMissing => {
                "check --table / --stack and the region (AWS_REGION or the profile's region)"
            }
            LedgerErrorKind::Unreachable => "check the network and the DynamoDB endpoint",
            LedgerErrorKind::Throttled => "DynamoDB is throttling: run again in a minute",
            LedgerErrorKind::Denied => {
                "check the AWS credentials (--profile) and their DynamoDB permissions on the table"
            }
            LedgerErrorKind::Corrupt => {
                "an item in the ledger is not what this version writes: please report it, with the message"
            }
            LedgerErrorKind::ConditionFailed | LedgerErrorKind::Other => {
                "check the table name, the region and the credentials' DynamoDB permissions"
            }
        };
        CliError::Environment {
            message: e.to_string(),
            hint: Some(hint.into()),
            source: Some(Box::new(e)),
        }
    }
}

impl From<MturkError> for CliError {
    fn from(e: MturkError) -> Self {
        let hint = match &e.kind {
            MturkErrorKind::Throttled => "MTurk is throttling this account: lower --max-rps and run again (it resumes where it stopped)",
            MturkErrorKind::Transient => "MTurk did not answer in time: run again later (it resumes where it stopped)",
            MturkErrorKind::Denied => {
                "check the AWS credentials (--profile) and that the account is linked to an MTurk requester account"
            }
            _ => "check the ids, and --sandbox / --production: the two environments have separate HITs and qualification types",
        };
        CliError::Environment {
            message: e.to_string(),
            hint: Some(hint.into()),
            source: Some(Box::new(e)),
        }
    }
}

/// Built once per run.
pub struct Context {
    pub global: Global,
    pub sdk: SdkConfig,
    pub environment: MturkEnvironment,
    pub mturk: Mturk,
    /// Filled from --table/--qualification/--queue-url/--dlq-url, then the stack's outputs.
    pub table: Option<String>,
    pub qualification: Option<String>,
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
    /// The stack's `RequireSourceAccount` parameter, when --stack was read.
    pub require_source_account: Option<bool>,
    /// Whether the stack's `AlarmEmail` parameter is set, when --stack was read.
    pub alarm_email: Option<bool>,
}

impl Context {
    pub async fn connect(global: Global) -> Result<Context, CliError> {
        if !(global.max_rps.is_finite() && global.max_rps > 0.0 && global.max_rps <= 100.0) {
            return Err(CliError::Usage(format!(
                "--max-rps {} is not a rate between 0 and 100 calls per second",
                global.max_rps
            )));
        }
        let sdk = aws::load(global.profile.as_deref(), Limits::default()).await;
        check_credentials(&sdk, global.profile.as_deref()).await?;
        // The stack is read before the MTurk client is built: a deployed
        // stack's MTurkEnvironment decides which MTurk the CLI talks to.
        let deployed = match global.stack.as_deref() {
            Some(stack) => Some((stack.to_owned(), read_stack(&sdk, stack).await?)),
            None => None,
        };
        let environment = match &deployed {
            Some((stack, d)) => stack_environment(stack, d, &global)?,
            None if global.production => MturkEnvironment::Production,
            None => MturkEnvironment::Sandbox,
        };
        let endpoint = std::env::var("AWS_ENDPOINT_URL_MTURK")
            .ok()
            .filter(|v| !v.is_empty());
        let mturk = Mturk::new(
            aws::mturk_client(&sdk, environment, endpoint.as_deref()),
            Arc::new(RateLimiter::per_second(global.max_rps)),
        );
        let mut ctx = Context {
            table: global.table.clone(),
            qualification: global.qualification.clone(),
            queue_url: global.queue_url.clone(),
            dlq_url: global.dlq_url.clone(),
            require_source_account: None,
            alarm_email: None,
            global,
            sdk,
            environment,
            mturk,
        };
        if let Some((_, deployed)) = deployed {
            ctx.fill_from_stack(deployed);
        }
        Ok(ctx)
    }

    /// Fills what the flags left open from the stack's outputs.
    fn fill_from_stack(&mut self, deployed: DeployedStack) {
        self.require_source_account = deployed
            .parameters
            .get("RequireSourceAccount")
            .map(|v| v.eq_ignore_ascii_case("true"));
        self.alarm_email = deployed
            .parameters
            .get("AlarmEmail")
            .map(|v| !v.trim().is_empty());
        let outputs = deployed.outputs;
        let get = |key: &str| outputs.get(key).cloned();
        self.table = self.table.take().or_else(|| get("TableName"));
        self.queue_url = self.queue_url.take().or_else(|| get("QueueUrl"));
        self.dlq_url = self.dlq_url.take().or_else(|| get("DeadLetterQueueUrl"));
        self.qualification = self
            .qualification
            .take()
            .or_else(|| get("QualificationTypeId"));
    }

    /// Whether the stack's `AlarmEmail` names an address (None: no stack
    /// was read, or it has no such parameter).
    pub fn alarm_email(&self) -> Option<bool> {
        self.alarm_email
    }

    /// Whether the stack's queue policy requires aws:SourceAccount (None:
    /// no stack was read, or it has no such parameter).
    pub fn require_source_account(&self) -> Option<bool> {
        self.require_source_account
    }

    pub fn environment_name(&self) -> &'static str {
        self.environment.name()
    }

    pub fn ledger(&self) -> Result<Ledger, CliError> {
        let table = self.table.as_deref().ok_or_else(|| {
            CliError::Usage(
                "no ledger table: pass --stack NAME or --table NAME (or set MTURK_EXCLUSION_TABLE)"
                    .into(),
            )
        })?;
        Ok(Ledger::new(aws_sdk_dynamodb::Client::new(&self.sdk), table))
    }

    /// The qualification id as given; see [`Context::checked_qualification`].
    pub fn qualification(&self) -> Result<QualificationTypeId, CliError> {
        let raw = self.qualification.as_deref().ok_or_else(|| {
            CliError::Usage(
                "no qualification type: pass --stack NAME or --qualification ID (run `mturk-exclusion init` to create one)".into(),
            )
        })?;
        QualificationTypeId::parse(raw)
            .map_err(|e| CliError::Usage(format!("--qualification: {e}")))
    }

    /// The qualification id, confirmed to exist in this MTurk environment.
    pub async fn checked_qualification(&self) -> Result<QualificationTypeId, CliError> {
        let q = self.qualification()?;
        if !self.mturk.qualification_type_exists(&q).await? {
            return Err(CliError::environment(
                format!("qualification type {q} does not exist in this MTurk account ({})", self.environment_name()),
                "sandbox and production have separate qualification types: check --sandbox/--production, the profile's account, or run `mturk-exclusion init`",
            ));
        }
        Ok(q)
    }

    /// What the library's operations act on, with the qualification
    /// confirmed to exist in this MTurk environment.
    pub async fn lab(&self) -> Result<Lab, CliError> {
        let ledger = self.ledger()?;
        Ok(Lab::new(
            self.mturk.clone(),
            ledger,
            self.checked_qualification().await?,
        ))
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub fn queue_url(&self) -> Result<&str, CliError> {
        self.queue_url.as_deref().ok_or_else(|| {
            CliError::Usage(
                "no queue: pass --stack NAME or --queue-url URL (the stack's QueueUrl output)"
                    .into(),
            )
        })
    }

    pub fn dlq_url(&self) -> Result<&str, CliError> {
        self.dlq_url.as_deref().ok_or_else(|| {
            CliError::Usage("no dead-letter queue: pass --stack NAME or --dlq-url URL (the stack's DeadLetterQueueUrl output)".into())
        })
    }
}

/// The MTurk a deployed stack's functions talk to (its `MTurkEnvironment`
/// parameter, or the output of the same name) is the one the CLI talks to:
/// a command against a production stack that reached the sandbox would
/// report a pool that is not the lab's. A flag that disagrees is refused,
/// never silently overridden either way. A stack that names no environment
/// (none this template makes) leaves the flags to decide.
fn stack_environment(
    stack: &str,
    deployed: &DeployedStack,
    global: &Global,
) -> Result<MturkEnvironment, CliError> {
    let flag = if global.production {
        Some(MturkEnvironment::Production)
    } else if global.sandbox {
        Some(MturkEnvironment::Sandbox)
    } else {
        None
    };
    let named = deployed
        .parameters
        .get("MTurkEnvironment")
        .or_else(|| deployed.outputs.get("MTurkEnvironment"));
    let Some(named) = named else {
        return Ok(flag.unwrap_or(MturkEnvironment::Sandbox));
    };
    let of_stack = match named.trim() {
        "sandbox" => MturkEnvironment::Sandbox,
        "production" => MturkEnvironment::Production,
        other => {
            return Err(CliError::environment(
                format!("stack {stack} has MTurkEnvironment {other:?}, which is neither sandbox nor production"),
                "check --stack: is it an mturk-exclusion stack?",
            ))
        }
    };
    match flag {
        Some(f) if f != of_stack => Err(CliError::Usage(format!(
            "stack {stack} talks to MTurk {} (its MTurkEnvironment), but --{} was given: \
             drop --{} (the stack decides), or name the {} stack with --stack \
             (MTURK_EXCLUSION_PRODUCTION also counts as --production)",
            of_stack.name(),
            f.name(),
            f.name(),
            f.name()
        ))),
        _ => Ok(of_stack),
    }
}

/// What the CLI reads of a deployed stack. One stack is one exclusion pool:
/// its outputs name the pool's table, queues, qualification and check URL.
pub struct DeployedStack {
    pub outputs: HashMap<String, String>,
    pub parameters: HashMap<String, String>,
}

pub async fn read_stack(sdk: &SdkConfig, stack: &str) -> Result<DeployedStack, CliError> {
    let out = aws_sdk_cloudformation::Client::new(sdk)
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            CliError::environment(
                format!(
                    "could not read stack {stack}: {}",
                    aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                ),
                "check --stack, the region the stack was deployed to, and the profile",
            )
        })?;
    let found = out.stacks.unwrap_or_default().into_iter().next();
    let (outputs, parameters) = found
        .map(|s| {
            (
                s.outputs.unwrap_or_default(),
                s.parameters.unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    Ok(DeployedStack {
        outputs: outputs
            .into_iter()
            .filter_map(|o| Some((o.output_key?, o.output_value?)))
            .collect(),
        parameters: parameters
            .into_iter()
            .filter_map(|p| Some((p.parameter_key?, p.parameter_value?)))
            .collect(),
    })
}

/// A deployed stack's outputs by key.
pub async fn stack_outputs(
    sdk: &SdkConfig,
    stack: &str,
) -> Result<HashMap<String, String>, CliError> {
    Ok(read_stack(sdk, stack).await?.outputs)
}

/// Fails early, with a hint, when no credentials can be found at all.
async fn check_credentials(sdk: &SdkConfig, profile: Option<&str>) -> Result<(), CliError> {
    use aws_sdk_sqs::config::ProvideCredentials;
    let Some(provider) = sdk.credentials_provider() else {
        return Err(CliError::environment(
            "no AWS credentials provider",
            "set AWS_PROFILE or pass --profile",
        ));
    };
    provider.provide_credentials().await.map(|_| ()).map_err(|e| CliError::Environment {
        message: format!(
            "no usable AWS credentials{}",
            profile.map(|p| format!(" for profile {p}")).unwrap_or_default()
        ),
        hint: Some("pass --profile NAME (or set AWS_PROFILE), or run `aws sso login` / `aws configure`".into()),
        source: Some(Box::new(e)),
    })
}
