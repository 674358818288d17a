//! DynamoDB read and write request units per submission, per request and
//! per index, as DynamoDB Local reports them.
//!
//! The real exclusion path (`Excluder::exclude_assignment`, as the handler
//! calls it) and the real check (`Checker::check`) run in this process on an
//! SDK client whose interceptor asks every request for
//! `ReturnConsumedCapacity: INDEXES` and records what comes back, against a
//! fresh ledger table built from template.yaml and the MTurk double. Nothing
//! is computed from the code under test: a changed request path shows up as
//! changed figures.
//!
//! Where DynamoDB Local is not faithful to AWS's billing, AWS's documented
//! rules are applied instead, and the request is marked:
//! - DynamoDB returns no `ConsumedCapacity` with an error, yet AWS bills a
//!   conditional write whose condition failed as a write of the item's size
//!   (at least 1 WRU, no index written).
//! - A read that finds nothing: DynamoDB Local reports 0, AWS bills the
//!   minimum, 1 RRU strongly consistent (0.5 eventually).
//! - For a `TransactWriteItems` DynamoDB Local 3.3.1 reports the table's
//!   units as if the whole transaction were one item (two 100-byte Puts:
//!   2 units; one alone: 2 units), while AWS rounds each item up to 1 KB
//!   and doubles it, a `ConditionCheck` included (2 WRU each, billed as a
//!   write). So a transaction's table units are counted as 2 per item. Its
//!   index units, doubled per index write, match AWS's rules and are taken
//!   as reported (probed: a Put entering two indexes adds 2 + 2, an update
//!   of a projected attribute 2 per index, of an unprojected one nothing).
//!
//! Every item is checked to be under 1 KB at the end, so that each item
//! written counts 1 unit (2 in a transaction) and each consistent read 1.
//!
//! `--baseline BENCH` runs another build of this benchmark (the same
//! subcommand, from an older tree) first and prints both side by side.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::{
    delete_item::{DeleteItemError, DeleteItemInput, DeleteItemOutput},
    get_item::{GetItemError, GetItemInput, GetItemOutput},
    put_item::{PutItemError, PutItemInput, PutItemOutput},
    query::{QueryError, QueryInput, QueryOutput},
    scan::{ScanError, ScanInput, ScanOutput},
    transact_write_items::{
        TransactWriteItemsError, TransactWriteItemsInput, TransactWriteItemsOutput,
    },
    update_item::{UpdateItemError, UpdateItemInput, UpdateItemOutput},
};
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use mturk_exclusion::check::{CheckRequest, Checker, Reason};
use mturk_exclusion::exclusion::{Excluder, Outcome};
use mturk_exclusion::ids::{AssignmentId, HitId, QualificationTypeId, WorkerId};
use mturk_exclusion::ledger::Ledger;
use mturk_exclusion::mturk::{Mturk, MturkEnvironment};
use mturk_exclusion::rate::RateLimiter;
use serde::{Deserialize, Serialize};
use serde_json::json;
use testkit::mturk_double::{AssignmentStatus, MturkDouble};

use crate::common::{print_result, Args};

/// The burst: 25,000 workers in 70,000 submissions.
const NEW_WORKER_SHARE: f64 = 25_000.0 / 70_000.0;
/// On-demand list prices (us-east-1), per request unit.
const WRU_PRICE: f64 = 0.625 / 1e6;
const RRU_PRICE: f64 = 0.125 / 1e6;

/// One DynamoDB request as it came back.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Call {
    op: String,
    /// The error code, when DynamoDB refused it.
    error: Option<String>,
    rru: f64,
    wru: f64,
    /// Write (or read) units per global secondary index, as reported.
    indexes: BTreeMap<String, f64>,
    /// Counted (wholly or for the table) by AWS's rule, not as reported.
    by_rule: bool,
    /// What DynamoDB Local reported in all, when the rule replaced it.
    reported: Option<f64>,
}

/// Records every request's consumed capacity.
#[derive(Debug, Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Items in the transaction under way (requests here go one at a time).
    transact_items: Arc<Mutex<usize>>,
    /// Whether the read under way is strongly consistent.
    consistent: Arc<Mutex<bool>>,
}

impl Recorder {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().expect("unpoisoned"))
    }
}

