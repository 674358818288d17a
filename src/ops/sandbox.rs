//! A first sandbox study: one small HIT in the requester sandbox that
//! carries the pool's requirement, its HIT type subscribed, so a lab can
//! take it as a sandbox worker and see itself excluded (`status`) seconds
//! later, before it has a study of its own.
//!
//! Only for the sandbox: the caller refuses production (real workers would
//! be paid for it). The HIT asks one question and submits only to MTurk's
//! own hosts.

use serde::Serialize;

use crate::ids::{HitId, HitTypeId};
use crate::ledger::LedgerError;
use crate::mturk::{HitProperties, MturkError};
use crate::ops::{coverage, subscribe, Lab};

/// How long the HIT stays up: a day is enough to try the path.
const LIFETIME_SECS: i64 = 24 * 3600;
/// A lab can try it from a few sandbox worker accounts.
const MAX_ASSIGNMENTS: i32 = 9;

/// The HIT type's properties: visible to sandbox workers only.
fn properties() -> HitProperties {
    HitProperties {
        title: "mturk-exclusion: try the exclusion path (sandbox)".into(),
        description: "One question. Submit it as a sandbox worker, then run \
                      `mturk-exclusion status`: you are excluded from the lab's next study."
            .into(),
        reward: "0.01".into(),
        assignment_duration_secs: 600,
        auto_approval_delay_secs: Some(3600),
        keywords: Some("mturk-exclusion, sandbox".into()),
    }
}

/// The HIT's page: a preview says what it is; after accept, one answer
/// posted to MTurk's `externalSubmit` on MTurk's own hosts only.
pub const QUESTION: &str = r#"<HTMLQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"><HTMLContent><![CDATA[<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Try the exclusion path</title></head>
<body>
<p>This sandbox HIT tries the lab's exclusion path: once you submit it, the lab's
qualification is granted to you, and its next study is hidden from you.</p>
<form id="f" method="post"><input type="hidden" name="assignmentId" id="a">
<label>Anything: <input name="answer" value="tried"></label>
<button id="s" type="submit" disabled>Submit</button></form>
<p id="m"></p>
<script>
var q = new URLSearchParams(location.search), id = q.get("assignmentId") || "";
var to = q.get("turkSubmitTo") || "";
var hosts = ["https://workersandbox.mturk.com", "https://www.mturk.com"];
if (id === "" || id === "ASSIGNMENT_ID_NOT_AVAILABLE") {
  document.getElementById("m").textContent = "Accept the HIT to submit it.";
} else if (hosts.indexOf(to.replace(/\/+$/, "")) < 0) {
  document.getElementById("m").textContent = "This page submits only to MTurk.";
} else {
  document.getElementById("a").value = id;
  document.getElementById("f").action = to.replace(/\/+$/, "") + "/mturk/externalSubmit";
  document.getElementById("s").disabled = false;
}
</script></body></html>]]></HTMLContent><FrameHeight>400</FrameHeight></HTMLQuestion>"#;

/// The study posted.
#[derive(Debug, Clone, Serialize)]
pub struct Study {
    pub hit_id: HitId,
    pub hit_type_id: HitTypeId,
    /// Where a sandbox worker finds it.
    pub worker_link: String,
    /// Whether its HIT type now notifies the queue; if not, the watch
    /// subscribes it within `WatchMinutes`.
    pub subscribed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Mturk(#[from] MturkError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The sandbox worker site's page of a HIT type's tasks.
pub fn worker_link(hit_type: &HitTypeId) -> String {
    format!("https://workersandbox.mturk.com/projects/{hit_type}/tasks")
}

/// Makes the HIT type (the pool's requirement on it), points it at
/// `queue_url`, then posts the HIT: subscribed first, so its first
/// submission is already notified.
pub async fn post_study(lab: &Lab, queue_url: &str) -> Result<Study, SandboxError> {
    let requirement = coverage::pool_requirement(&lab.qualification);
    let hit_type = lab
        .mturk
        .create_hit_type(&properties(), &[requirement])
        .await?;
    let subscribed = subscribe::subscribe(&lab.mturk, &lab.ledger, &hit_type, queue_url).await?;
    let hit = lab
        .mturk
        .create_hit(&hit_type, QUESTION, MAX_ASSIGNMENTS, LIFETIME_SECS)
        .await?;
    Ok(Study {
        hit_id: hit.hit_id,
        worker_link: worker_link(&hit_type),
        hit_type_id: hit_type,
        subscribed: subscribed.subscribed,
        subscribe_error: subscribed.error,
    })
}
