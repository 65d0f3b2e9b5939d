//! The dispatch engine of Stratus (in progress).
//!
//! Landed so far, each pure and tested on its own:
//! - [`request`]: the HTTP request an attempt sends (cloud-tasks-api.md §6.5): method, URL with
//!   the queue's `uri_override`, headers in their layers (task, queue overrides, service
//!   headers), body rules.
//! - [`oidc`]: the signing key, OIDC ID tokens for targets and the discovery/JWKS documents.
//!
//! Still to come (DESIGN.md §4): the scheduler (due-time index per queue), the pusher (shared
//! HTTP client, rate limits, deadlines) and the completer (batched outcome writes).

pub mod oidc;
pub mod request;
