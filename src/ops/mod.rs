//! The admin operations: the rules behind the CLI's commands, tested without
//! the binary (cf. cargo's `ops`). A command parses its arguments, asks for
//! confirmation and prints; what to do, and to whom, is decided here.
//!
//! - [`release`]: whom releasing workers or HITs releases, whom it keeps
//!   (exclusion wins), and the release itself, re-checked just before it acts.
//! - [`reconcile`]: the ledger against MTurk: classify each difference, fix it.
//! - [`backfill`]: `exclude`'s gathering (HITs, HIT types, CSV rows, workers
//!   by hand) and its real and dry runs, both through `exclusion::decide`.
//! - [`redrive`]: peek at the dead-letter queue, and move its messages back
//!   to the queue, deleting each only after its copy was accepted.
//! - [`export`]: the rows of an export, each worker's standing, CSV cells
//!   made safe for spreadsheets.
//! - [`report`]: the ledger in one self-contained HTML page (charts in
//!   inline SVG), with no worker id unless asked for.
//! - [`status`]: what the ledger and the queues say now, and what of it needs
//!   attention.
//! - [`queues`]: the lab's SQS queues read: depths, and a queue's dead-letter
//!   queue (for `status`, `subscribe` and `redrive`).
//! - [`subscribe`]: which HIT types to point at the queue, the round trip that
//!   proves the notification path (is a test event the lab's own?), and why
//!   none came back.
//! - [`coverage`]: each HIT sorted by its requirements (ours, another list's,
//!   unguarded), and the fix that adds the pool's requirement to a live HIT.
//! - [`history`]: which earlier submissions are the pool's (from its start,
//!   or guarded by its lists), `adopt` for the rest, an earlier list carried
//!   over, and the watch's first run predicted before the deploy.
//! - [`sandbox`]: a first sandbox study carrying the pool's requirement, to
//!   try the path from an empty account.
//! - [`claims`]: the accept-time check's claims, counted for `status` and
//!   cleared by `clear-claim`.
//! - [`watch`]: the scheduled run that subscribes and backfills every HIT type
//!   nobody subscribed, and counts what it cannot fix.
//!
//! The operations that exclude or release work on a [`Lab`], built once by
//! the caller; the others take just the clients they read.

pub mod backfill;
pub mod claims;
pub mod coverage;
pub mod export;
pub mod history;
pub mod queues;
pub mod reconcile;
pub mod redrive;
pub mod release;
pub mod report;
pub mod sandbox;
pub mod status;
pub mod subscribe;
pub mod watch;

use crate::exclusion::Excluder;
use crate::ids::QualificationTypeId;
use crate::ledger::Ledger;
use crate::mturk::Mturk;

/// What the operations act on: the lab's MTurk account, its ledger and its
/// exclusion qualification, and the one path that excludes and releases.
#[derive(Clone)]
pub struct Lab {
    pub mturk: Mturk,
    pub ledger: Ledger,
    pub qualification: QualificationTypeId,
    pub excluder: Excluder,
}

impl Lab {
    /// The lab as a function configured by `config` sees it (the handler
    /// and the watch): its own adaptive MTurk limiter, the exclusion path's
    /// durations from the configuration. The one set-up of both functions.
    pub fn from_config(config: &crate::config::Config, clients: &crate::aws::Clients) -> Lab {
        let limiter = std::sync::Arc::new(crate::rate::RateLimiter::configured(
            config.mturk_max_rps,
            config.mturk_start_rps,
            config.max_concurrency,
        ));
        let mturk = Mturk::new(clients.mturk.clone(), limiter);
        let ledger = Ledger::new(clients.dynamodb.clone(), &config.table_name);
        let qualification = config.qualification_type_id.clone();
        Lab {
            excluder: Excluder::new(mturk.clone(), ledger.clone(), qualification.clone())
                .with_timing(crate::exclusion::Timing {
                    lease: config.assignment_lease,
                    grant_window: config.grant_window,
                }),
            mturk,
            ledger,
            qualification,
        }
    }

    pub fn new(mturk: Mturk, ledger: Ledger, qualification: QualificationTypeId) -> Lab {
        Lab {
            excluder: Excluder::new(mturk.clone(), ledger.clone(), qualification.clone()),
            mturk,
            ledger,
            qualification,
        }
    }
}

/// Progress of a long operation, for whoever watches (the CLI's bar).
pub trait Progress: Sync {
    /// How many steps there are.
    fn start(&self, _len: u64, _what: &str) {}
    fn inc(&self) {}
    fn message(&self, _text: String) {}
    fn finish(&self) {}
}

/// Nobody watching.
pub struct Quiet;

impl Progress for Quiet {}
