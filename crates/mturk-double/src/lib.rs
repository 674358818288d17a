//! An in-process, wire-level stand-in for the Amazon Mechanical Turk requester
//! API, so that the real `aws-sdk-mturk` client can be tested against it.
//!
//! [`MturkDouble::start`] serves MTurk's AWS JSON 1.1 protocol on
//! `127.0.0.1:<free port>`: `POST /` with `X-Amz-Target:
//! MTurkRequesterServiceV20170117.<Operation>`, JSON bodies, epoch-second
//! timestamps, `x-amzn-RequestId` headers and MTurk's error shapes
//! (`RequestError` with a `TurkErrorCode`, `ServiceFault`,
//! `ParameterValidationError`, `ThrottlingException`).
//!
//! Covered: the operations an exclusion workflow needs (see [`OPERATIONS`]):
//! assignments and HITs (read-only), qualification types and grants,
//! notification settings, test notifications and the account balance.
//! Submitting an assignment through [`MturkDouble::submit_assignment`] sends
//! the `AssignmentSubmitted` notification document to the HIT type's SQS
//! destination, as MTurk does. Faults can be injected per operation:
//! throttling (an account-wide token bucket or on demand), service faults,
//! bare HTTP 500s, arbitrary `RequestError`s, dropped connections, delays and
//! lost notification deliveries; every request is recorded with its outcome.
//!
//! HIT types can be made with `CreateHITType` (the same properties give the
//! same id, as on MTurk) and a HIT moved to one with `UpdateHITTypeOfHIT`;
//! [`MturkDouble::post_hit`] posts a HIT as another tool would, its HIT type
//! derived from its properties and requirements.
//!
//! Not covered: SigV4 is not verified (any credentials work); there is no
//! HIT-creation, approval, bonus or worker-block API (HITs and assignments are
//! seeded from Rust); time is the wall clock (HITs do not expire on their own,
//! [`MturkDouble::dispose_hit`] stands in for the 120-day disposal); there are
//! no system qualification types; Email and SNS destinations are accepted but
//! nothing is delivered to them.

mod api;
mod error;
mod faults;
mod ids;
mod model;
mod notify;
mod wire;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::error::DisplayErrorContext;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;
use tracing::{debug, warn};

pub use api::OPERATIONS;
pub use error::DoubleError;
pub use faults::{Fault, TokenBucket};
pub use model::{AssignmentStatus, Grant, GrantStatus, HitOptions, NotificationSetting};
pub use notify::{
    Delivery, DeliveryOutcome, CUSTOMER_ID, EVENT_DOC_VERSION, EVENT_TYPES, SOURCE_ACCOUNT,
};
pub use wire::TARGET_PREFIX;

use faults::Faults;
use model::Model;
use notify::{document, EventIds, PendingDelivery};

/// One request as the double saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The `X-Amz-Target` without `MTurkRequesterServiceV20170117.` (the
    /// whole header if it lacks that prefix, empty if absent).
    pub operation: String,
    /// The body as sent: parsed JSON, a JSON string holding the raw text if it
    /// was not JSON, or `Null` while body recording is off.
    pub request: Value,
    pub outcome: Outcome,
    /// The HTTP status answered; `None` when the connection was dropped.
    pub status: Option<u16>,
    /// The `x-amzn-RequestId` answered; `None` when the connection was dropped.
    pub request_id: Option<String>,
}

/// How a request was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// By the model: a success or one of the operation's own errors.
    Answered,
    /// By a fault, named as in [`Fault::kind`] (`"Throttle"` also covers the
    /// token bucket). A `"Delay"` request was still answered by the model.
    Fault(String),
    /// The connection was closed without a response.
    Dropped,
}

/// What [`MturkDouble::submit_assignment`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub assignment_id: String,
    pub hit_type_id: String,
    /// The notification document MTurk would send for this submission (whether
    /// or not it arrived), so tests can deliver duplicates themselves.
    pub notification: Option<String>,
    /// What became of that document.
    pub delivery: Option<DeliveryOutcome>,
}

pub(crate) struct State {
    model: Model,
    faults: Faults,
    calls: Vec<Call>,
    call_counts: HashMap<String, usize>,
    record_bodies: bool,
    deliveries: Vec<Delivery>,
    requests: u64,
}

