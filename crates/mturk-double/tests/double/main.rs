//! The double's tests, one binary (each test binary links the SDKs again):
//! how the real `aws-sdk-mturk` client sees the double's answers.
//!
//! - `protocol`: the wire protocol itself, spoken raw (targets, content
//!   types, error shapes);
//! - `operations`: each operation's answers and `RequestError`s;
//! - `pagination`: `NextToken` paging as MTurk does it;
//! - `faults`: injected errors, throttling, dropped connections, timeouts;
//! - `notifications`: documents delivered to SQS as MTurk sends them;
//! - `hit_types`: CreateHITType, UpdateHITTypeOfHIT and what ListHITs shows of them.

mod common;
mod faults;
mod hit_types;
mod notifications;
mod operations;
mod pagination;
mod protocol;