fn add(call: &mut Call, read: bool, cc: &ConsumedCapacity) {
    let units = |c: Option<f64>, r: Option<f64>, w: Option<f64>| {
        if read {
            r.or(c).unwrap_or(0.0)
        } else {
            w.or(c).unwrap_or(0.0)
        }
    };
    let total = units(
        cc.capacity_units,
        cc.read_capacity_units,
        cc.write_capacity_units,
    );
    if read {
        call.rru += total;
    } else {
        call.wru += total;
    }
    for (name, c) in cc.global_secondary_indexes.iter().flatten() {
        *call.indexes.entry(name.clone()).or_default() += units(
            c.capacity_units,
            c.read_capacity_units,
            c.write_capacity_units,
        );
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "ConsumedCapacityRecorder"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        let indexes = Some(ReturnConsumedCapacity::Indexes);
        if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            i.return_consumed_capacity = indexes;
        } else if let Some(i) = input.downcast_mut::<PutItemInput>() {
            i.return_consumed_capacity = indexes;
        } else if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
            i.return_consumed_capacity = indexes;
        } else if let Some(i) = input.downcast_mut::<GetItemInput>() {
            i.return_consumed_capacity = indexes;
            *self.consistent.lock().expect("unpoisoned") = i.consistent_read == Some(true);
        } else if let Some(i) = input.downcast_mut::<QueryInput>() {
            i.return_consumed_capacity = indexes;
            *self.consistent.lock().expect("unpoisoned") = i.consistent_read == Some(true);
        } else if let Some(i) = input.downcast_mut::<ScanInput>() {
            i.return_consumed_capacity = indexes;
            *self.consistent.lock().expect("unpoisoned") = i.consistent_read == Some(true);
        } else if let Some(i) = input.downcast_mut::<TransactWriteItemsInput>() {
            i.return_consumed_capacity = indexes;
            *self.transact_items.lock().expect("unpoisoned") =
                i.transact_items.as_ref().map_or(0, Vec::len);
        } else {
            return Err("the WRU bench does not know this DynamoDB operation".into());
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(result) = context.output_or_error() else {
            return Ok(());
        };
        let mut call = Call {
            op: String::new(),
            error: None,
            rru: 0.0,
            wru: 0.0,
            indexes: BTreeMap::new(),
            by_rule: false,
            reported: None,
        };
        match result {
            Ok(out) => {
                let (op, read, list): (&str, bool, Vec<&ConsumedCapacity>) =
                    if let Some(o) = out.downcast_ref::<UpdateItemOutput>() {
                        ("UpdateItem", false, o.consumed_capacity.iter().collect())
                    } else if let Some(o) = out.downcast_ref::<PutItemOutput>() {
                        ("PutItem", false, o.consumed_capacity.iter().collect())
                    } else if let Some(o) = out.downcast_ref::<DeleteItemOutput>() {
                        ("DeleteItem", false, o.consumed_capacity.iter().collect())
                    } else if let Some(o) = out.downcast_ref::<GetItemOutput>() {
                        ("GetItem", true, o.consumed_capacity.iter().collect())
                    } else if let Some(o) = out.downcast_ref::<QueryOutput>() {
                        ("Query", true, o.consumed_capacity.iter().collect())
                    } else if let Some(o) = out.downcast_ref::<ScanOutput>() {
                        ("Scan", true, o.consumed_capacity.iter().collect())
                    } else if let Some(o) = out.downcast_ref::<TransactWriteItemsOutput>() {
                        (
                            "TransactWriteItems",
                            false,
                            o.consumed_capacity.iter().flatten().collect(),
                        )
                    } else {
                        ("?", false, Vec::new())
                    };
                call.op = op.to_owned();
                for cc in &list {
                    add(&mut call, read, cc);
                }
                if read && call.rru == 0.0 {
                    // AWS: a read that finds nothing costs the minimum.
                    let consistent = *self.consistent.lock().expect("unpoisoned");
                    call.reported = Some(0.0);
                    call.rru = if consistent { 1.0 } else { 0.5 };
                    call.by_rule = true;
                }
                if op == "TransactWriteItems" {
                    // AWS: 2 WRU per item under 1 KB, plus the index writes
                    // (already doubled as reported).
                    let items = *self.transact_items.lock().expect("unpoisoned");
                    let table: f64 = list
                        .iter()
                        .map(|cc| {
                            cc.table
                                .as_ref()
                                .and_then(|t| t.capacity_units)
                                .unwrap_or(0.0)
                        })
                        .sum();
                    call.reported = Some(call.wru);
                    call.wru = call.wru - table + 2.0 * items as f64;
                    call.by_rule = true;
                }
            }
            Err(e) => {
                let Some(err) = e.as_operation_error() else {
                    call.op = "?".into();
                    call.error = Some(format!("{e:?}"));
                    self.calls.lock().expect("unpoisoned").push(call);
                    return Ok(());
                };
                let (op, code) = if let Some(e) = err.downcast_ref::<UpdateItemError>() {
                    ("UpdateItem", e.code())
                } else if let Some(e) = err.downcast_ref::<PutItemError>() {
                    ("PutItem", e.code())
                } else if let Some(e) = err.downcast_ref::<DeleteItemError>() {
                    ("DeleteItem", e.code())
                } else if let Some(e) = err.downcast_ref::<GetItemError>() {
                    ("GetItem", e.code())
                } else if let Some(e) = err.downcast_ref::<QueryError>() {
                    ("Query", e.code())
                } else if let Some(e) = err.downcast_ref::<ScanError>() {
                    ("Scan", e.code())
                } else if let Some(e) = err.downcast_ref::<TransactWriteItemsError>() {
                    ("TransactWriteItems", e.code())
                } else {
                    ("?", None)
                };
                call.op = op.to_owned();
                call.error = Some(code.unwrap_or("unknown").to_owned());
                if code == Some("ConditionalCheckFailedException") {
                    // AWS: a failed condition still costs the write of the
                    // item's size, at least 1 WRU; no index is written.
                    call.wru = 1.0;
                    call.by_rule = true;
                }
            }
        }
        self.calls.lock().expect("unpoisoned").push(call);
        Ok(())
    }
}

