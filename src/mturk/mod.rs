//! The lab's MTurk account, as the pipeline and the CLI use it.
//!
//! A concrete wrapper over `aws_sdk_mturk::Client` that owns three promises:
//! every call waits for the per-instance rate limit (through one helper for
//! single calls and one for pages, which also tell the limiter how MTurk
//! took each call and retry throttled calls in-process); a grant never emails the
//! worker (`SendNotification=false`, set here and nowhere else); and every
//! failure is classified as throttling, transient, or MTurk refusing the
//! request, so callers decide between retrying and giving up.

//!
//! - `calls`: how calls are counted and throttled ones retried;
//! - `convert`: what MTurk answers, checked into this module's types, and
//!   what is sent, built from them;
//! - `error`: [`MturkError`] and how an SDK failure is classified.

mod calls;
mod convert;
mod error;

pub(crate) use calls::ThrottlesGoToTheLimiter;
pub use calls::{counting_calls, retrying_throttles_until, CallCount, THROTTLE_BUDGET};
pub use error::{redact_worker, MturkError, MturkErrorKind};

use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_sdk_mturk::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_mturk::types::{
    AssignmentStatus, EventType, QualificationStatus, QualificationTypeStatus,
};
use futures::{Stream, TryStreamExt};
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::debug;

use self::calls::{throttle_deadline, CALLS, MAX_THROTTLED_ATTEMPTS};
use self::convert::{assignment_from, hit_from, requirement_to, specification};
use self::error::{classify, TurkCoded};
use crate::ids::{AssignmentId, HitId, HitTypeId, QualificationTypeId, WorkerId};
use crate::rate::RateLimiter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MturkEnvironment {
    Sandbox,
    Production,
}

impl MturkEnvironment {
    /// As the CLI prints it and `status --json` names it.
    pub fn name(self) -> &'static str {
        match self {
            MturkEnvironment::Sandbox => "sandbox",
            MturkEnvironment::Production => "production",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            MturkEnvironment::Sandbox => "https://mturk-requester-sandbox.us-east-1.amazonaws.com",
            MturkEnvironment::Production => "https://mturk-requester.us-east-1.amazonaws.com",
        }
    }
}

/// A submitted (or approved, or rejected) assignment, as MTurk reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub assignment_id: AssignmentId,
    pub worker_id: WorkerId,
    pub hit_id: HitId,
    pub hit_type_id: Option<HitTypeId>,
    pub status: String,
    pub submit_time: Option<OffsetDateTime>,
}

/// MTurk's version of the notification document, the only one it sends.
pub const NOTIFICATION_VERSION: &str = "2014-08-15";

/// A HIT, as far as the lab's tools need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub hit_id: HitId,
    pub hit_type_id: HitTypeId,
    pub title: Option<String>,
    pub status: HitStatus,
    /// As MTurk lists them, odd values and all: `ops::coverage` sorts them,
    /// nothing here refuses them.
    pub requirements: Vec<Requirement>,
    /// What its HIT type is made of, when MTurk gave all of it (a HIT type
    /// like it can then be made, `coverage --fix`).
    pub properties: Option<HitProperties>,
}

/// Where a HIT is in its life, as MTurk names it. Which statuses count for
/// what is asked of [`HitStatus::is_offered`] and
/// [`HitStatus::may_have_submissions`], nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HitStatus {
    /// Offered to workers: they can find, preview and accept it.
    Assignable,
    /// Every assignment is taken, some still being worked on.
    Unassignable,
    /// Every assignment is submitted, or the HIT expired.
    Reviewable,
    /// The requester marked it as being reviewed.
    Reviewing,
    /// Deleted, or disposed of 120 days after creation: ListHITs may still
    /// name it for a while, but its assignments are gone.
    Disposed,
    /// A status this version does not know (or none), as MTurk wrote it:
    /// MTurk may add one, and a HIT is never refused for it.
    Other(String),
}