impl State {
    fn record(&mut self, call: Call) {
        *self.call_counts.entry(call.operation.clone()).or_insert(0) += 1;
        self.calls.push(call);
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    sqs: Option<aws_sdk_sqs::Client>,
    gates: Mutex<Vec<(String, usize, Gate)>>,
}

/// Calls held at the door, before they take effect, until the test opens
/// the gate: how a test forces one interleaving of two writers
/// deterministically (hold the handler's grant while a release runs).
#[derive(Clone, Debug)]
pub struct Gate {
    arrived: Arc<tokio::sync::Semaphore>,
    open: Arc<tokio::sync::Semaphore>,
}

impl Gate {
    /// Waits until one more held call has arrived at the gate.
    pub async fn arrived(&self) {
        if let Ok(permit) = self.arrived.acquire().await {
            permit.forget();
        }
    }

    /// Lets every held call through, and every later one it was set for.
    pub fn open(&self) {
        self.open
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}

impl Shared {
    /// The gate a call to `operation` must wait at, if any is set.
    pub(crate) fn gate_for(&self, operation: &str) -> Option<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        let i = gates
            .iter()
            .position(|(op, left, _)| op == operation && *left > 0)?;
        gates[i].1 -= 1;
        Some(gates[i].2.clone())
    }

    /// A panic elsewhere while the lock was held leaves the state as it was
    /// written so far; the double keeps serving rather than cascade panics.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn deliver(&self, pending: PendingDelivery) -> DeliveryOutcome {
        let lost = self
            .lock()
            .faults
            .lost_destinations
            .contains(&pending.destination);
        let outcome = if lost {
            debug!(destination = %pending.destination, "mturk-double: notification lost on purpose");
            DeliveryOutcome::Lost
        } else if pending.transport != "SQS" {
            DeliveryOutcome::NotSimulated
        } else if let Some(sqs) = &self.sqs {
            match sqs
                .send_message()
                .queue_url(&pending.destination)
                .message_body(&pending.body)
                .send()
                .await
            {
                Ok(sent) => DeliveryOutcome::Sent {
                    message_id: sent.message_id,
                },
                Err(error) => {
                    let error = DisplayErrorContext(&error).to_string();
                    warn!(destination = %pending.destination, %error, "mturk-double: notification delivery failed");
                    DeliveryOutcome::Failed(error)
                }
            }
        } else {
            warn!(destination = %pending.destination, "mturk-double: no SQS client, notification not delivered");
            DeliveryOutcome::Failed("the double was started without an SQS client".to_owned())
        };
        self.lock().deliveries.push(Delivery {
            destination: pending.destination,
            transport: pending.transport,
            event_type: pending.event_type,
            body: pending.body,
            outcome: outcome.clone(),
        });
        outcome
    }
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A running MTurk double. Clones share one server and one state; the server
/// stops on [`MturkDouble::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct MturkDouble {
    inner: Arc<Inner>,
}

