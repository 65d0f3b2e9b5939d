//! The dispatch engine of Stratus: delivers stored tasks to their HTTP targets with Cloud
//! Tasks' semantics (cloud-tasks-api.md §6).
//!
//! - [`engine`]: the [`Engine`](engine::Engine) — one actor per queue holding a due-time index
//!   fed by store scans and by the service layer's notifications (`DispatchHook`).
//! - [`attempt`]: one attempt — request, deadline, outcome classification.
//! - [`request`]: the HTTP request an attempt sends (§6.5): method, URL with the queue's
//!   `uri_override`, headers in their layers (task, queue overrides, service headers), body.
//! - [`auth`]: bearer tokens for OIDC (signed with Stratus' own key) and OAuth tasks.
//! - [`oidc`]: the signing key, OIDC ID tokens and the discovery/JWKS documents.
//! - [`outbound`]: where tasks may be sent — every connection, redirect hop and resolved
//!   address checked against the outbound policy.
//! - [`origin`]: proof of origin for receivers — per-queue shared-secret header and HMAC
//!   signature.
//! - [`timer`]: time, real or virtual (tests run minutes of retries in milliseconds).
//!
//! Outcomes are written through the store, whose writer group-commits them with creates
//! (DESIGN.md §4).

mod actor;
pub mod attempt;
pub mod auth;
pub mod engine;
pub mod oidc;
pub mod origin;
pub mod outbound;
pub mod request;
pub mod timer;
