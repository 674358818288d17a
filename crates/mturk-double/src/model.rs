//! The requester account the double simulates: HIT types, HITs, assignments,
//! qualification types, grants and notification settings, and how they look
//! as MTurk JSON.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::ids::{entity_id, IdKind};

/// The status of a seeded or submitted assignment. `Accepted` assignments are
/// in progress: the API never shows them (MTurk answers as if they did not exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssignmentStatus {
    Accepted,
    Submitted,
    Approved,
    Rejected,
}

impl AssignmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentStatus::Accepted => "Accepted",
            AssignmentStatus::Submitted => "Submitted",
            AssignmentStatus::Approved => "Approved",
            AssignmentStatus::Rejected => "Rejected",
        }
    }

    /// Only the statuses the API accepts in `AssignmentStatuses`.
    pub(crate) fn from_api(value: &str) -> Option<Self> {
        match value {
            "Submitted" => Some(AssignmentStatus::Submitted),
            "Approved" => Some(AssignmentStatus::Approved),
            "Rejected" => Some(AssignmentStatus::Rejected),
            _ => None,
        }
    }

    pub(crate) fn visible(self) -> bool {
        self != AssignmentStatus::Accepted
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantStatus {
    Granted,
    Revoked,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Granted => "Granted",
            GrantStatus::Revoked => "Revoked",
        }
    }
}

/// A worker's hold on a qualification type.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub integer_value: i32,
    pub status: GrantStatus,
    /// When it was last granted (a revoke leaves it unchanged).
    pub grant_time: SystemTime,
}

/// The notification setting of one HIT type, as stored by `UpdateNotificationSettings`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationSetting {
    pub destination: String,
    pub transport: String,
    pub version: String,
    pub event_types: Vec<String>,
    pub active: bool,
}

impl NotificationSetting {
    pub(crate) fn wants(&self, event_type: &str) -> bool {
        self.active && self.event_types.iter().any(|e| e == event_type)
    }
}

/// Properties of a seeded HIT. The double does not refuse submissions beyond
/// `max_assignments`: the HIT reports a `MaxAssignments` large enough for the
/// assignments it has, so load tests can pour any number into one HIT.
#[derive(Clone, Debug)]
pub struct HitOptions {
    pub title: String,
    pub description: String,
    pub reward: String,
    pub max_assignments: u32,
    pub lifetime: Duration,
    pub assignment_duration: Duration,
    pub auto_approval_delay: Duration,
    pub requester_annotation: Option<String>,
    pub keywords: String,
    /// `QualificationRequirements` exactly as the API shows them. Seeded
    /// from Rust without validation, so tests can post what other tools
    /// (or MTurk itself) may hold: unknown comparators, empty lists, locales.
    pub qualification_requirements: Vec<Value>,
}

impl Default for HitOptions {
    fn default() -> Self {
        HitOptions {
            title: "Decision-making study (about 10 minutes)".to_owned(),
            description: "Answer a short series of questions about everyday choices.".to_owned(),
            reward: "0.50".to_owned(),
            max_assignments: 100,
            lifetime: Duration::from_secs(7 * 24 * 3600),
            assignment_duration: Duration::from_secs(3600),
            auto_approval_delay: Duration::from_secs(3 * 24 * 3600),
            requester_annotation: None,
            keywords: "survey, study, research".to_owned(),
            qualification_requirements: Vec::new(),
        }
    }
}

/// What a HIT type is made of: MTurk derives the HIT type from exactly
/// these, so equal properties give the same HIT type id.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HitTypeProps {
    pub title: String,
    pub description: String,
    pub reward: String,
    pub assignment_duration: Duration,
    pub auto_approval_delay: Duration,
    pub keywords: String,
    pub qualification_requirements: Vec<Value>,
}

impl HitTypeProps {
    pub(crate) fn of(options: &HitOptions) -> Self {
        HitTypeProps {
            title: options.title.clone(),
            description: options.description.clone(),
            reward: options.reward.clone(),
            assignment_duration: options.assignment_duration,
            auto_approval_delay: options.auto_approval_delay,
            keywords: options.keywords.clone(),
            qualification_requirements: options.qualification_requirements.clone(),
        }
    }