/// One measured step: its requests, and their sums.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    step: String,
    calls: Vec<Call>,
    rru: f64,
    wru: f64,
    /// Index write (or read) units, summed per index.
    indexes: BTreeMap<String, f64>,
}

impl Step {
    fn new(step: &str, calls: Vec<Call>) -> Step {
        let mut indexes = BTreeMap::new();
        for c in &calls {
            for (i, u) in &c.indexes {
                *indexes.entry(i.clone()).or_default() += u;
            }
        }
        Step {
            step: step.to_owned(),
            rru: calls.iter().map(|c| c.rru).sum(),
            wru: calls.iter().map(|c| c.wru).sum(),
            indexes,
            calls,
        }
    }

    /// What the step's figures are, for comparing rounds. The calls in
    /// their order of completion, sorted: requests sent at once (the
    /// check's two reads of a worker) complete in either order.
    fn shape(&self) -> String {
        let mut calls: Vec<String> = self
            .calls
            .iter()
            .map(|c| serde_json::to_string(c).unwrap_or_default())
            .collect();
        calls.sort();
        serde_json::to_string(&(calls, self.rru, self.wru)).unwrap_or_default()
    }
}

/// Steps measured in each round, in order.
const STEPS: [&str; 7] = [
    "new worker, first submission",
    "excluded worker, next submission",
    "duplicate notification",
    "check: claim (new worker), the HIT's first check (GetHIT)",
    "check: claim (new worker), the HIT known",
    "check: worker took part",
    "check: a HIT not the lab's",
];

/// The size AWS bills an item at (attribute names plus values), in bytes.
fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.len().div_ceil(2) + 1,
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value(v)).sum::<usize>(),
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| 1 + k.len() + value(v)).sum::<usize>()
            }
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
            AttributeValue::Ns(n) => n.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

