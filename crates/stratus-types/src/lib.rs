//! Domain nouns and pure logic shared by every Stratus crate. No I/O, no clock reads.
//!
//! - [`code`]: the google.rpc code subset and its HTTP/gRPC mappings ([`Code`], [`Status`]).
//! - [`names`]: typed resource names ([`LocationPath`], [`QueuePath`], [`TaskPath`]) and their parsers.
//! - [`time`]: microsecond timestamps and conversions to and from protobuf `Timestamp`/`Duration`.
//! - [`queue`]: queue defaults, validation and the ListQueues filter.
//! - [`messages`]: the exact error texts the real Cloud Tasks service answers.
//! - [`retry`]: the retry schedule (backoff, stop rules, Retry-After).
//! - [`rate`]: the per-queue token bucket.
//! - [`target`]: the outbound target policy (denied ranges, per-project allow-lists).

pub mod code;
pub mod messages;
pub mod names;
pub mod queue;
pub mod rate;
pub mod retry;
pub mod target;
pub mod time;

pub use code::{Code, HelpLink, Status};
pub use names::{LocationPath, QueuePath, TaskPath};
pub use stratus_proto as proto;
pub use time::Micros;
