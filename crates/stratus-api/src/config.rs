//! Settings of the API layer.

use stratus_store::Windows;
use stratus_types::Micros;
use stratus_types::time::SECOND;

/// Settings of the API layer; [`Default`] gives the Cloud Tasks values.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Tombstone window for task names and reuse block for queue names.
    /// Default: 1 hour and 7 days.
    pub windows: Windows,
    /// Location IDs answered by ListLocations. Queues may live in any location. Default `["local"]`.
    pub locations: Vec<String>,
    /// Largest task accepted, as its encoded proto size. Default 1 MiB.
    pub max_task_bytes: usize,
    /// Furthest schedule_time accepted, from now. Default 30 days.
    pub max_schedule_ahead: Micros,
    /// Largest REST request body read. Default 4 MiB (room for a 1 MiB body in base64 JSON).
    pub max_request_bytes: usize,
    /// How long finished Operations (batch RPCs) stay readable. Default 1 day.
    pub operation_ttl: Micros,
    /// Where tasks may be sent (docs/outbound.md): task URLs and queue `uri_override` hosts
    /// that are IP literals in a denied range, or outside their project's allow-list, are
    /// refused at create. Shared with the dispatcher, which checks every connection. Default:
    /// the built-in policy (link-local, metadata and unspecified ranges denied, no allow-lists).
    pub targets: std::sync::Arc<stratus_types::target::TargetPolicy>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            windows: Windows {
                tombstone_ttl: 3600 * SECOND,
                queue_reuse_block: 7 * 24 * 3600 * SECOND,
                retain_succeeded: 3600 * SECOND,
                retain_failed: 7 * 24 * 3600 * SECOND,
            },
            locations: vec!["local".to_string()],
            max_task_bytes: 1 << 20,
            max_schedule_ahead: 30 * 24 * 3600 * SECOND,
            max_request_bytes: 4 << 20,
            operation_ttl: 24 * 3600 * SECOND,
            targets: Default::default(),
        }
    }
}