    /// One string per distinct set of properties (requirements in order).
    fn key(&self) -> String {
        json!([
            self.title,
            self.description,
            self.reward,
            self.assignment_duration.as_secs(),
            self.auto_approval_delay.as_secs(),
            self.keywords,
            self.qualification_requirements,
        ])
        .to_string()
    }

    /// A HIT takes on its (new) HIT type's properties.
    pub(crate) fn apply_to(&self, options: &mut HitOptions) {
        options.title = self.title.clone();
        options.description = self.description.clone();
        options.reward = self.reward.clone();
        options.assignment_duration = self.assignment_duration;
        options.auto_approval_delay = self.auto_approval_delay;
        options.keywords = self.keywords.clone();
        options.qualification_requirements = self.qualification_requirements.clone();
    }
}

/// FNV-1a: stable across runs and Rust versions, unlike std's hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) struct Hit {
    pub id: String,
    pub hit_type_id: String,
    pub group_id: String,
    pub options: HitOptions,
    pub creation: SystemTime,
    pub disposed: bool,
    /// Assignment ids in creation order; listings page over positions in it.
    pub assignments: Vec<String>,
    /// Kept up to date on insert so describing a HIT with tens of thousands of
    /// assignments stays O(1) (statuses never change after insert).
    pub pending: u64,
    pub submitted: u64,
    pub completed: u64,
}

pub(crate) struct Assignment {
    pub id: String,
    pub hit_id: String,
    pub worker_id: String,
    pub status: AssignmentStatus,
    pub accept_time: SystemTime,
    pub submit_time: Option<SystemTime>,
    pub approval_time: Option<SystemTime>,
    pub rejection_time: Option<SystemTime>,
}

pub(crate) struct QualType {
    pub id: String,
    pub name: String,
    pub description: String,
    pub keywords: Option<String>,
    pub status: String,
    pub auto_granted: bool,
    pub auto_granted_value: Option<i32>,
    pub creation: SystemTime,
    pub test: Option<String>,
    pub answer_key: Option<String>,
    pub test_duration: Option<i64>,
    pub retry_delay: Option<i64>,
}

#[derive(Default)]
pub(crate) struct Holders {
    /// Workers in order of their first grant; listings page over positions in it.
    pub order: Vec<String>,
    pub grants: HashMap<String, Grant>,
}

#[derive(Default)]
pub(crate) struct Model {
    counters: HashMap<&'static str, u64>,
    /// HIT type id → HIT group id.
    pub hit_types: HashMap<String, String>,
    /// The properties of HIT types made from properties (CreateHITType, or a
    /// HIT posted with options); HIT types seeded by id have none.
    pub hit_type_props: HashMap<String, HitTypeProps>,
    pub hits: Vec<Hit>,
    pub hit_index: HashMap<String, usize>,
    pub assignments: HashMap<String, Assignment>,
    /// (HIT id, worker id): a worker works on a HIT at most once.
    pub worked: HashSet<(String, String)>,
    pub qual_types: Vec<QualType>,
    pub qual_index: HashMap<String, usize>,
    pub holders: HashMap<String, Holders>,
    pub notifications: HashMap<String, NotificationSetting>,
    pub foreign_workers: HashSet<String>,
}

impl Model {
    pub(crate) fn next(&mut self, counter: &'static str) -> u64 {
        let slot = self.counters.entry(counter).or_insert(0);
        *slot += 1;
        *slot
    }

    fn new_id(&mut self, kind: IdKind) -> String {
        let name = match kind {
            IdKind::HitType => "hit-type",
            IdKind::HitGroup => "hit-group",
            IdKind::Hit => "hit",
            IdKind::Assignment => "assignment",
            IdKind::QualificationType => "qualification-type",
            IdKind::Placeholder => "placeholder",
        };
        let n = self.next(name);
        entity_id(kind, n)
    }

    pub(crate) fn placeholder_id(&mut self) -> String {
        self.new_id(IdKind::Placeholder)
    }

    pub(crate) fn register_hit_type(&mut self, hit_type_id: &str) {
        if !self.hit_types.contains_key(hit_type_id) {
            let group = self.new_id(IdKind::HitGroup);
            self.hit_types.insert(hit_type_id.to_owned(), group);
        }
    }

    pub(crate) fn new_hit_type(&mut self) -> String {
        let id = self.new_id(IdKind::HitType);
        self.register_hit_type(&id);
        id
    }

