//! `subscribe`'s rules: which HIT types to point at the queue, and the
//! round trip that proves the notification path before a study launches,
//! with the diagnosis of where a test event got stuck when none came back.
//!
//! A test event tests the queue, not a HIT type (MTurk has no way to read a
//! HIT type's settings back), so the HIT types are trusted to be set because
//! MTurk accepted each setting; the round trip proves that MTurk may send to
//! the queue, the function consumes it, and it can write the ledger.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::check::NOTIFIED_EVENT_TYPES;
use crate::ids::{shown, HitTypeId};
use crate::ledger::{parse_stamp, Heartbeat, Ledger, LedgerError, OwnCustomer, SubscribedBy};
use crate::mturk::{Hit, Mturk, MturkError};
use crate::ops::queues::{self, Depth, Probe};

/// How far apart the laptop's clock and the function's may be. Heartbeats
/// seen before the test event was sent are excluded by id, so a wide window
/// cannot pass an old heartbeat off as this run's.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(2);
const POLL_EVERY: Duration = Duration::from_secs(1);

#[derive(Serialize, Debug, Clone)]
pub struct HitTypeOutcome {
    pub hit_type_id: HitTypeId,
    pub subscribed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `due_generation` this call wrote with the ledger's record (a covering
    /// subscription, its backfill due): the watch's own backfill of it in
    /// the same run is then current.
    #[serde(skip)]
    pub due_generation: Option<u64>,
}

/// Where the test event got stuck.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// MTurk refused to send the test event.
    TestEventRefused,
    QueueNotFound,
    /// The event waits in the queue: nothing receives from it.
    NotConsumed,
    /// Received but not deleted, or moved to the dead-letter queue.
    HandlerFailing,
    /// Nowhere to be seen: MTurk could not deliver (or the function writes elsewhere).
    NotDelivered,
    /// Nowhere to be seen, and the stack's queue policy requires
    /// aws:SourceAccount (RequireSourceAccount=true).
    SourceAccountCondition,
    /// Test events came through, but none was this run's: they came from
    /// another requester (another CustomerId or AWS account).
    OnlyForeignTestEvents,
}

#[derive(Serialize, Debug)]
pub struct Diagnosis {
    pub cause: Cause,
    pub message: String,
    pub what_to_do: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<Depth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<Depth>,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub queue_url: String,
    pub table: String,
    pub hit_types: Vec<HitTypeOutcome>,
    /// A heartbeat came back after the test event was sent.
    pub verified: bool,
    /// True with --no-verify.
    pub verification_skipped: bool,
    pub heartbeat_at: Option<String>,
    /// The lab's own MTurk CustomerId, learned from this run's (or an
    /// earlier run's) test event; documents from any other are foreign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Test events seen in the window that were not this run's.
    pub foreign_test_events: usize,
    /// Why the round trip failed, when it did.
    pub diagnosis: Option<Diagnosis>,
}

