//! The Cloud Tasks v2 API of Stratus: one service layer and its transports.
//!
//! - [`service`]: [`Service`] implements every RPC over proto request/response messages,
//!   validates input at the edge into typed names, calls the [`stratus_store::Store`] and maps
//!   store outcomes to the exact Cloud Tasks errors. Transports never touch the store.
//! - [`rest`]: the HTTP/JSON transcoding under `/v2/` (axum), proto3 JSON in and out.
//! - [`grpc`]: the same RPCs over gRPC (tonic), routed by content-type on the REST port.
//! - [`auth`]: API tokens, roles and projects as tenants, checked by both transports.
//! - [`config`]: the knobs of the API ([`ServiceConfig`]).
//! - [`metrics`]: `GET /metrics` and the API's counting of calls, creates and auth failures.

pub mod auth;
pub mod config;
pub mod grpc;
pub mod metrics;
pub mod rest;
pub mod service;

pub use config::ServiceConfig;
pub use service::Service;