async fn measure(rounds: usize) -> anyhow::Result<(Vec<Step>, usize)> {
    let stack = testkit::Stack::from_env().await?;
    let recorder = Recorder::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&stack.sdk)
            .interceptor(recorder.clone())
            .build(),
    );
    let table = stack.ledger_table().await?;
    let double = MturkDouble::start(None)
        .await
        .context("starting the MTurk double")?;
    let qualification = QualificationTypeId::parse(
        &double.create_qualification_type("Took part in our lab's studies"),
    )?;
    let ledger = Ledger::new(dynamodb, &table);
    let mturk = Mturk::new(
        mturk_exclusion::aws::mturk_client(
            &stack.sdk,
            MturkEnvironment::Sandbox,
            Some(&double.endpoint()),
        ),
        Arc::new(RateLimiter::per_second(1000.0)),
    );
    let excluder = Excluder::new(mturk.clone(), ledger.clone(), qualification.clone());
    let checker = Checker::new(ledger, qualification, time::Duration::minutes(60))
        .with_hit_lookups(mturk, 600);
    let hit_type = double.new_hit_type_id();

    let mut all: Vec<Vec<Step>> = Vec::new();
    recorder.take();
    for round in 0..rounds {
        let worker = format!("A1WRUWORKER{round}");
        let first_hit = double.create_hit(&hit_type);
        let second_hit = double.create_hit(&hit_type);
        let first = AssignmentId::parse(&double.add_assignment(
            &first_hit,
            &worker,
            AssignmentStatus::Submitted,
        ))?;
        let second = AssignmentId::parse(&double.add_assignment(
            &second_hit,
            &worker,
            AssignmentStatus::Submitted,
        ))?;
        let mut steps = Vec::new();
        for (what, assignment, expected) in [
            (STEPS[0], &first, Outcome::Excluded),
            (STEPS[1], &second, Outcome::AlreadyExcluded),
            (STEPS[2], &first, Outcome::Duplicate),
        ] {
            let settled = excluder
                .exclude_assignment(assignment, &format!("doc-{round}-{what}"), None)
                .await
                .with_context(|| format!("{what}: excluding"))?;
            if settled.outcome != expected {
                bail!(
                    "{what}: expected {expected:?}, the path answered {:?}",
                    settled.outcome
                );
            }
            steps.push(Step::new(what, recorder.take()));
        }
        let hit = HitId::parse(&double.create_hit(&hit_type))?;
        let accepted = |worker: &str, assignment: String, hit: &HitId| -> anyhow::Result<_> {
            Ok(CheckRequest::Accepted {
                worker: WorkerId::parse(worker)?,
                assignment: AssignmentId::parse(&assignment)?,
                hit: hit.clone(),
            })
        };
        let claim = accepted(
            &format!("A1WRUCLAIM{round}"),
            format!("CLAIMASSIGNMENT{round}"),
            &hit,
        )?;
        let claim_known = accepted(
            &format!("A1WRUCLAIMKNOWN{round}"),
            format!("CLAIMKNOWNASSIGNMENT{round}"),
            &hit,
        )?;
        let took_part = accepted(&worker, format!("TOOKPARTASSIGNMENT{round}"), &hit)?;
        let foreign = accepted(
            &format!("A1WRUFOREIGN{round}"),
            format!("FOREIGNASSIGNMENT{round}"),
            &HitId::parse(&format!("3NOTTHELABSHIT{round}"))?,
        )?;
        for (what, request, expected) in [
            (STEPS[3], &claim, Reason::New),
            (STEPS[4], &claim_known, Reason::New),
            (STEPS[5], &took_part, Reason::TookPart),
            (STEPS[6], &foreign, Reason::UnknownHit),
        ] {
            let reason = checker
                .check(request, time::OffsetDateTime::now_utc())
                .await
                .with_context(|| format!("{what}: checking"))?;
            if reason != expected {
                bail!("{what}: expected {expected:?}, the check answered {reason:?}");
            }
            steps.push(Step::new(what, recorder.take()));
        }
        all.push(steps);
    }
    // Every round must agree: the figures are a property of the path.
    for (n, steps) in all.iter().enumerate().skip(1) {
        for (a, b) in all[0].iter().zip(steps) {
            if a.shape() != b.shape() {
                bail!(
                    "round {} differs from round 1 at {:?}: {:?} against {:?}",
                    n + 1,
                    a.step,
                    b.calls,
                    a.calls
                );
            }
        }
    }
    // Every item under 1 KB: each write is 1 WRU before index writes, each
    // strongly consistent read 1 RRU.
    let plain = stack.dynamodb.clone();
    let mut largest = 0;
    let mut pages = plain
        .scan()
        .table_name(&table)
        .into_paginator()
        .items()
        .send();
    while let Some(item) = pages.try_next().await? {
        largest = largest.max(item_size(&item));
    }
    plain.delete_table().table_name(&table).send().await?;
    double.shutdown();
    Ok((all.swap_remove(0), largest))
}

fn mix(steps: &[Step]) -> (f64, f64, f64) {
    let new = &steps[0];
    let again = &steps[1];
    let per_1000 = |f: fn(&Step) -> f64| {
        1000.0 * (NEW_WORKER_SHARE * f(new) + (1.0 - NEW_WORKER_SHARE) * f(again))
    };
    let rru = per_1000(|s| s.rru);
    let wru = per_1000(|s| s.wru);
    (rru, wru, rru * RRU_PRICE + wru * WRU_PRICE)
}