#[derive(Serialize, Debug)]
pub struct UnsubscribeOutcome {
    pub hit_type_id: HitTypeId,
    pub unsubscribed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct UnsubscribeReport {
    pub hit_types: Vec<UnsubscribeOutcome>,
}

/// The HIT types to subscribe: those named, each once and in order, then
/// with `all_active` every HIT type of a HIT in the account that may have
/// submissions (not Disposed, as the watch covers), for HITs made with
/// other tools.
pub async fn hit_types(
    mturk: &Mturk,
    named: &[HitTypeId],
    all_active: bool,
) -> Result<Vec<HitTypeId>, MturkError> {
    let hits = if all_active {
        mturk.hits().await?
    } else {
        Vec::new()
    };
    Ok(each_once(named, &hits))
}

fn each_once(named: &[HitTypeId], hits: &[Hit]) -> Vec<HitTypeId> {
    let active = hits.iter().filter(|h| h.status.may_have_submissions());
    let mut seen = HashSet::new();
    named
        .iter()
        .chain(active.map(|h| &h.hit_type_id))
        .filter(|t| seen.insert(*t))
        .cloned()
        .collect()
}

/// Points one HIT type's notifications at the queue and records it. MTurk
/// refusing this HIT type is its outcome (the others go on); the error is
/// the ledger failing (stop).
pub async fn subscribe(
    mturk: &Mturk,
    ledger: &Ledger,
    hit_type: &HitTypeId,
    queue_url: &str,
) -> Result<HitTypeOutcome, LedgerError> {
    let refused = mturk.subscribe(hit_type, queue_url).await.err();
    if refused.is_none() {
        // The event types are noted so that `status` can name HIT types
        // subscribed before Returned/Abandoned were asked for.
        ledger
            .record_subscription(
                hit_type,
                queue_url,
                Some(NOTIFIED_EVENT_TYPES),
                OffsetDateTime::now_utc(),
            )
            .await?;
    }
    Ok(HitTypeOutcome {
        hit_type_id: hit_type.clone(),
        subscribed: refused.is_none(),
        error: refused.map(|e| e.to_string()),
        due_generation: None,
    })
}

/// [`subscribe`] for a HIT type nobody subscribed (the watch, `coverage
/// --fix`): the same call and event types, recorded as made `by` them with
/// its backfill due, and only where the ledger still has no record of the
/// HIT type. When one appeared meanwhile and it is the lab's `unsubscribe`,
/// the setting just made is turned off again: the lab's word stands.
pub async fn subscribe_covering(
    mturk: &Mturk,
    ledger: &Ledger,
    hit_type: &HitTypeId,
    queue_url: &str,
    by: SubscribedBy,
) -> Result<HitTypeOutcome, LedgerError> {
    if let Err(e) = mturk.subscribe(hit_type, queue_url).await {
        return Ok(HitTypeOutcome {
            hit_type_id: hit_type.clone(),
            subscribed: false,
            error: Some(e.to_string()),
            due_generation: None,
        });
    }
    let recorded = ledger
        .record_covering_subscription(
            hit_type,
            queue_url,
            NOTIFIED_EVENT_TYPES,
            by,
            OffsetDateTime::now_utc(),
        )
        .await?;
    if recorded.is_none() {
        if let Some(sub) = ledger.subscription(hit_type).await? {
            if !sub.active {
                let undone = mturk.unsubscribe(hit_type).await;
                return Ok(HitTypeOutcome {
                    hit_type_id: hit_type.clone(),
                    subscribed: false,
                    error: Some(match undone {
                        Ok(()) => "the lab unsubscribed this HIT type meanwhile; left unsubscribed".into(),
                        Err(e) => format!("the lab unsubscribed this HIT type meanwhile, and turning its notifications off again failed ({e}); run `mturk-exclusion unsubscribe {hit_type}`"),
                    }),
                    due_generation: None,
                });
            }
        }
    }
    Ok(HitTypeOutcome {
        hit_type_id: hit_type.clone(),
        subscribed: true,
        error: None,
        due_generation: recorded,
    })
}

/// Turns one HIT type's notifications off; the ledger keeps its record,
/// marked inactive. Outcome and error as for [`subscribe`].
///
/// The ledger first, MTurk second: a watch subscribing the same HIT type at
/// that moment either finds the lab's record and turns its own setting off
/// again ([`subscribe_covering`]), or wrote its record before and is
/// overruled by this call to MTurk. The other way round, the watch could
/// turn notifications on between the two and record itself, and this
/// record would then mark inactive what MTurk still notifies. If MTurk
/// refuses, the record stays inactive, which is what the lab asked for:
/// the command says so, and running it again finishes the work.
pub async fn unsubscribe(
    mturk: &Mturk,
    ledger: &Ledger,
    hit_type: &HitTypeId,
) -> Result<UnsubscribeOutcome, LedgerError> {
    ledger.record_unsubscribed(hit_type).await?;
    let refused = mturk.unsubscribe(hit_type).await.err();
    Ok(UnsubscribeOutcome {
        hit_type_id: hit_type.clone(),
        unsubscribed: refused.is_none(),
        error: refused.map(|e| e.to_string()),
    })
}

/// What the round trip came to.
#[derive(Debug)]
pub struct Trip {
    /// This run's heartbeat and the lab's requester it proves, or why not.
    pub outcome: Result<(Heartbeat, OwnCustomer), Diagnosis>,
    /// Heartbeats in the window that were not this run's test event.
    pub foreign: usize,
    /// The ledger named another CustomerId as the lab's than this run's
    /// test event came from (another run learned one first).
    pub warning: Option<String>,
}

impl Trip {
    /// Ended before a heartbeat could come back, for `diagnosis`.
    pub fn failed(diagnosis: Diagnosis, foreign: usize) -> Trip {
        Trip {
            outcome: Err(diagnosis),
            foreign,
            warning: None,
        }
    }
}

/// The dead-letter queue's depth, if there is one and it can be read: a
/// baseline and a comparison, best effort.
async fn depth_of(sqs: &aws_sdk_sqs::Client, dlq_url: Option<&str>) -> Option<Depth> {
    queues::probe(sqs, dlq_url?).await.depth()
}

/// A test event on its way, with what the wait needs to tell it apart.
pub struct Sent {
    queue_url: String,
    dlq_url: Option<String>,
    dlq_before: Option<Depth>,
    own: Option<OwnCustomer>,
    sent_at: OffsetDateTime,
    /// Heartbeats already in the window when it was sent: none is this run's.
    earlier: HashSet<(String, String)>,
}

fn heartbeat_key(h: &Heartbeat) -> (String, String) {
    (h.received_at.clone(), h.event_doc_id.clone())
}

/// Asks MTurk to send one test event to the queue, after noting what the
/// ledger and the dead-letter queue (`named_dlq`, else the queue's redrive
/// target) hold before it. The outer error is the ledger failing; the inner
/// one is MTurk refusing to send, already diagnosed.
pub async fn send_test_event(
    mturk: &Mturk,
    ledger: &Ledger,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    named_dlq: Option<&str>,
) -> Result<Result<Sent, Diagnosis>, LedgerError> {
    let dlq_url = queues::resolve_dlq(sqs, named_dlq, Some(queue_url)).await;
    let dlq_before = depth_of(sqs, dlq_url.as_deref()).await;
    let own = ledger.own_customer().await?;
    let sent_at = OffsetDateTime::now_utc();
    let earlier = ledger
        .heartbeats_since(sent_at - CLOCK_SKEW)
        .await?
        .iter()
        .map(heartbeat_key)
        .collect();

    if let Err(e) = mturk.send_test_event(queue_url).await {
        return Ok(Err(Diagnosis {
            cause: Cause::TestEventRefused,
            message: format!("MTurk did not send the test event: {e}"),
            what_to_do: "check that --queue-url is a full SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>), then run subscribe again".into(),
            queue: None,
            dead_letter_queue: None,
        }));
    }
    Ok(Ok(Sent {
        queue_url: queue_url.to_owned(),
        dlq_url,
        dlq_before,
        own,
        sent_at,
        earlier,
    }))
}

impl Sent {
    /// Waits up to `timeout` for this run's heartbeat. The first one proves
    /// the path, and the first time the lab's CustomerId is learned from it.
    /// Without one, the queues say where the event got stuck
    /// (`requires_source_account`: the stack's RequireSourceAccount=true).
    /// The error is the ledger failing.
    pub async fn wait(
        self,
        ledger: &Ledger,
        sqs: &aws_sdk_sqs::Client,
        timeout: Duration,
        requires_source_account: bool,
    ) -> Result<Trip, LedgerError> {
        let account = queue_account(&self.queue_url);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut foreign: Vec<Heartbeat>;
        loop {
            let now = OffsetDateTime::now_utc();
            let (mine, others): (Vec<_>, Vec<_>) = ledger
                .heartbeats_since(self.sent_at - CLOCK_SKEW)
                .await?
                .into_iter()
                .filter(|h| !self.earlier.contains(&heartbeat_key(h)))
                .partition(|h| is_own(h, self.own.as_ref(), account, self.sent_at, now));
            foreign = others;
            if let Some(hb) = mine.into_iter().next() {
                let mut warning = None;
                let learned = match &self.own {
                    Some(own) => own.clone(),
                    None => {
                        let learned = ledger.learn_own_customer(&hb, now).await?;
                        if hb.customer_id.as_deref() != Some(learned.customer_id.as_str()) {
                            warning = Some(format!(
                                "the ledger already names CustomerId {} as the lab's, learned from test event {} at {}; this test event came from {}. Documents from any other CustomerId are acknowledged without calling MTurk",
                                shown(&learned.customer_id),
                                shown(&learned.event_doc_id),
                                learned.learned_at,
                                hb.customer_id.as_deref().map(shown).unwrap_or_default()
                            ));
                        }
                        learned
                    }
                };
                return Ok(Trip {
                    outcome: Ok((hb, learned)),
                    foreign: foreign.len(),
                    warning,
                });
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(POLL_EVERY.min(left)).await;
        }
        let diagnosis = if foreign.is_empty() {
            let found = diagnose(
                sqs,
                &self.queue_url,
                self.dlq_url.as_deref(),
                self.dlq_before,
            )
            .await;
            blame_source_account_condition(found, requires_source_account)
        } else {
            only_foreign(&foreign, self.own.as_ref(), account)
        };
        Ok(Trip::failed(diagnosis, foreign.len()))
    }
}

/// Learns the lab's CustomerId from its own test event sent at `sent_at`
/// (the watch's, which does not wait for it): the first such heartbeat in
/// the ledger, recognised as [`Sent::wait`] recognises one. `None` when none
/// came through yet. The first CustomerId learned stays.
pub async fn learn_from_test_event(
    ledger: &Ledger,
    queue_url: &str,
    sent_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Option<OwnCustomer>, LedgerError> {
    let account = queue_account(queue_url);
    let own = ledger
        .heartbeats_since(sent_at - CLOCK_SKEW)
        .await?
        .into_iter()
        .find(|h| is_own(h, None, account, sent_at, now));
    match own {
        Some(hb) => Ok(Some(ledger.learn_own_customer(&hb, now).await?)),
        None => Ok(None),
    }
}

/// The AWS account that owns a queue, from its URL
/// (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
fn queue_account(queue_url: &str) -> Option<&str> {
    let path = queue_url.split_once("://")?.1.split_once('/')?.1;
    let account = path.split('/').next()?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// Whether `hb` can be this run's own test event, sent at `sent_at`.
///
/// MTurk's test document holds nothing the caller chose except the event
/// type (its ids are placeholders, its EventDocId is MTurk's), so it is
/// recognised by who sent it and when: its `EventTimestamp` must fall
/// between the call and now (give or take the clocks' skew), and its sender
/// must be the lab itself: the CustomerId learned before, or, until one is
/// learned, a `SourceAccount` equal to the AWS account that owns the queue
/// (the stack runs in the account linked to the lab's requester). Another
/// requester's Ping carries their own CustomerId and account, so it passes
/// neither, whenever it arrives.
fn is_own(
    hb: &Heartbeat,
    own: Option<&OwnCustomer>,
    account: Option<&str>,
    sent_at: OffsetDateTime,
    now: OffsetDateTime,
) -> bool {
    let in_window = parse_stamp(&hb.event_at)
        .is_some_and(|at| at >= sent_at - CLOCK_SKEW && at <= now + CLOCK_SKEW);
    let from_lab = match own {
        Some(own) => hb.customer_id.as_deref() == Some(own.customer_id.as_str()),
        None => {
            hb.customer_id.is_some() && account.is_some() && hb.source_account.as_deref() == account
        }
    };
    in_window && from_lab
}

/// Only other requesters' test events came through: who sent them.
fn only_foreign(
    foreign: &[Heartbeat],
    own: Option<&OwnCustomer>,
    account: Option<&str>,
) -> Diagnosis {
    let senders: HashSet<String> = foreign
        .iter()
        .map(|h| {
            format!(
                "CustomerId {} / account {}",
                h.customer_id
                    .as_deref()
                    .map(shown)
                    .unwrap_or_else(|| "(none)".into()),
                h.source_account
                    .as_deref()
                    .map(shown)
                    .unwrap_or_else(|| "(none)".into())
            )
        })
        .collect();
    let mut senders: Vec<_> = senders.into_iter().collect();
    senders.sort();
    Diagnosis {
        cause: Cause::OnlyForeignTestEvents,
        message: format!(
            "{} test event(s) came through, none of them this run's: they were sent by {} ({})",
            foreign.len(),
            match own {
                Some(o) => format!(
                    "another requester than the lab's CustomerId {}",
                    shown(&o.customer_id)
                ),
                None => format!(
                    "another AWS account than the queue's ({})",
                    account.unwrap_or("unknown")
                ),
            },
            senders.join("; ")
        ),
        what_to_do: "run subscribe with the lab's own credentials (--profile) for the account that owns the queue; if another requester's HIT types point at this queue, they will be ignored once the lab's CustomerId is learned".into(),
        queue: None,
        dead_letter_queue: None,
    }
}

/// MTurk documents aws:SourceAccount for SNS, not for SQS: a queue policy
/// that requires it most likely refuses every notification, which looks
/// exactly like an event that was never delivered.
fn blame_source_account_condition(mut d: Diagnosis, requires_source_account: bool) -> Diagnosis {
    if d.cause == Cause::NotDelivered && requires_source_account {
        d.cause = Cause::SourceAccountCondition;
        d.message = "MTurk's test event did not arrive, and the stack's queue policy accepts MTurk's messages only with aws:SourceAccount (RequireSourceAccount=true). MTurk documents that condition for SNS, not for SQS: it most likely does not send it to queues, so the queue refuses every notification".into();
        d.what_to_do = "deploy the stack again with RequireSourceAccount=false (sam deploy --parameter-overrides RequireSourceAccount=false ...), then run subscribe again; until then no submission reaches the function".into();
    }
    d
}

async fn diagnose(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    dlq_url: Option<&str>,
    dlq_before: Option<Depth>,
) -> Diagnosis {
    let queue = match queues::probe(sqs, queue_url).await {
        Probe::Found(d) => Some(d),
        Probe::NotFound => {
            return Diagnosis {
                cause: Cause::QueueNotFound,
                message: format!(
                    "queue not found: {queue_url} (it was there when subscribe started)"
                ),
                what_to_do: queues::QUEUE_NOT_FOUND_HINT.into(),
                queue: None,
                dead_letter_queue: None,
            }
        }
        Probe::Unreadable(_) => None,
    };
    let dlq = depth_of(sqs, dlq_url).await;
    stuck_in_queues(queue, dlq_before, dlq, dlq_url.is_some())
}

/// Where the test event got stuck, from the queues' depths after the wait
/// (`None`: could not be read) and the dead-letter queue's before it.
fn stuck_in_queues(
    queue: Option<Depth>,
    dlq_before: Option<Depth>,
    dlq: Option<Depth>,
    dlq_known: bool,
) -> Diagnosis {
    let dlq_grew = match (dlq_before, dlq) {
        (Some(before), Some(after)) => after.total() > before.total(),
        _ => false,
    };
    let diagnosis = |cause, message: String, what_to_do: &str| Diagnosis {
        cause,
        message,
        what_to_do: what_to_do.to_owned(),
        queue,
        dead_letter_queue: dlq,
    };
    let no_dlq_note = if dlq_known {
        ""
    } else {
        " (no dead-letter queue known: pass --dlq-url or --stack to check it too)"
    };
    match queue {
        _ if dlq_grew => diagnosis(
            Cause::HandlerFailing,
            "the handler is failing: the test event reached the queue, the function received it, and it ended in the dead-letter queue".into(),
            "see the function's logs (CloudWatch Logs, /aws/lambda/<function>) for the failing record, fix the cause, then `mturk-exclusion redrive` and subscribe again",
        ),
        Some(q) if q.in_flight > 0 => diagnosis(
            Cause::HandlerFailing,
            format!("the handler is failing or too slow: {} message(s) were received from the queue and not deleted", q.in_flight),
            "see the function's logs (CloudWatch Logs, /aws/lambda/<function>): check its permissions on the table (--table must be the table the function writes) and on MTurk; failed messages return after the visibility timeout and go to the dead-letter queue after maxReceiveCount receives",
        ),
        Some(q) if q.visible + q.delayed > 0 => diagnosis(
            Cause::NotConsumed,
            format!("the test event reached the queue but nothing consumed it: {} message(s) are waiting", q.visible + q.delayed),
            "is the function deployed and its event source mapping enabled? (`aws lambda list-event-source-mappings --event-source-arn <queue ARN>` should say State: Enabled); also check that --queue-url is the stack's queue",
        ),
        _ => diagnosis(
            Cause::NotDelivered,
            format!("MTurk could not deliver to the queue: the test event is in neither the queue nor the dead-letter queue{no_dlq_note}"),
            "check that the queue policy allows the service principal mturk-requester.amazonaws.com to sqs:SendMessage, and that --queue-url is the stack's queue (the QueueUrl output); if the function did consume it, it writes to another table than --table",
        ),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ids::HitId;
    use crate::ledger::stamp;

    const SENT: OffsetDateTime = datetime!(2026-03-10 12:00 UTC);
    const LAB: &str = "A2LABCUSTOMER";
    const LAB_ACCOUNT: &str = "123456789012";

    fn ping(event_at: OffsetDateTime, customer: Option<&str>, account: Option<&str>) -> Heartbeat {
        Heartbeat {
            event_doc_id: format!("doc-{}", event_at.unix_timestamp()),
            event_at: stamp(event_at),
            received_at: stamp(event_at + time::Duration::seconds(1)),
            placeholder_hit_type_id: None,
            customer_id: customer.map(Into::into),
            source_account: account.map(Into::into),
        }
    }

    fn learned(customer: &str) -> OwnCustomer {
        OwnCustomer {
            customer_id: customer.into(),
            source_account: Some(LAB_ACCOUNT.into()),
            event_doc_id: "doc-first".into(),
            learned_at: "2026-03-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_queue_account_comes_from_its_url() {
        assert_eq!(
            queue_account("https://sqs.us-east-1.amazonaws.com/123456789012/q"),
            Some("123456789012")
        );
        assert_eq!(
            queue_account("http://127.0.0.1:5000/123456789012/q"),
            Some("123456789012")
        );
        assert_eq!(queue_account("https://example.com/q"), None);
        assert_eq!(queue_account("q"), None);
    }

    #[test]
    fn before_a_customer_id_is_learned_the_lab_is_the_queues_account() {
        let now = SENT + time::Duration::seconds(5);
        let own = |hb: &Heartbeat| is_own(hb, None, Some(LAB_ACCOUNT), SENT, now);
        assert!(own(&ping(SENT, Some(LAB), Some(LAB_ACCOUNT))));
        assert!(!own(&ping(SENT, Some(LAB), Some("999988887777"))));
        // Without a CustomerId there is nothing to learn the lab from.
        assert!(!own(&ping(SENT, None, Some(LAB_ACCOUNT))));
        // A queue URL that names no account proves no sender.
        let hb = ping(SENT, Some(LAB), Some(LAB_ACCOUNT));
        assert!(!is_own(&hb, None, None, SENT, now));
    }

    #[test]
    fn once_learned_only_the_labs_customer_id_counts() {
        let now = SENT + time::Duration::seconds(5);
        let lab = learned(LAB);
        let own = |hb: &Heartbeat| is_own(hb, Some(&lab), Some(LAB_ACCOUNT), SENT, now);
        assert!(own(&ping(SENT, Some(LAB), None)));
        // Another requester in the lab's own AWS account is still another requester.
        assert!(!own(&ping(SENT, Some("A3FOREIGNREQ9"), Some(LAB_ACCOUNT))));
        assert!(!own(&ping(SENT, None, Some(LAB_ACCOUNT))));
    }

    #[test]
    fn a_test_event_counts_only_within_the_clocks_skew_of_the_wait() {
        let now = SENT + time::Duration::seconds(30);
        let lab = learned(LAB);
        let own = |at| is_own(&ping(at, Some(LAB), None), Some(&lab), None, SENT, now);
        assert!(own(SENT - CLOCK_SKEW));
        assert!(!own(SENT - CLOCK_SKEW - time::Duration::seconds(1)));
        assert!(own(now + CLOCK_SKEW));
        assert!(!own(now + CLOCK_SKEW + time::Duration::seconds(1)));
        let mut garbled = ping(SENT, Some(LAB), None);
        garbled.event_at = "yesterday".into();
        assert!(!is_own(&garbled, Some(&lab), None, SENT, now));
    }

    fn depth(visible: u64, in_flight: u64) -> Option<Depth> {
        Some(Depth {
            visible,
            in_flight,
            delayed: 0,
        })
    }

    #[test]
    fn where_the_test_event_got_stuck_follows_the_queues() {
        let cause = |queue, before, after| stuck_in_queues(queue, before, after, true).cause;
        // A grown dead-letter queue wins over whatever the queue shows.
        assert_eq!(
            cause(depth(3, 0), depth(1, 0), depth(2, 0)),
            Cause::HandlerFailing
        );
        assert_eq!(
            cause(depth(0, 1), depth(0, 0), depth(0, 0)),
            Cause::HandlerFailing
        );
        assert_eq!(cause(depth(1, 0), None, None), Cause::NotConsumed);
        assert_eq!(
            cause(depth(0, 0), depth(2, 0), depth(2, 0)),
            Cause::NotDelivered
        );
        // A queue that could not be read says nothing: not delivered, as far as we know.
        assert_eq!(cause(None, None, None), Cause::NotDelivered);

        let blind = stuck_in_queues(depth(0, 0), None, None, false);
        assert!(
            blind.message.ends_with(
                "(no dead-letter queue known: pass --dlq-url or --stack to check it too)"
            ),
            "{}",
            blind.message
        );
        let seen = stuck_in_queues(depth(0, 0), depth(0, 0), depth(0, 0), true);
        assert!(!seen.message.contains("no dead-letter queue known"));
        assert_eq!(seen.queue, depth(0, 0));
        assert_eq!(seen.dead_letter_queue, depth(0, 0));
    }

    #[test]
    fn a_required_source_account_takes_the_blame_for_a_lost_event_only() {
        let lost = || stuck_in_queues(depth(0, 0), None, None, true);
        assert_eq!(
            blame_source_account_condition(lost(), true).cause,
            Cause::SourceAccountCondition
        );
        assert_eq!(
            blame_source_account_condition(lost(), false).cause,
            Cause::NotDelivered
        );
        let waiting = stuck_in_queues(depth(1, 0), None, None, true);
        assert_eq!(
            blame_source_account_condition(waiting, true).cause,
            Cause::NotConsumed
        );
    }

    #[test]
    fn foreign_test_events_are_named_by_sender_once_each() {
        let foreign = [
            ping(SENT, Some("A3FOREIGNREQ9"), Some("999988887777")),
            ping(
                SENT + time::Duration::seconds(1),
                Some("A3FOREIGNREQ9"),
                Some("999988887777"),
            ),
            ping(SENT, None, None),
        ];
        let d = only_foreign(&foreign, None, Some(LAB_ACCOUNT));
        assert_eq!(d.cause, Cause::OnlyForeignTestEvents);
        assert_eq!(
            d.message,
            r#"3 test event(s) came through, none of them this run's: they were sent by another AWS account than the queue's (123456789012) (CustomerId "A3FOREIGNREQ9" / account "999988887777"; CustomerId (none) / account (none))"#
        );
        let lab = learned(LAB);
        let d = only_foreign(&foreign[..1], Some(&lab), None);
        assert!(
            d.message
                .contains(r#"another requester than the lab's CustomerId "A2LABCUSTOMER""#),
            "{}",
            d.message
        );
    }

    #[test]
    fn hit_types_are_subscribed_once_each_named_first_then_not_disposed() {
        let t = |id: &str| HitTypeId::parse(id).unwrap();
        let hit = |id: &str, hit_type: &str, status: &str| Hit {
            hit_id: HitId::parse(id).unwrap(),
            hit_type_id: t(hit_type),
            title: None,
            status: status.into(),
            requirements: Vec::new(),
            properties: None,
        };
        let hits = [
            hit("3HIT1", "3TYPELIVE", "Assignable"),
            hit("3HIT2", "3TYPENAMED", "Reviewable"),
            hit("3HIT3", "3TYPELIVE", "Unassignable"),
            hit("3HIT4", "3TYPEGONE", "Disposed"),
            hit("3HIT5", "3TYPEREVIEWING", "Reviewing"),
        ];
        // A Reviewing HIT may still have submissions to exclude.
        assert_eq!(
            each_once(&[t("3TYPENAMED"), t("3TYPEOTHER"), t("3TYPENAMED")], &hits),
            [
                t("3TYPENAMED"),
                t("3TYPEOTHER"),
                t("3TYPELIVE"),
                t("3TYPEREVIEWING")
            ]
        );
        let reviewing = [hit("3HIT6", "3TYPEREVIEWING", "Reviewing")];
        assert_eq!(each_once(&[], &reviewing), [t("3TYPEREVIEWING")]);
        let disposed = [hit("3HIT7", "3TYPEGONE", "Disposed")];
        assert!(each_once(&[], &disposed).is_empty());
        assert!(each_once(&[], &[]).is_empty());
    }
}
