//! The quick start: a simulated pair of studies pushed through the whole
//! pipeline on this machine, no AWS account needed.
//!
//! MTurk double → SQS (moto) → event-source loop → the real handler →
//! DynamoDB Local, and the grants back on the double; then one run of the
//! watch (`ops::watch`, the exclusion-watch Lambda's work) covers a study
//! another tool posted and nobody subscribed. Run it with
//! `scripts/demo.sh`, which starts the local services first.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_mturk::types::{EventType, NotificationSpecification, NotificationTransport};
use mturk_exclusion::aws::Clients;
use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::config::Config;
use mturk_exclusion::handler::{Handler, MTURK_SENDER_ID};
use mturk_exclusion::ids::{HitTypeId, QualificationTypeId, WorkerId};
use mturk_exclusion::ledger::{ExclusionState, Ledger};
use mturk_exclusion::mturk::MturkEnvironment;
use testkit::event_source::EventSource;
use testkit::mturk_double::{GrantStatus, MturkDouble};
use testkit::Stack;
use tokio::time::Instant;

/// Workers of the two studies: the second reuses some of the first's.
const FIRST_STUDY_WORKERS: usize = 24;
const SECOND_STUDY_WORKERS: usize = 18;
const REPEAT_WORKERS: usize = 6;
const DUPLICATE_DELIVERIES: usize = 5;

/// The `Pool` dimension of the demo's metrics (a stack's name in AWS).
const METRICS_POOL: &str = "local-demo";

/// Where the functions' CloudWatch EMF lines go: the file named by
/// `EMF_LOG` (scripts/demo.sh sets it and sums them up afterwards), as the
/// deployed functions write them into their logs. Without it, nowhere.
#[derive(Clone, Default)]
struct EmfSink(Option<Arc<Mutex<std::fs::File>>>);

/// The one sink of the run, for the check's part too.
static EMF: std::sync::OnceLock<EmfSink> = std::sync::OnceLock::new();

impl EmfSink {
    fn from_env() -> anyhow::Result<Self> {
        match std::env::var_os("EMF_LOG") {
            None => Ok(EmfSink(None)),
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("opening EMF_LOG {path:?}"))?;
                Ok(EmfSink(Some(Arc::new(Mutex::new(file)))))
            }
        }
    }

    fn write(&self, lines: impl IntoIterator<Item = String>) {
        if let Some(file) = &self.0 {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            for line in lines {
                let _ = writeln!(file, "{line}");
            }
        }
    }
}

fn worker(n: usize) -> String {
    format!("A{:013}", 3_700_000_000_000u64 + n as u64 * 7919)
}