    /// The HIT type of these properties: the same id for the same
    /// properties, as MTurk's CreateHITType answers.
    pub(crate) fn hit_type_for(&mut self, props: HitTypeProps) -> String {
        // The top bit keeps these apart from the counter-made ids.
        let id = entity_id(IdKind::HitType, fnv1a(&props.key()) | 1 << 63);
        self.register_hit_type(&id);
        self.hit_type_props.entry(id.clone()).or_insert(props);
        id
    }

    /// Moves a HIT to another HIT type, whose properties it takes on.
    pub(crate) fn change_hit_type(&mut self, hit_id: &str, hit_type_id: &str) {
        let group = self.hit_types.get(hit_type_id).cloned().unwrap_or_default();
        let props = self.hit_type_props.get(hit_type_id).cloned();
        if let Some(hit) = self
            .hit_index
            .get(hit_id)
            .and_then(|&i| self.hits.get_mut(i))
        {
            hit.hit_type_id = hit_type_id.to_owned();
            hit.group_id = group;
            if let Some(props) = props {
                props.apply_to(&mut hit.options);
            }
        }
    }

    pub(crate) fn create_hit(
        &mut self,
        hit_type_id: &str,
        options: HitOptions,
        now: SystemTime,
    ) -> String {
        let id = self.new_id(IdKind::Hit);
        self.create_hit_as(id, hit_type_id, options, now)
    }

    /// Like `create_hit`, with the caller's HIT id (sample events name theirs).
    pub(crate) fn create_hit_as(
        &mut self,
        id: String,
        hit_type_id: &str,
        options: HitOptions,
        now: SystemTime,
    ) -> String {
        self.register_hit_type(hit_type_id);
        let group_id = self.hit_types.get(hit_type_id).cloned().unwrap_or_default();
        self.hit_index.insert(id.clone(), self.hits.len());
        self.hits.push(Hit {
            id: id.clone(),
            hit_type_id: hit_type_id.to_owned(),
            group_id,
            options,
            creation: now,
            disposed: false,
            assignments: Vec::new(),
            pending: 0,
            submitted: 0,
            completed: 0,
        });
        id
    }

    pub(crate) fn hit(&self, hit_id: &str) -> Option<&Hit> {
        self.hit_index.get(hit_id).and_then(|&i| self.hits.get(i))
    }

    /// A HIT the API can still see.
    pub(crate) fn live_hit(&self, hit_id: &str) -> Option<&Hit> {
        self.hit(hit_id).filter(|hit| !hit.disposed)
    }

    /// The HIT stops taking workers (its lifetime ends now), as
    /// `UpdateExpirationForHIT` to the past does.
    pub(crate) fn expire_hit(&mut self, hit_id: &str) {
        if let Some(hit) = self
            .hit_index
            .get(hit_id)
            .and_then(|&i| self.hits.get_mut(i))
        {
            hit.options.lifetime = Duration::ZERO;
        }
    }

    pub(crate) fn dispose_hit(&mut self, hit_id: &str) {
        if let Some(&i) = self.hit_index.get(hit_id) {
            if let Some(hit) = self.hits.get_mut(i) {
                hit.disposed = true;
            }
        }
    }

    /// Adds an assignment; the caller has checked that the HIT exists.
    pub(crate) fn add_assignment(
        &mut self,
        hit_id: &str,
        worker_id: &str,
        status: AssignmentStatus,
        now: SystemTime,
    ) -> Option<String> {
        let id = self.new_id(IdKind::Assignment);
        self.add_assignment_as(id, hit_id, worker_id, status, now)
    }