impl MturkDouble {
    /// Serves on `127.0.0.1` at a free port, in a background task of the
    /// current Tokio runtime. `sqs` delivers notifications (queue URLs as
    /// destinations); without it deliveries fail silently, as with a wrong
    /// queue policy.
    pub async fn start(sqs: Option<aws_sdk_sqs::Client>) -> io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), sqs).await
    }

    /// Like [`MturkDouble::start`] on a chosen address (a fixed port for a
    /// local run of the whole stack).
    pub async fn start_on(addr: SocketAddr, sqs: Option<aws_sdk_sqs::Client>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                model: Model::default(),
                faults: Faults::default(),
                calls: Vec::new(),
                call_counts: HashMap::new(),
                record_bodies: true,
                deliveries: Vec::new(),
                requests: 0,
            }),
            sqs,
            gates: Mutex::new(Vec::new()),
        });
        let server = tokio::spawn(wire::serve(listener, shared.clone())).abort_handle();
        Ok(MturkDouble {
            inner: Arc::new(Inner {
                shared,
                addr,
                server,
            }),
        })
    }

    /// `http://127.0.0.1:PORT`, for the SDK's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Stops accepting and closes open connections. State stays readable.
    pub fn shutdown(&self) {
        self.inner.server.abort();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.shared.lock()
    }

    // ----- seeding -----

    /// A new HIT type id, known to the account (so notification settings can
    /// be attached to it).
    pub fn new_hit_type_id(&self) -> String {
        self.lock().model.new_hit_type()
    }

    /// A HIT of this HIT type with default [`HitOptions`]; the HIT type is
    /// registered if it is new. Returns the HIT id.
    pub fn create_hit(&self, hit_type_id: &str) -> String {
        self.create_hit_with(hit_type_id, HitOptions::default())
    }

    /// A HIT posted the way another tool posts one (psiTurk, the requester
    /// website): its HIT type is derived from its properties, as
    /// `CreateHITType` derives it (same properties, same id). The
    /// requirements are taken as given, unchecked, so that a test can post
    /// what MTurk may show. Returns (HIT id, HIT type id).
    pub fn post_hit(&self, options: HitOptions) -> (String, String) {
        let mut state = self.lock();
        let hit_type = state.model.hit_type_for(model::HitTypeProps::of(&options));
        let hit = state
            .model
            .create_hit(&hit_type, options, SystemTime::now());
        (hit, hit_type)
    }

    /// The HIT stops taking workers (no longer Assignable), as when its
    /// lifetime runs out.
    pub fn expire_hit(&self, hit_id: &str) {
        self.lock().model.expire_hit(hit_id);
    }

    /// The HIT's `QualificationRequirements` as the API shows them.
    pub fn requirements_of(&self, hit_id: &str) -> Option<Vec<Value>> {
        self.lock()
            .model
            .hit(hit_id)
            .map(|hit| hit.options.qualification_requirements.clone())
    }

    pub fn create_hit_with(&self, hit_type_id: &str, options: HitOptions) -> String {
        self.lock()
            .model
            .create_hit(hit_type_id, options, SystemTime::now())
    }

    /// A worker submits an assignment on the HIT. If the HIT type has an
    /// active notification setting that includes `AssignmentSubmitted`, the
    /// notification is delivered (and awaited) before this returns.
    pub async fn submit_assignment(
        &self,
        hit_id: &str,
        worker_id: &str,
    ) -> Result<Submission, DoubleError> {
        if !api::is_worker_id(worker_id) {
            return Err(DoubleError::InvalidWorkerId(worker_id.to_owned()));
        }
        let now = SystemTime::now();
        let (assignment_id, hit_type_id, pending) = {
            let mut state = self.lock();
            let model = &mut state.model;
            let hit = match model.hit(hit_id) {
                None => return Err(DoubleError::UnknownHit(hit_id.to_owned())),
                Some(hit) if hit.disposed => {
                    return Err(DoubleError::HitDisposed(hit_id.to_owned()))
                }
                Some(hit) => hit,
            };
            let hit_type_id = hit.hit_type_id.clone();
            if model
                .worked
                .contains(&(hit_id.to_owned(), worker_id.to_owned()))
            {
                return Err(DoubleError::AlreadyWorked {
                    hit_id: hit_id.to_owned(),
                    worker_id: worker_id.to_owned(),
                });
            }
            let assignment_id = model
                .add_assignment(hit_id, worker_id, AssignmentStatus::Submitted, now)
                .ok_or_else(|| DoubleError::UnknownHit(hit_id.to_owned()))?;
            let setting = model
                .notifications
                .get(&hit_type_id)
                .filter(|s| s.wants("AssignmentSubmitted"))
                .cloned();
            let pending = match setting {
                Some(setting) => {
                    let counter = model.next("event-doc");
                    let body = document(
                        counter,
                        "AssignmentSubmitted",
                        now,
                        EventIds {
                            hit_type_id: &hit_type_id,
                            hit_id,
                            assignment_id: &assignment_id,
                        },
                    );
                    Some(PendingDelivery {
                        destination: setting.destination,
                        transport: setting.transport,
                        event_type: "AssignmentSubmitted".to_owned(),
                        body,
                    })
                }
                None => None,
            };
            (assignment_id, hit_type_id, pending)
        };
        let (notification, delivery) = match pending {
            Some(pending) => {
                let body = pending.body.clone();
                let outcome = self.inner.shared.deliver(pending).await;
                (Some(body), Some(outcome))
            }
            None => (None, None),
        };
        Ok(Submission {
            assignment_id,
            hit_type_id,
            notification,
            delivery,
        })
    }

    /// Seeds a HIT under a given id, as sample events name real-looking ids.
    pub fn create_hit_with_id(&self, hit_id: &str, hit_type_id: &str) -> String {
        self.lock().model.create_hit_as(
            hit_id.to_owned(),
            hit_type_id,
            HitOptions::default(),
            SystemTime::now(),
        )
    }

    /// Seeds an assignment under a given id (no notification is sent).
    pub fn add_assignment_with_id(
        &self,
        assignment_id: &str,
        hit_id: &str,
        worker_id: &str,
        status: AssignmentStatus,
    ) {
        let added = self.lock().model.add_assignment_as(
            assignment_id.to_owned(),
            hit_id,
            worker_id,
            status,
            SystemTime::now(),
        );
        if added.is_none() {
            panic!("mturk-double: add_assignment_with_id on unknown HIT {hit_id}");
        }
    }

    /// Seeds an assignment without any notification (history that predates
    /// the system under test). Allows any worker id and repeat workers.
    ///
    /// # Panics
    /// If no HIT `hit_id` was created: that is a mistake in the test.
    pub fn add_assignment(
        &self,
        hit_id: &str,
        worker_id: &str,
        status: AssignmentStatus,
    ) -> String {
        let id = self
            .lock()
            .model
            .add_assignment(hit_id, worker_id, status, SystemTime::now());
        match id {
            Some(id) => id,
            None => panic!("mturk-double: add_assignment on unknown HIT {hit_id}"),
        }
    }

    /// Seeds an assignment submitted at `submitted` (no notification): the
    /// history of a requester account from before the system under test
    /// was deployed. A HIT posted now with work submitted days ago is not
    /// what MTurk would list, but nothing the double serves compares the two.
    ///
    /// # Panics
    /// If no HIT `hit_id` was created: that is a mistake in the test.
    pub fn add_assignment_submitted_at(
        &self,
        hit_id: &str,
        worker_id: &str,
        status: AssignmentStatus,
        submitted: SystemTime,
    ) -> String {
        let id = self
            .lock()
            .model
            .add_assignment(hit_id, worker_id, status, submitted);
        match id {
            Some(id) => id,
            None => panic!("mturk-double: add_assignment_submitted_at on unknown HIT {hit_id}"),
        }
    }

    /// The HIT and its assignments vanish from the API, as MTurk disposes of
    /// HITs 120 days after creation. Unknown ids are ignored.
    pub fn dispose_hit(&self, hit_id: &str) {
        self.lock().model.dispose_hit(hit_id);
    }

    /// An active qualification type owned by the account.
    ///
    /// # Panics
    /// If the account already has a type of this name.
    pub fn create_qualification_type(&self, name: &str) -> String {
        let id = {
            let mut state = self.lock();
            let model = &mut state.model;
            if model.qual_name_taken(name) {
                None
            } else {
                Some(model.add_qual_type(model::QualType {
                    id: String::new(),
                    name: name.to_owned(),
                    description: format!("Seeded qualification type {name}"),
                    keywords: None,
                    status: "Active".to_owned(),
                    auto_granted: false,
                    auto_granted_value: None,
                    creation: SystemTime::now(),
                    test: None,
                    answer_key: None,
                    test_duration: None,
                    retry_delay: None,
                }))
            }
        };
        match id {
            Some(id) => id,
            None => panic!("mturk-double: a qualification type named {name:?} already exists"),
        }
    }

    /// Seeds a worker holding the qualification (granted now, with `value`).
    ///
    /// # Panics
    /// If the qualification type does not exist.
    pub fn grant(&self, qualification_type_id: &str, worker_id: &str, value: i32) {
        let known = {
            let mut state = self.lock();
            let known = state.model.qual_type(qualification_type_id).is_some();
            if known {
                state
                    .model
                    .grant(qualification_type_id, worker_id, value, SystemTime::now());
            }
            known
        };
        assert!(
            known,
            "mturk-double: grant of unknown qualification type {qualification_type_id}"
        );
    }

    /// Makes the API refuse this worker id with `ParameterValidationError`,
    /// as MTurk does for a production worker id used in the sandbox (and the
    /// reverse).
    pub fn treat_as_foreign_worker(&self, worker_id: &str) {
        self.lock()
            .model
            .foreign_workers
            .insert(worker_id.to_owned());
    }

    // ----- observation -----

    /// Every request so far, in order of arrival.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn calls_to(&self, operation: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|call| call.operation == operation)
            .cloned()
            .collect()
    }

    /// Requests to `operation` so far, whatever their outcome; cheap.
    pub fn call_count(&self, operation: &str) -> usize {
        self.lock().call_counts.get(operation).copied().unwrap_or(0)
    }

    /// Requests to any operation so far.
    pub fn total_calls(&self) -> usize {
        self.lock().calls.len()
    }

    /// Forgets recorded calls and their counts (the model is untouched).
    pub fn clear_calls(&self) {
        let mut state = self.lock();
        state.calls.clear();
        state.call_counts.clear();
    }

    /// With `false`, calls are still recorded and counted but their bodies
    /// are not kept (`Call::request` is `Null`), for long benchmarks.
    pub fn set_record_bodies(&self, record: bool) {
        self.lock().record_bodies = record;
    }

    pub fn qualification(&self, qualification_type_id: &str, worker_id: &str) -> Option<Grant> {
        self.lock()
            .model
            .grant_of(qualification_type_id, worker_id)
            .cloned()
    }

    /// Every worker ever granted the type (revoked ones included), in order of
    /// their first grant.
    pub fn workers_with(&self, qualification_type_id: &str) -> Vec<(String, Grant)> {
        let state = self.lock();
        match state.model.holders.get(qualification_type_id) {
            Some(holders) => holders
                .order
                .iter()
                .filter_map(|worker| {
                    holders
                        .grants
                        .get(worker)
                        .map(|grant| (worker.clone(), grant.clone()))
                })
                .collect(),
            None => Vec::new(),
        }
    }

    pub fn notification_setting(&self, hit_type_id: &str) -> Option<NotificationSetting> {
        self.lock().model.notifications.get(hit_type_id).cloned()
    }

    /// Every notification document produced so far, with its fate.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    pub fn hit_type_of(&self, hit_id: &str) -> Option<String> {
        self.lock()
            .model
            .hit(hit_id)
            .map(|hit| hit.hit_type_id.clone())
    }

    // ----- faults -----

    /// An account-wide token bucket of `requests_per_second` with about one
    /// second of burst; requests beyond it get `ThrottlingException`. `None`
    /// removes the limit.
    pub fn throttle_above(&self, requests_per_second: Option<f64>) {
        self.lock().faults.throttle_above(requests_per_second);
    }

    /// The account-wide bucket of [`MturkDouble::throttle_above`] empty now,
    /// as when another script of the lab has just spent it: requests are
    /// admitted only as it refills.
    pub fn empty_bucket(&self) {
        self.lock().faults.empty_bucket();
    }

    /// The next `count` requests, whatever their operation, throttled: a
    /// start whose first calls MTurk throttles (with two instances starting
    /// at once, each one's first call for `count` 2).
    pub fn throttle_first(&self, count: usize) {
        self.fail_next(None, count, Fault::Throttle);
    }

    /// The next `count` requests to `operation` (any operation for `None`) get
    /// `fault`. Queued faults are used in the order they were queued.
    pub fn fail_next(&self, operation: Option<&str>, count: usize, fault: Fault) {
        self.lock().faults.fail_next(operation, count, fault);
    }

    /// About `fraction` of the requests to `operation` get `fault`, chosen by a
    /// PRNG seeded with `seed` (the same requests every run). Replaces an
    /// earlier rule for the same operation; a fraction of 0 removes it.
    pub fn fail_fraction(&self, operation: Option<&str>, fraction: f64, fault: Fault, seed: u64) {
        self.lock()
            .faults
            .fail_fraction(operation, fraction, fault, seed);
    }

    /// Added before every answer (and before a dropped connection closes).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().faults.latency = latency;
    }

    /// Notifications to this destination are silently dropped, as when the
    /// queue policy does not let MTurk send.
    pub fn lose_deliveries_to(&self, queue_url: &str) {
        self.lock()
            .faults
            .lost_destinations
            .insert(queue_url.to_owned());
    }

    /// Holds the next `count` calls to `operation` before they take effect,
    /// until the returned gate is opened.
    pub fn hold_next(&self, operation: &str, count: usize) -> Gate {
        let gate = Gate {
            arrived: Arc::new(tokio::sync::Semaphore::new(0)),
            open: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        self.inner
            .shared
            .gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((operation.to_owned(), count, gate.clone()));
        gate
    }

    /// Removes every fault: queued and random faults, throttling, latency and
    /// lost destinations.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }
}
