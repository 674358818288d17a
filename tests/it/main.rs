//! The library's integration tests, one binary (each test binary links the
//! AWS SDKs, which is what a 2-core machine spends its time on). They run
//! against the local services that `scripts/test.sh` starts: DynamoDB Local,
//! the SQS stand-in and the MTurk double, through `testkit::pipeline`.

mod events;
mod faults;
mod history;
mod hostile_input;
mod indexes;
mod ops;
mod parser_properties;
mod pipeline;
mod races;
mod rate;
mod watch;