impl HitStatus {
    /// Offered to workers now (Assignable): a HIT the lab's excluded
    /// workers could take, so the one the unguarded count, the guard and
    /// `coverage` look at.
    pub fn is_offered(&self) -> bool {
        matches!(self, HitStatus::Assignable)
    }

    /// May have submissions to exclude, now or later: anything not
    /// Disposed, whatever the lab did with it since (an Unassignable HIT's
    /// workers are still at work, a Reviewable or Reviewing one keeps its
    /// submitted assignments), and a status this version does not know.
    /// The HITs the watch and `subscribe --all-active` cover.
    pub fn may_have_submissions(&self) -> bool {
        !matches!(self, HitStatus::Disposed)
    }

    /// As MTurk writes it.
    pub fn as_str(&self) -> &str {
        match self {
            HitStatus::Assignable => "Assignable",
            HitStatus::Unassignable => "Unassignable",
            HitStatus::Reviewable => "Reviewable",
            HitStatus::Reviewing => "Reviewing",
            HitStatus::Disposed => "Disposed",
            HitStatus::Other(other) => other,
        }
    }
}

impl From<&str> for HitStatus {
    fn from(status: &str) -> Self {
        match status {
            "Assignable" => HitStatus::Assignable,
            "Unassignable" => HitStatus::Unassignable,
            "Reviewable" => HitStatus::Reviewable,
            "Reviewing" => HitStatus::Reviewing,
            "Disposed" => HitStatus::Disposed,
            other => HitStatus::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for HitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of a HIT's `QualificationRequirements`, values kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirement {
    pub qualification_type_id: String,
    pub comparator: String,
    pub integer_values: Vec<i32>,
    pub locale_values: Vec<Locale>,
    pub actions_guarded: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale {
    pub country: String,
    pub subdivision: Option<String>,
}

/// What MTurk derives a HIT type from, besides its requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitProperties {
    pub title: String,
    pub description: String,
    pub reward: String,
    pub assignment_duration_secs: i64,
    pub auto_approval_delay_secs: Option<i64>,
    pub keywords: Option<String>,
}

/// What revoking came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Now,
    /// The worker did not hold the qualification (never granted, or already revoked).
    NotHeld,
}

#[derive(Clone)]
pub struct Mturk {
    client: aws_sdk_mturk::Client,
    limiter: Arc<RateLimiter>,
}

impl Mturk {
    pub fn new(client: aws_sdk_mturk::Client, limiter: Arc<RateLimiter>) -> Self {
        Mturk { client, limiter }
    }

    /// The limiter every call waits for, for logs and tests.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// THE way to make one MTurk call: waits for the limiter's slot, tells
    /// the limiter how MTurk took it, and retries a throttled call in its
    /// next slot while the deadline ([`retrying_throttles_until`]) allows.
    async fn call<T, E, R, F, Fut>(&self, operation: &'static str, send: F) -> Result<T, MturkError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + TurkCoded + StdError + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.call_starting_by(operation, None, send).await
    }

    /// [`Mturk::call`], where no attempt may start after `start_by` (checked
    /// after the limiter's wait, right before each attempt is sent).
    async fn call_starting_by<T, E, R, F, Fut>(
        &self,
        operation: &'static str,
        start_by: Option<Instant>,
        send: F,
    ) -> Result<T, MturkError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + TurkCoded + StdError + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let deadline = match start_by {
            Some(t) => throttle_deadline().min(t),
            None => throttle_deadline(),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = self.limiter.acquire().await;
            if start_by.is_some_and(|t| Instant::now() > t) {
                return Err(MturkError {
                    operation,
                    kind: MturkErrorKind::Transient,
                    message: "not sent: it could not start in time".to_owned(),
                    source: None,
                });
            }
            let _ = CALLS.try_with(|c| c.sent.fetch_add(1, Ordering::Relaxed));
            let result = send().await.map_err(|e| classify(operation, e));
            match &result {
                Err(e) if e.kind == MturkErrorKind::Throttled => {
                    let _ = CALLS.try_with(|c| c.throttled.fetch_add(1, Ordering::Relaxed));
                    self.limiter.throttled(&permit);
                    let next = self.limiter.next_slot();
                    if attempt < MAX_THROTTLED_ATTEMPTS && next < deadline {
                        debug!(
                            operation,
                            attempt,
                            rate = self.limiter.snapshot().rate,
                            "throttled; retrying in the next slot"
                        );
                        continue;
                    }
                }
                // Timeouts and faults say nothing about MTurk's rate.
                Err(e) if e.kind == MturkErrorKind::Transient => {}
                // Answered, even if with a refusal: MTurk took the call.
                _ => self.limiter.succeeded(&permit),
            }
            return result;
        }
    }

