//! mturk-exclusion: never the same worker twice.
//!
//! MTurk notifies an SQS queue when a worker submits an assignment of one of
//! the lab's HIT types; the Lambda in `crates/handler` looks the
//! worker up, records the participation in a DynamoDB ledger and grants the
//! lab's exclusion qualification, silently. HITs then require that
//! qualification with `DoesNotExist`, so the worker never sees the lab's
//! next study.
//!
//! Map of the crate:
//! - [`ids`]: MTurk ids as newtypes, validated at the boundary.
//! - [`notification`]: MTurk's notification document, parsed per record.
//! - [`config`]: the handler's environment, read once at cold start, and the one
//!   environment reader ([`config::Env`]) of all three functions.
//! - [`aws`]: SDK clients with one HTTP client, timeouts and bounded retries;
//!   [`aws::Clients`], built once per cold start, from which [`ops::Lab`] is the
//!   one set-up of the handler and the watch.
//! - [`rate`]: the per-instance limit on MTurk calls.
//! - [`mturk`]: the lab's MTurk account: look up, grant (never emailing); what a HIT's
//!   status means ([`mturk::HitStatus`]); MTurk's errors, the conversions and the call
//!   counting in files of their own.
//! - [`ledger`]: the DynamoDB table; the only module that knows its attributes,
//!   one file per kind of item it keeps: [`ledger::participation`] (who took
//!   part in what), [`ledger::exclusion`] (who is excluded, and the lease,
//!   grant window and settlement that exclude them), [`ledger::subscription`]
//!   (HIT types pointed at the queue, and their backfills),
//!   [`ledger::heartbeat`] (test events that came through), [`ledger::config`]
//!   (the lab's own customer, the pool's MTurk rate, the watch's last run) and
//!   [`ledger::claims`] (the accept-time check's claims).
//! - [`exclusion`]: the one path that excludes a worker, shared by the Lambda and the CLI.
//! - [`handler`]: one SQS batch in, one outcome per record out.
//! - [`ops`]: the admin CLI's rules, one module per command family:
//!   - [`ops::release`]: whom a release frees and whom it keeps (exclusion
//!     wins), acting only on the plan shown, re-checked just before acting;
//!   - [`ops::reconcile`]: the ledger against MTurk, each difference classified and fixed;
//!   - [`ops::backfill`]: `exclude`'s gathering (HITs, HIT types, files, workers by hand)
//!     and its real and dry runs, both through [`exclusion::decide`], on the one
//!     backfill engine ([`ops::backfill::engine`]: a HIT's submissions listed, workers
//!     run with a deadline and a failure streak, outcomes counted as the handler's
//!     [`exclusion::Tally`]) that the watch runs too;
//!   - [`ops::redrive`]: the dead-letter queue, peeked at and moved back without losing a message;
//!   - [`ops::export`]: each worker's standing, spreadsheet-safe CSV cells;
//!   - [`ops::report`]: the ledger as one self-contained HTML page;
//!   - [`ops::status`]: the ledger and the queues summed up, and what needs attention
//!     (the queues read through [`ops::queues`]);
//!   - [`ops::subscribe`]: the round trip that proves the notification path, and
//!     where a test event got stuck when it did not come back;
//!   - [`ops::coverage`]: each HIT sorted by its requirements (ours, another
//!     list's, unguarded), and the fix that guards a live unguarded HIT;
//!   - [`ops::sandbox`]: a first sandbox study that carries the pool's requirement;
//!   - [`ops::watch`]: one run of the `exclusion-watch` Lambda: every HIT type
//!     nobody subscribed is subscribed and backfilled (through the engine),
//!     unguarded HITs counted.
//! - [`check`]: the accept-time check a HIT page asks (the `exclusion-check` Lambda).
//! - [`metrics`]: CloudWatch Embedded Metric Format lines, for both functions.
//! - `lambda` (feature `lambda`): what only the Lambda binaries need, such as
//!   reporting an init error to the Runtime API; the CLI never links it.
//!
//! The deployables are thin crates around this one: `crates/handler`
//! (the SQS Lambda), `crates/check` (the Function URL Lambda),
//! `crates/watch` (the scheduled Lambda, [`ops::watch`]) and `crates/cli`
//! (the admin CLI, whose commands call [`ops`]).

#![deny(clippy::too_many_lines)]

pub mod aws;
pub mod check;
pub mod config;
pub mod exclusion;
pub mod handler;
pub mod ids;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod ledger;
pub mod metrics;
pub mod mturk;
pub mod notification;
pub mod ops;
pub mod rate;