fn spec(queue_url: &str) -> anyhow::Result<NotificationSpecification> {
    Ok(NotificationSpecification::builder()
        .destination(queue_url)
        .transport(NotificationTransport::Sqs)
        .version("2014-08-15")
        .event_types(EventType::AssignmentSubmitted)
        // They end the accept-time check's claims (section 5).
        .event_types(EventType::AssignmentReturned)
        .event_types(EventType::AssignmentAbandoned)
        .build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The handler's own warnings (a failed record and why) go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
    let stack = Stack::from_env().await?;
    let double = MturkDouble::start(Some(stack.sqs.clone())).await?;
    let table = stack.ledger_table().await?;
    let queues = stack.queues(2, 3).await?;
    let qualification = QualificationTypeId::parse(
        &double.create_qualification_type("Took part in a Smith Lab study"),
    )?;
    println!("mturk-exclusion, local run");
    println!("  MTurk double  {}", double.endpoint());
    println!("  ledger table  {table} (DynamoDB Local, schema from template.yaml)");
    println!("  queue         {}", queues.url);
    println!("  qualification {qualification}\n");

    // The handler exactly as the Lambda's main builds it, with the settings
    // template.yaml would give it, pointed at this machine (faster retries
    // and a higher MTurk rate, so the demo does not wait).
    let config = Config {
        table_name: table.clone(),
        qualification_type_id: qualification.clone(),
        mturk_environment: MturkEnvironment::Sandbox,
        mturk_endpoint: Some(double.endpoint()),
        mturk_max_rps: 20.0,
        mturk_start_rps: Some(20.0),
        max_concurrency: None,
        queue_url: Some(queues.url.clone()),
        reject_unknown_senders: false,
        record_concurrency: 4,
        deadline_margin: Duration::from_secs(12),
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(2),
        assignment_lease: Duration::from_secs(5),
        grant_window: Duration::from_secs(30),
    };
    let sdk = aws::load(None, Limits::default()).await;
    let handler = Arc::new(Handler::from_config(&config, &sdk));
    // The lab's own view: the same services through their own clients.
    let clients = Clients::from_sdk(&config, &sdk);
    let mturk = clients.mturk;
    let ledger = Ledger::new(clients.dynamodb, &table);
    // Each invocation writes its metrics line, as the Lambda's main does.
    let emf = EmfSink::from_env()?;
    let _ = EMF.set(emf.clone());
    let function = {
        let handler = handler.clone();
        let emf = emf.clone();
        move |event: SqsEvent| {
            let handler = handler.clone();
            let emf = emf.clone();
            async move {
                let (result, measured) = handler
                    .process_measured(event.records, Instant::now() + Duration::from_secs(60))
                    .await;
                emf.write(measured.emf_lines(METRICS_POOL, mturk_exclusion::metrics::now_ms()));
                result.map(|r| r.response()).map_err(|e| e.to_string())
            }
        }
    };
    let mut source = EventSource::new(&queues.url, &queues.arn);
    // moto cannot send as MTurk; present MTurk's documented sender instead.
    source.sender_id_override = Some(MTURK_SENDER_ID.to_owned());
    source.max_concurrency = 2;

    // 1. Subscribe both studies' HIT types and prove the path with a test event.
    let studies = [
        ("Trust game", double.new_hit_type_id()),
        ("Moral dilemmas", double.new_hit_type_id()),
    ];
    for (_, hit_type) in &studies {
        mturk
            .update_notification_settings()
            .hit_type_id(hit_type)
            .notification(spec(&queues.url)?)
            .active(true)
            .send()
            .await
            .context("subscribing a HIT type")?;
        // As `mturk-exclusion subscribe` does: the ledger knows the lab
        // subscribed it, so the watch (section 6) leaves it alone.
        ledger
            .record_subscription(
                &HitTypeId::parse(hit_type)?,
                &queues.url,
                None,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
    }
    let asked = time::OffsetDateTime::now_utc();
    mturk
        .send_test_event_notification()
        .notification(spec(&queues.url)?)
        .test_event_type(EventType::Ping)
        .send()
        .await
        .context("sending a test event")?;
    source
        .drain(&stack, function.clone(), Duration::from_secs(30))
        .await;
    let beats = ledger
        .heartbeats_since(asked - time::Duration::seconds(1))
        .await?;
    println!(
        "Notification path: test event sent, {} heartbeat(s) in the ledger {}",
        beats.len(),
        if beats.is_empty() { "✗" } else { "✓" }
    );

    // 2. Workers submit. Some of the second study's workers took the first.
    let started = Instant::now();
    let mut submitted = 0;
    let mut everyone = BTreeSet::new();
    let mut notifications = Vec::new();
    // Both studies' HITs require that the worker does not hold the pool's
    // qualification, as a lab's HITs do.
    let guarded = || testkit::mturk_double::HitOptions {
        qualification_requirements: vec![testkit::pipeline::does_not_exist(qualification.as_str())],
        ..Default::default()
    };
    let first_hit = double.create_hit_with(&studies[0].1, guarded());
    for n in 0..FIRST_STUDY_WORKERS {
        let s = double.submit_assignment(&first_hit, &worker(n)).await?;
        notifications.extend(s.notification);
        everyone.insert(worker(n));
        submitted += 1;
    }
    let second_hit = double.create_hit_with(&studies[1].1, guarded());
    for n in (FIRST_STUDY_WORKERS - REPEAT_WORKERS)
        ..(FIRST_STUDY_WORKERS - REPEAT_WORKERS + SECOND_STUDY_WORKERS)
    {
        let s = double.submit_assignment(&second_hit, &worker(n)).await?;
        notifications.extend(s.notification);
        everyone.insert(worker(n));
        submitted += 1;
    }
    // At-least-once delivery: some notifications arrive twice.
    for body in notifications.iter().step_by(7).take(DUPLICATE_DELIVERIES) {
        stack
            .sqs
            .send_message()
            .queue_url(&queues.url)
            .message_body(body)
            .send()
            .await?;
    }
    // And one message that is not a notification at all.
    stack
        .sqs
        .send_message()
        .queue_url(&queues.url)
        .message_body(r#"{"EventDocVersion":"2014-08-15","EventDocId":"half a message"#)
        .send()
        .await?;
    println!(
        "Study \"{}\": {FIRST_STUDY_WORKERS} submissions; study \"{}\": {SECOND_STUDY_WORKERS} submissions, {REPEAT_WORKERS} by workers of the first",
        studies[0].0, studies[1].0
    );
    println!(
        "Also delivered: {DUPLICATE_DELIVERIES} duplicate notifications and 1 malformed message\n"
    );

    // 3. Push everything through the handler.
    let (totals, drained) = source
        .drain(&stack, function.clone(), Duration::from_secs(120))
        .await;
    println!(
        "Drained: {} in {:.1} s — {} invocations, {} records received, {} record failures",
        if drained { "yes" } else { "NO (time limit)" },
        started.elapsed().as_secs_f64(),
        totals.invocations,
        totals.records,
        totals.failed_records
    );

    // 4. What happened, checked from both sides.
    let mut agree = 0;
    for w in &everyone {
        let on_mturk = double
            .qualification(qualification.as_str(), w)
            .is_some_and(|g| g.status == GrantStatus::Granted);
        let in_ledger = ledger
            .exclusion(&WorkerId::parse(w)?, &qualification)
            .await?
            .is_some_and(|x| x.state == ExclusionState::Excluded);
        if on_mturk && in_ledger {
            agree += 1;
        }
    }
    let grants = double.calls_to("AssociateQualificationWithWorker");
    let silent = grants
        .iter()
        .filter(|c| c.request.get("SendNotification") == Some(&serde_json::Value::Bool(false)))
        .count();
    let dead = stack.drain_bodies(&queues.dlq_url).await?;
    println!(
        "Submissions:        {submitted} by {} distinct workers",
        everyone.len()
    );
    println!(
        "Workers excluded:   {agree} of {} (MTurk and the ledger agree)",
        everyone.len()
    );
    println!(
        "Grants sent:        {} ({} with SendNotification=false; repeat workers and duplicates cost no grant)",
        grants.len(),
        silent
    );
    println!(
        "MTurk calls:        {} GetAssignment, {} AssociateQualificationWithWorker, {} others",
        double.call_count("GetAssignment"),
        grants.len(),
        double.total_calls() - double.call_count("GetAssignment") - grants.len()
    );
    println!("Dead-letter queue:  {} message(s)", dead.len());
    for body in &dead {
        println!("  {}", body.chars().take(80).collect::<String>());
    }
    // 5. The accept-time check, on a local Function URL (in process here;
    //    the tests run the real binary behind it).
    let checked = accept_time_check(
        &stack,
        &table,
        &qualification,
        &queues.url,
        &worker(0),
        &source,
        function,
    )
    .await?;

    // 6. A third study, posted by another tool (its own HIT type, never
    //    subscribed by hand), and a HIT posted without any requirement: one
    //    run of the watch, as the exclusion-watch Lambda runs it on schedule.
    let covered = watch_run(&double, &config, &sdk, &qualification, &queues.url, &emf).await?;

    double.shutdown();
    let ok = drained
        && agree == everyone.len()
        && silent == grants.len()
        && dead.len() == 1
        && checked
        && covered;
    println!(
        "\n{}",
        if ok {
            "Everything as expected."
        } else {
            "Something is off: see above."
        }
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// Another tool posts a third study requiring the pool's qualification, and a
/// HIT without any requirement whose workers took part a month before the
/// pool existed; workers submit with nobody subscribed. One watch run
/// subscribes the study's HIT type and excludes its workers, leaves the
/// pilot's history out (counted) and reports the unguarded HIT; then the
/// lab adopts that history. Returns whether it all came out so.
async fn watch_run(
    double: &MturkDouble,
    config: &Config,
    sdk: &aws_config::SdkConfig,
    qualification: &QualificationTypeId,
    queue_url: &str,
    emf: &EmfSink,
) -> anyhow::Result<bool> {
    use mturk_exclusion::ops::{watch, Lab};
    use testkit::mturk_double::HitOptions;
    let requirement = testkit::pipeline::does_not_exist(qualification.as_str());
    let (third, third_type) = double.post_hit(HitOptions {
        title: "Memory task (posted by another tool)".into(),
        qualification_requirements: vec![requirement],
        ..HitOptions::default()
    });
    let (unguarded, _) = double.post_hit(HitOptions {
        title: "Pilot posted without the requirement".into(),
        ..HitOptions::default()
    });
    let workers: Vec<String> = (0..5).map(|n| format!("A3THIRDSTUDY{n:03}")).collect();
    for w in &workers {
        double.submit_assignment(&third, w).await?;
    }
    let month_ago = std::time::SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
    let pilots: Vec<String> = (0..3).map(|n| format!("A3PILOTHISTORY{n:03}")).collect();
    for w in &pilots {
        double.add_assignment_submitted_at(
            &unguarded,
            w,
            testkit::mturk_double::AssignmentStatus::Approved,
            month_ago,
        );
    }
    let clients = Clients::from_sdk(config, sdk);
    let lab = Lab::from_config(config, &clients);
    let settings = watch::Settings {
        queue_url: queue_url.to_owned(),
        cover_unguarded: true,
        guard_unguarded: false,
        concurrency: 4,
    };
    let report = watch::run(&lab, &settings, Instant::now() + Duration::from_secs(60)).await;
    emf.write(report.emf_lines(METRICS_POOL, mturk_exclusion::metrics::now_ms()));
    let excluded = workers
        .iter()
        .filter(|w| {
            double
                .qualification(qualification.as_str(), w)
                .is_some_and(|g| g.status == GrantStatus::Granted)
        })
        .count();
    println!("\nThe watch (one run, as exclusion-watch runs every WatchMinutes):");
    println!(
        "  a third study posted by another tool, never subscribed by hand: HIT type {} subscribed {}; {excluded} of its {} workers excluded {}",
        third_type,
        if report.hit_types_subscribed.contains(&third_type) { "✓" } else { "✗" },
        workers.len(),
        if excluded == workers.len() { "✓" } else { "✗" }
    );
    let reported = report.live_unguarded.iter().any(|l| l.hit_id == unguarded);
    println!(
        "  unguarded live HITs reported: {} (HIT {unguarded}, \"Pilot posted without the requirement\") {}",
        report.counts.live_unguarded,
        if reported { "✓" } else { "✗" }
    );
    for e in &report.errors {
        println!("  error: {e}");
    }
    let granted = |ws: &[String]| {
        ws.iter()
            .filter(|w| {
                double
                    .qualification(qualification.as_str(), w)
                    .is_some_and(|g| g.status == GrantStatus::Granted)
            })
            .count()
    };
    let left_out: u64 = report
        .history_left_out
        .iter()
        .map(|l| l.left_out.submissions)
        .sum();
    let history_kept = left_out == pilots.len() as u64 && granted(&pilots) == 0;
    println!(
        "  the pilot's history (submitted a month before the pool started): {left_out} submission(s) left out for the lab, none excluded {}",
        if history_kept { "✓" } else { "✗" }
    );
    let adopted = adopt_history(&lab).await?;
    let all_adopted = adopted == pilots.len() && granted(&pilots) == pilots.len();
    println!(
        "  `mturk-exclusion adopt`: the lab takes it in, {adopted} worker(s) excluded {}",
        if all_adopted { "✓" } else { "✗" }
    );
    Ok(report.errors.is_empty()
        && excluded == workers.len()
        && reported
        && history_kept
        && all_adopted
        && report.hit_types_subscribed.contains(&third_type))
}

/// What `mturk-exclusion adopt` does: finds the history the watch left out
/// and excludes it through the one backfill engine. The workers excluded.
async fn adopt_history(lab: &mturk_exclusion::ops::Lab) -> anyhow::Result<usize> {
    use mturk_exclusion::ops::{history, Quiet};
    let plan = history::plan_adoption(lab, &[], &Quiet).await?;
    let adopted = history::adopt(lab, plan, false, 4, &Quiet).await?;
    for f in &adopted.failures {
        println!("  error: {}", f.reason);
    }
    Ok(adopted.tally.excluded)
}

/// A worker accepts two HITs at once (busy on the second), a repeat worker
/// is told they took part, and a returned HIT frees the worker. Returns
/// whether every answer was the expected one.
async fn accept_time_check<F, Fut>(
    stack: &Stack,
    table: &str,
    qualification: &QualificationTypeId,
    queue_url: &str,
    repeat_worker: &str,
    source: &EventSource,
    function: F,
) -> anyhow::Result<bool>
where
    F: Fn(SqsEvent) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<
            Output = Result<aws_lambda_events::event::sqs::SqsBatchResponse, String>,
        > + Send,
{
    use mturk_exclusion::check::{respond, Checker};
    use testkit::function_url::{http, Cors, FunctionUrl};

    // The demo's two HITs, known to the ledger as the lab's (what the
    // watch's listing or the check's own GetHIT records): the check answers
    // about a worker on the lab's HITs only.
    let ledger = Ledger::new(stack.dynamodb.clone(), table);
    for hit in [
        "3DEMOHITAAAAAAAAAAAAAAAAAAAAA1",
        "3DEMOHITBBBBBBBBBBBBBBBBBBBBB2",
    ] {
        ledger
            .record_verified_hit(
                &mturk_exclusion::ids::HitId::parse(hit)?,
                &HitTypeId::parse("3DEMOHITTYPE00000000000000000")?,
                Some(3600),
                mturk_exclusion::ledger::VerifiedBy::Watch,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
    }
    let checker = Arc::new(Checker::new(
        ledger,
        qualification.clone(),
        time::Duration::minutes(60),
    ));
    // What Lambda hands the function for a Function URL request (payload
    // 2.0) goes to the library's rules; CORS comes from template.yaml.
    let emf = EMF.get().cloned().unwrap_or_default();
    let invoke: testkit::function_url::Invoke = Arc::new(move |event: serde_json::Value| {
        let checker = checker.clone();
        let emf = emf.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let method = event["requestContext"]["http"]["method"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let query = event["rawQueryString"].as_str().map(str::to_owned);
            let body_len = event["body"].as_str().map_or(0, str::len);
            let r = respond(
                &checker,
                &method,
                query.as_deref(),
                body_len,
                time::OffsetDateTime::now_utc(),
            )
            .await;
            // The check's metrics line, as its main writes it per request.
            emf.write([mturk_exclusion::check::emf_line(
                METRICS_POOL,
                r.metric_reason,
                started.elapsed(),
                mturk_exclusion::metrics::now_ms(),
            )]);
            Ok(serde_json::json!({
                "statusCode": r.status,
                "headers": {"content-type": "application/json"},
                "body": r.body,
            }))
        })
    });
    let url = FunctionUrl::start(
        "exclusion-check",
        Cors::from_template("ExclusionCheckFunction")?,
        invoke,
    )
    .await?;
    println!("\nAccept-time check at {}", url.url());
    let ask = |worker: String, assignment: &'static str, hit: &'static str| {
        let base = url.url();
        async move {
            let r = http(
                "GET",
                &format!("{base}?workerId={worker}&assignmentId={assignment}&hitId={hit}"),
                &[],
                b"",
            )
            .await?;
            let v: serde_json::Value = serde_json::from_str(&r.body)?;
            anyhow::Ok(v["reason"].as_str().unwrap_or("?").to_owned())
        }
    };
    let fresh = worker(9_999);
    let (hit_a, hit_b) = (
        "3DEMOHITAAAAAAAAAAAAAAAAAAAAA1",
        "3DEMOHITBBBBBBBBBBBBBBBBBBBBB2",
    );
    let (x1, x2) = (
        "3DEMOASSIGNMENTXXXXXXXXXXXXXX1",
        "3DEMOASSIGNMENTXXXXXXXXXXXXXX2",
    );
    let first = ask(fresh.clone(), x1, hit_a).await?;
    let second = ask(fresh.clone(), x2, hit_b).await?;
    println!("  a new worker accepts HIT A: {first}; and HIT B at the same time: {second}");
    let repeat = ask(
        repeat_worker.to_owned(),
        "3DEMOASSIGNMENTXXXXXXXXXXXXXX3",
        hit_b,
    )
    .await?;
    println!("  a worker of the first study accepts HIT B: {repeat}");
    // The worker returns HIT A: MTurk notifies the queue, the handler ends the claim.
    let returned = testkit::pipeline::document(
        "demo-returned",
        &[serde_json::json!({
            "EventType": "AssignmentReturned",
            "EventTimestamp": "2026-03-02T17:04:11Z",
            "HITTypeId": "3DEMOHITTYPE00000000000000000",
            "HITId": hit_a,
            "AssignmentId": x1,
        })],
    );
    stack
        .sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(returned)
        .send()
        .await?;
    source.drain(stack, function, Duration::from_secs(30)).await;
    let after = ask(fresh.clone(), x2, hit_b).await?;
    println!("  they return HIT A; HIT B again: {after}");
    Ok(first == "new" && second == "busy" && repeat == "took_part" && after == "new")
}