    /// THE way to read a paginated list: every page through [`Mturk::call`].
    /// `fetch` sends one page's request for a `NextToken`.
    fn pages<'a, P, E, R, F, Fut>(
        &'a self,
        operation: &'static str,
        fetch: F,
        next_token: fn(&P) -> Option<&str>,
    ) -> impl Stream<Item = Result<P, MturkError>> + 'a
    where
        P: 'a,
        F: Fn(Option<String>) -> Fut + Clone + 'a,
        Fut: Future<Output = Result<P, SdkError<E, R>>> + 'a,
        E: ProvideErrorMetadata + TurkCoded + StdError + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        // State: the token of the next page to fetch (`None` for the
        // first), or no next page at all.
        futures::stream::try_unfold(Some(None::<String>), move |state| {
            let fetch = fetch.clone();
            async move {
                let Some(token) = state else {
                    return Ok(None);
                };
                let page = self.call(operation, || fetch(token.clone())).await?;
                // A repeated token would loop forever; MTurk's paginators stop too.
                let next = next_token(&page)
                    .filter(|t| !t.is_empty() && Some(*t) != token.as_deref())
                    .map(|t| Some(t.to_owned()));
                Ok(Some((page, next)))
            }
        })
    }

    /// Who did an assignment. MTurk only answers for Submitted, Approved or
    /// Rejected assignments.
    pub async fn assignment(&self, id: &AssignmentId) -> Result<Assignment, MturkError> {
        const OP: &str = "GetAssignment";
        let out = self
            .call(OP, || {
                self.client
                    .get_assignment()
                    .assignment_id(id.as_str())
                    .send()
            })
            .await?;
        let hit_type_id = out
            .hit
            .and_then(|h| h.hit_type_id)
            .map(|t| HitTypeId::parse(&t))
            .transpose()
            .map_err(|e| MturkError::unusable(OP, e))?;
        let mut a = out.assignment.ok_or_else(|| MturkError {
            operation: OP,
            kind: MturkErrorKind::Unusable,
            message: format!("answer for assignment {id} has no Assignment"),
            source: None,
        })?;
        // The assignment asked about, whatever the answer repeats of its id.
        a.assignment_id = Some(id.as_str().to_owned());
        assignment_from(OP, a, hit_type_id.as_ref())
    }

    /// Grants the exclusion qualification, silently.
    ///
    /// `SendNotification` defaults to true on MTurk, which emails the worker;
    /// this is the only place the project grants, and it always says false.
    /// Granting again is harmless, which is what makes redelivery safe.
    pub async fn exclude(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
    ) -> Result<(), MturkError> {
        self.exclude_starting_by(worker, qualification, None).await
    }

    /// [`Mturk::exclude`], sent (every attempt of it, throttle retries
    /// included) only while `start_by` has not passed: the exclusion path's
    /// grant window, which a release waits out before revoking.
    pub async fn exclude_starting_by(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        start_by: Option<Instant>,
    ) -> Result<(), MturkError> {
        self.call_starting_by("AssociateQualificationWithWorker", start_by, || {
            self.client
                .associate_qualification_with_worker()
                .qualification_type_id(qualification.as_str())
                .worker_id(worker.as_str())
                .integer_value(1)
                .send_notification(false)
                .send()
        })
        .await
        .map_err(|e| e.without_worker(worker))?;
        Ok(())
    }

    /// Revokes the exclusion qualification. With no `reason` MTurk sends no
    /// email; with one, the worker is emailed the reason.
    pub async fn release(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        reason: Option<&str>,
    ) -> Result<Revoked, MturkError> {
        let result = self
            .call("DisassociateQualificationFromWorker", || {
                self.client
                    .disassociate_qualification_from_worker()
                    .qualification_type_id(qualification.as_str())
                    .worker_id(worker.as_str())
                    .set_reason(reason.map(str::to_owned))
                    .send()
            })
            .await
            .map_err(|e| e.without_worker(worker));
        match result {
            Ok(_) => Ok(Revoked::Now),
            Err(e)
                if e.turk_error_code() == Some("AWS.MechanicalTurk.QualificationDoesNotExist") =>
            {
                Ok(Revoked::NotHeld)
            }
            Err(e) => Err(e),
        }
    }

    /// One HIT, with its HIT type. A disposed or unknown HIT is `Rejected`
    /// with `AWS.MechanicalTurk.HITDoesNotExist` ([`MturkError::is_hit_gone`]).
    pub async fn hit(&self, id: &HitId) -> Result<Hit, MturkError> {
        const OP: &str = "GetHIT";
        let out = self
            .call(OP, || self.client.get_hit().hit_id(id.as_str()).send())
            .await?;
        let hit = out.hit.ok_or_else(|| MturkError {
            operation: OP,
            kind: MturkErrorKind::Unusable,
            message: format!("no HIT in the answer for {id}"),
            source: None,
        })?;
        hit_from(OP, hit)
    }

    /// Posts a HIT of a HIT type `create_hit_type` made: it takes on that
    /// type's properties (requirements included). `question` is an
    /// HTMLQuestion or ExternalQuestion document.
    pub async fn create_hit(
        &self,
        hit_type: &HitTypeId,
        question: &str,
        max_assignments: i32,
        lifetime_secs: i64,
    ) -> Result<Hit, MturkError> {
        const OP: &str = "CreateHITWithHITType";
        let out = self
            .call(OP, || {
                self.client
                    .create_hit_with_hit_type()
                    .hit_type_id(hit_type.as_str())
                    .question(question)
                    .max_assignments(max_assignments)
                    .lifetime_in_seconds(lifetime_secs)
                    .send()
            })
            .await?;
        let hit = out.hit.ok_or_else(|| MturkError {
            operation: OP,
            kind: MturkErrorKind::Unusable,
            message: "no HIT in the answer".into(),
            source: None,
        })?;
        hit_from(OP, hit)
    }

    /// Every Submitted, Approved or Rejected assignment of a HIT, all pages.
    /// `on_page` hears the running count, for progress.
    pub async fn assignments_for_hit(
        &self,
        hit: &Hit,
        mut on_page: impl FnMut(usize),
    ) -> Result<Vec<Assignment>, MturkError> {
        const OP: &str = "ListAssignmentsForHIT";
        let pages = self.pages(
            OP,
            |token| {
                self.client
                    .list_assignments_for_hit()
                    .hit_id(hit.hit_id.as_str())
                    .assignment_statuses(AssignmentStatus::Submitted)
                    .assignment_statuses(AssignmentStatus::Approved)
                    .assignment_statuses(AssignmentStatus::Rejected)
                    .max_results(100)
                    .set_next_token(token)
                    .send()
            },
            |p| p.next_token(),
        );
        let mut pages = std::pin::pin!(pages);
        let mut all = Vec::new();
        while let Some(page) = pages.try_next().await? {
            for a in page.assignments.unwrap_or_default() {
                all.push(assignment_from(OP, a, Some(&hit.hit_type_id))?);
            }
            on_page(all.len());
        }
        Ok(all)
    }

    /// Every HIT the account still has (MTurk disposes of them 120 days after creation).
    pub async fn hits(&self) -> Result<Vec<Hit>, MturkError> {
        const OP: &str = "ListHITs";
        let pages = self.pages(
            OP,
            |token| {
                self.client
                    .list_hits()
                    .max_results(100)
                    .set_next_token(token)
                    .send()
            },
            |p| p.next_token(),
        );
        let mut pages = std::pin::pin!(pages);
        let mut all = Vec::new();
        while let Some(page) = pages.try_next().await? {
            for h in page.hits.unwrap_or_default() {
                all.push(hit_from(OP, h)?);
            }
        }
        Ok(all)
    }

    /// Workers holding the qualification as Granted, all pages. Ids MTurk
    /// answers that are not plausible come back separately, not as an error.
    pub async fn workers_with(
        &self,
        qualification: &QualificationTypeId,
    ) -> Result<(Vec<WorkerId>, Vec<String>), MturkError> {
        let pages = self.pages(
            "ListWorkersWithQualificationType",
            |token| {
                self.client
                    .list_workers_with_qualification_type()
                    .qualification_type_id(qualification.as_str())
                    .status(QualificationStatus::Granted)
                    .max_results(100)
                    .set_next_token(token)
                    .send()
            },
            |p| p.next_token(),
        );
        let mut pages = std::pin::pin!(pages);
        let (mut workers, mut odd) = (Vec::new(), Vec::new());
        while let Some(page) = pages.try_next().await? {
            for q in page.qualifications.unwrap_or_default() {
                let raw = q.worker_id.unwrap_or_default();
                match WorkerId::parse(&raw) {
                    Ok(w) => workers.push(w),
                    Err(_) => odd.push(raw),
                }
            }
        }
        Ok((workers, odd))
    }

    /// Whether a qualification type exists and belongs to this account.
    pub async fn qualification_type_exists(
        &self,
        id: &QualificationTypeId,
    ) -> Result<bool, MturkError> {
        let result = self
            .call("GetQualificationType", || {
                self.client
                    .get_qualification_type()
                    .qualification_type_id(id.as_str())
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.turk_error_code()
                    == Some("AWS.MechanicalTurk.QualificationTypeDoesNotExist") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The account's own qualification type with exactly this name, if any.
    pub async fn find_qualification_type(
        &self,
        name: &str,
    ) -> Result<Option<QualificationTypeId>, MturkError> {
        const OP: &str = "ListQualificationTypes";
        let pages = self.pages(
            OP,
            |token| {
                self.client
                    .list_qualification_types()
                    .query(name)
                    .must_be_requestable(false)
                    .must_be_owned_by_caller(true)
                    .max_results(100)
                    .set_next_token(token)
                    .send()
            },
            |p| p.next_token(),
        );
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.try_next().await? {
            for q in page.qualification_types.unwrap_or_default() {
                if q.name.as_deref() == Some(name) {
                    let id = q.qualification_type_id.unwrap_or_default();
                    return QualificationTypeId::parse(&id)
                        .map(Some)
                        .map_err(|e| MturkError::unusable(OP, e));
                }
            }
        }
        Ok(None)
    }

    /// Creates an Active, not auto-granted, qualification type. Its name is
    /// unique in the account and visible to workers.
    pub async fn create_qualification_type(
        &self,
        name: &str,
        description: &str,
    ) -> Result<QualificationTypeId, MturkError> {
        const OP: &str = "CreateQualificationType";
        let out = self
            .call(OP, || {
                self.client
                    .create_qualification_type()
                    .name(name)
                    .description(description)
                    .qualification_type_status(QualificationTypeStatus::Active)
                    .auto_granted(false)
                    .send()
            })
            .await?;
        let id = out
            .qualification_type
            .and_then(|q| q.qualification_type_id)
            .unwrap_or_default();
        QualificationTypeId::parse(&id).map_err(|e| MturkError::unusable(OP, e))
    }

    /// Points a HIT type's AssignmentSubmitted notifications at a queue,
    /// with AssignmentReturned and AssignmentAbandoned (they end the
    /// accept-time check's claims), replacing any earlier setting.
    pub async fn subscribe(&self, hit_type: &HitTypeId, queue_url: &str) -> Result<(), MturkError> {
        let notification = specification(
            queue_url,
            &[
                EventType::AssignmentSubmitted,
                EventType::AssignmentReturned,
                EventType::AssignmentAbandoned,
            ],
        )?;
        self.call("UpdateNotificationSettings", || {
            self.client
                .update_notification_settings()
                .hit_type_id(hit_type.as_str())
                .notification(notification.clone())
                .active(true)
                .send()
        })
        .await?;
        Ok(())
    }

    /// The HIT type of these properties and requirements: MTurk answers the
    /// existing one when it already has it, so asking twice is harmless.
    pub async fn create_hit_type(
        &self,
        properties: &HitProperties,
        requirements: &[Requirement],
    ) -> Result<HitTypeId, MturkError> {
        const OP: &str = "CreateHITType";
        let requirements = requirements
            .iter()
            .map(requirement_to)
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .call(OP, || {
                self.client
                    .create_hit_type()
                    .title(&properties.title)
                    .description(&properties.description)
                    .reward(&properties.reward)
                    .assignment_duration_in_seconds(properties.assignment_duration_secs)
                    .set_auto_approval_delay_in_seconds(properties.auto_approval_delay_secs)
                    .set_keywords(properties.keywords.clone())
                    .set_qualification_requirements(Some(requirements.clone()))
                    .send()
            })
            .await?;
        HitTypeId::parse(out.hit_type_id.as_deref().unwrap_or_default())
            .map_err(|e| MturkError::unusable(OP, e))
    }

    /// Moves a HIT to another HIT type, whose properties (requirements
    /// included) it takes on; assignments already taken stay.
    pub async fn update_hit_type_of_hit(
        &self,
        hit: &HitId,
        hit_type: &HitTypeId,
    ) -> Result<(), MturkError> {
        self.call("UpdateHITTypeOfHIT", || {
            self.client
                .update_hit_type_of_hit()
                .hit_id(hit.as_str())
                .hit_type_id(hit_type.as_str())
                .send()
        })
        .await?;
        Ok(())
    }

    /// Turns a HIT type's notifications off.
    pub async fn unsubscribe(&self, hit_type: &HitTypeId) -> Result<(), MturkError> {
        self.call("UpdateNotificationSettings", || {
            self.client
                .update_notification_settings()
                .hit_type_id(hit_type.as_str())
                .active(false)
                .send()
        })
        .await?;
        Ok(())
    }

    /// Asks MTurk to send one Ping test event to a queue. It tests the
    /// destination, not a HIT type: the event carries placeholder ids.
    pub async fn send_test_event(&self, queue_url: &str) -> Result<(), MturkError> {
        let notification = specification(
            queue_url,
            &[
                EventType::AssignmentSubmitted,
                EventType::AssignmentReturned,
                EventType::AssignmentAbandoned,
            ],
        )?;
        self.call("SendTestEventNotification", || {
            self.client
                .send_test_event_notification()
                .notification(notification.clone())
                .test_event_type(EventType::Ping)
                .send()
        })
        .await?;
        Ok(())
    }

    /// The account's balance: the cheapest call that proves the credentials
    /// reach this MTurk environment.
    pub async fn balance(&self) -> Result<String, MturkError> {
        let out = self
            .call("GetAccountBalance", || {
                self.client.get_account_balance().send()
            })
            .await?;
        Ok(out.available_balance.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_assignable_is_offered_and_only_disposed_has_no_submissions() {
        let asked = |s: &str| {
            let status = HitStatus::from(s);
            assert_eq!(status.as_str(), s, "kept as MTurk wrote it");
            (status.is_offered(), status.may_have_submissions())
        };
        assert_eq!(asked("Assignable"), (true, true));
        assert_eq!(asked("Unassignable"), (false, true));
        assert_eq!(asked("Reviewable"), (false, true));
        assert_eq!(asked("Reviewing"), (false, true));
        assert_eq!(asked("Disposed"), (false, false));
        // A status MTurk may add one day, or none at all: never offered
        // as far as we know, and covered in case it has submissions.
        assert_eq!(asked("Archived"), (false, true));
        assert_eq!(asked(""), (false, true));
        assert_eq!(HitStatus::from("Reviewing"), HitStatus::Reviewing);
    }
}