fn indexes_written(s: &Step) -> String {
    let list: Vec<String> = s
        .indexes
        .iter()
        .filter(|(_, u)| **u > 0.0)
        .map(|(i, u)| format!("{i} {u}"))
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn report(label: &str, steps: &[Step]) -> String {
    let mut out = format!("## {label}\n");
    for s in steps {
        let _ = writeln!(
            out,
            "{}: {} request(s), {} RRU, {} WRU (indexes: {})",
            s.step,
            s.calls.len(),
            s.rru,
            s.wru,
            indexes_written(s)
        );
        for c in &s.calls {
            let _ = writeln!(
                out,
                "    {:<20} {:<34} RRU {:<4} WRU {:<4} {}{}",
                c.op,
                c.error.as_deref().unwrap_or("ok"),
                c.rru,
                c.wru,
                if c.indexes.is_empty() {
                    String::new()
                } else {
                    format!("{:?}", c.indexes)
                },
                match (c.by_rule, c.reported) {
                    (true, Some(r)) if c.rru > 0.0 =>
                        format!("  (found nothing: AWS's minimum; DynamoDB Local: {r})"),
                    (true, Some(r)) => format!(
                        "  (table units by AWS's rule, 2 per item; DynamoDB Local: {r} in all)"
                    ),
                    (true, None) => "  (not reported: AWS's rule for a failed condition)".into(),
                    _ => String::new(),
                }
            );
        }
    }
    let (rru, wru, cost) = mix(steps);
    let _ = writeln!(
        out,
        "per 1,000 submissions ({:.1} % by new workers): {rru:.0} RRU + {wru:.0} WRU = ${cost:.5}",
        NEW_WORKER_SHARE * 100.0
    );
    out
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let rounds: usize = args.number("rounds", 3)?;
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let label = args.get("label").unwrap_or("this tree").to_owned();
    let baseline = match args.get("baseline") {
        None => None,
        Some(bench) => {
            let out = tokio::process::Command::new(bench)
                .args([
                    "wru",
                    "--rounds",
                    &rounds.to_string(),
                    "--label",
                    "baseline",
                ])
                .output()
                .await
                .with_context(|| format!("running {bench}"))?;
            if !out.status.success() {
                bail!(
                    "{bench} wru failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix("RESULT "))
                .context("the baseline printed no RESULT line")?;
            let v: serde_json::Value = serde_json::from_str(line)?;
            let steps: Vec<Step> = serde_json::from_value(v["steps"].clone())?;
            Some(steps)
        }
    };
    let (steps, largest) = measure(rounds).await?;
    if let Some(before) = &baseline {
        print!("{}", report("baseline (--baseline)", before));
    }
    print!("{}", report(&label, &steps));
    println!(
        "largest item in the table: {largest} bytes (under 1 KB: 1 WRU per item written, \
         1 RRU per consistent read); figures identical in all {rounds} round(s)"
    );
    if let Some(before) = &baseline {
        println!(
            "\n| step | before: RRU / WRU | after: RRU / WRU | indexes written, before | after |"
        );
        println!("|---|---|---|---|---|");
        for (b, a) in before.iter().zip(&steps) {
            println!(
                "| {} | {} / {} | {} / {} | {} | {} |",
                a.step,
                b.rru,
                b.wru,
                a.rru,
                a.wru,
                indexes_written(b),
                indexes_written(a)
            );
        }
        let (br, bw, bc) = mix(before);
        let (ar, aw, ac) = mix(&steps);
        println!(
            "| per 1,000 submissions ({:.1} % new workers) | {br:.0} / {bw:.0} (${bc:.5}) | {ar:.0} / {aw:.0} (${ac:.5}) | | |",
            NEW_WORKER_SHARE * 100.0
        );
    }
    let (rru, wru, cost) = mix(&steps);
    print_result(
        "wru",
        json!({
            "label": label,
            "rounds": rounds,
            "largest_item_bytes": largest,
            "steps": steps,
            "per_1000": {"new_worker_share": NEW_WORKER_SHARE, "rru": rru, "wru": wru, "usd": cost},
            "baseline": baseline,
        }),
    );
    Ok(())
}