    /// Like `add_assignment`, with the caller's assignment id.
    pub(crate) fn add_assignment_as(
        &mut self,
        id: String,
        hit_id: &str,
        worker_id: &str,
        status: AssignmentStatus,
        now: SystemTime,
    ) -> Option<String> {
        let index = *self.hit_index.get(hit_id)?;
        let hit = self.hits.get_mut(index)?;
        hit.assignments.push(id.clone());
        match status {
            AssignmentStatus::Accepted => hit.pending += 1,
            AssignmentStatus::Submitted => hit.submitted += 1,
            AssignmentStatus::Approved | AssignmentStatus::Rejected => hit.completed += 1,
        }
        // Workers take a few minutes on a study; the exact figure only has to
        // put AcceptTime before SubmitTime.
        let accept_time = now.checked_sub(Duration::from_secs(7 * 60)).unwrap_or(now);
        let submitted = status != AssignmentStatus::Accepted;
        self.assignments.insert(
            id.clone(),
            Assignment {
                id: id.clone(),
                hit_id: hit_id.to_owned(),
                worker_id: worker_id.to_owned(),
                status,
                accept_time,
                submit_time: submitted.then_some(now),
                approval_time: (status == AssignmentStatus::Approved).then_some(now),
                rejection_time: (status == AssignmentStatus::Rejected).then_some(now),
            },
        );
        self.worked
            .insert((hit_id.to_owned(), worker_id.to_owned()));
        Some(id)
    }

    pub(crate) fn qual_type(&self, id: &str) -> Option<&QualType> {
        self.qual_index
            .get(id)
            .and_then(|&i| self.qual_types.get(i))
    }

    pub(crate) fn qual_name_taken(&self, name: &str) -> bool {
        self.qual_types.iter().any(|q| q.name == name)
    }

    pub(crate) fn add_qual_type(&mut self, mut qual: QualType) -> String {
        let id = self.new_id(IdKind::QualificationType);
        qual.id = id.clone();
        self.qual_index.insert(id.clone(), self.qual_types.len());
        self.qual_types.push(qual);
        id
    }

    pub(crate) fn grant(&mut self, qual_id: &str, worker_id: &str, value: i32, now: SystemTime) {
        let holders = self.holders.entry(qual_id.to_owned()).or_default();
        match holders.grants.get_mut(worker_id) {
            Some(grant) => {
                if grant.status == GrantStatus::Revoked {
                    grant.grant_time = now;
                }
                grant.status = GrantStatus::Granted;
                grant.integer_value = value;
            }
            None => {
                holders.order.push(worker_id.to_owned());
                holders.grants.insert(
                    worker_id.to_owned(),
                    Grant {
                        integer_value: value,
                        status: GrantStatus::Granted,
                        grant_time: now,
                    },
                );
            }
        }
    }

    /// `false` when the worker does not hold the qualification.
    pub(crate) fn revoke(&mut self, qual_id: &str, worker_id: &str) -> bool {
        match self
            .holders
            .get_mut(qual_id)
            .and_then(|h| h.grants.get_mut(worker_id))
        {
            Some(grant) if grant.status == GrantStatus::Granted => {
                grant.status = GrantStatus::Revoked;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn grant_of(&self, qual_id: &str, worker_id: &str) -> Option<&Grant> {
        self.holders.get(qual_id)?.grants.get(worker_id)
    }
}

/// MTurk timestamps are epoch seconds; milliseconds are kept as a fraction.
pub(crate) fn epoch(time: SystemTime) -> Value {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    json!(millis as f64 / 1000.0)
}

/// Seeded durations may be absurd (`Duration::MAX`); saturate rather than panic.
fn later(time: SystemTime, by: Duration) -> SystemTime {
    time.checked_add(by).unwrap_or(time)
}

fn secs(duration: Duration) -> Value {
    json!(duration.as_secs())
}

pub(crate) fn hit_json(hit: &Hit, now: SystemTime) -> Value {
    let (pending, submitted, completed) = (hit.pending, hit.submitted, hit.completed);
    let taken = pending + submitted + completed;
    let max = u64::from(hit.options.max_assignments).max(taken);
    let available = max - taken;
    let expiration = later(hit.creation, hit.options.lifetime);
    let status = if available > 0 && now < expiration {
        "Assignable"
    } else if pending > 0 {
        "Unassignable"
    } else {
        "Reviewable"
    };
    let mut out = Map::new();
    out.insert("HITId".into(), json!(hit.id));
    out.insert("HITTypeId".into(), json!(hit.hit_type_id));
    out.insert("HITGroupId".into(), json!(hit.group_id));
    out.insert("CreationTime".into(), epoch(hit.creation));
    out.insert("Title".into(), json!(hit.options.title));
    out.insert("Description".into(), json!(hit.options.description));
    out.insert("Keywords".into(), json!(hit.options.keywords));
    out.insert("HITStatus".into(), json!(status));
    out.insert("MaxAssignments".into(), json!(max));
    out.insert("Reward".into(), json!(hit.options.reward));
    out.insert(
        "AutoApprovalDelayInSeconds".into(),
        secs(hit.options.auto_approval_delay),
    );
    out.insert("Expiration".into(), epoch(expiration));
    out.insert(
        "AssignmentDurationInSeconds".into(),
        secs(hit.options.assignment_duration),
    );
    if let Some(annotation) = &hit.options.requester_annotation {
        out.insert("RequesterAnnotation".into(), json!(annotation));
    }
    out.insert(
        "QualificationRequirements".into(),
        Value::Array(hit.options.qualification_requirements.clone()),
    );
    out.insert("HITReviewStatus".into(), json!("NotReviewed"));
    out.insert("NumberOfAssignmentsPending".into(), json!(pending));
    out.insert("NumberOfAssignmentsAvailable".into(), json!(available));
    out.insert("NumberOfAssignmentsCompleted".into(), json!(completed));
    Value::Object(out)
}

pub(crate) fn assignment_json(assignment: &Assignment, hit: &Hit) -> Value {
    let mut out = Map::new();
    out.insert("AssignmentId".into(), json!(assignment.id));
    out.insert("WorkerId".into(), json!(assignment.worker_id));
    out.insert("HITId".into(), json!(assignment.hit_id));
    out.insert("AssignmentStatus".into(), json!(assignment.status.as_str()));
    out.insert("AcceptTime".into(), epoch(assignment.accept_time));
    out.insert(
        "Deadline".into(),
        epoch(later(
            assignment.accept_time,
            hit.options.assignment_duration,
        )),
    );
    if let Some(submit) = assignment.submit_time {
        out.insert(
            "AutoApprovalTime".into(),
            epoch(later(submit, hit.options.auto_approval_delay)),
        );
        out.insert("SubmitTime".into(), epoch(submit));
    }
    if let Some(approval) = assignment.approval_time {
        out.insert("ApprovalTime".into(), epoch(approval));
    }
    if let Some(rejection) = assignment.rejection_time {
        out.insert("RejectionTime".into(), epoch(rejection));
    }
    out.insert("Answer".into(), json!(answer_xml(&assignment.id)));
    Value::Object(out)
}

/// A QuestionFormAnswers document like an ExternalQuestion study produces: one
/// free-text completion code.
fn answer_xml(assignment_id: &str) -> String {
    let code: String = assignment_id.chars().rev().take(8).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"ASCII\"?><QuestionFormAnswers xmlns=\"http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd\"><Answer><QuestionIdentifier>completion_code</QuestionIdentifier><FreeText>{code}</FreeText></Answer></QuestionFormAnswers>"
    )
}

pub(crate) fn qual_type_json(qual: &QualType) -> Value {
    let mut out = Map::new();
    out.insert("QualificationTypeId".into(), json!(qual.id));
    out.insert("CreationTime".into(), epoch(qual.creation));
    out.insert("Name".into(), json!(qual.name));
    out.insert("Description".into(), json!(qual.description));
    out.insert(
        "Keywords".into(),
        json!(qual.keywords.clone().unwrap_or_default()),
    );
    out.insert("QualificationTypeStatus".into(), json!(qual.status));
    if let Some(test) = &qual.test {
        out.insert("Test".into(), json!(test));
    }
    if let Some(duration) = qual.test_duration {
        out.insert("TestDurationInSeconds".into(), json!(duration));
    }
    if let Some(answer_key) = &qual.answer_key {
        out.insert("AnswerKey".into(), json!(answer_key));
    }
    if let Some(delay) = qual.retry_delay {
        out.insert("RetryDelayInSeconds".into(), json!(delay));
    }
    out.insert("IsRequestable".into(), json!(true));
    out.insert("AutoGranted".into(), json!(qual.auto_granted));
    if qual.auto_granted {
        out.insert(
            "AutoGrantedValue".into(),
            json!(qual.auto_granted_value.unwrap_or(1)),
        );
    }
    Value::Object(out)
}

pub(crate) fn qualification_json(qual_id: &str, worker_id: &str, grant: &Grant) -> Value {
    json!({
        "QualificationTypeId": qual_id,
        "WorkerId": worker_id,
        "GrantTime": epoch(grant.grant_time),
        "IntegerValue": grant.integer_value,
        "Status": grant.status.as_str(),
    })
}
