//! Stratus' queue statistics, beyond Cloud Tasks: what each queue of a location did over the
//! last minute (creates, attempts and their outcomes, retries, attempts in flight), added up
//! over every node of a cluster. The dashboard's rates come from here (docs/dashboard.md).
//!
//! The figures are counted in memory by each node (`stratus_metrics::window`); the other
//! nodes' come from what they publish in the store every few seconds
//! ([`stratus_store::Store::peer_stats`]), so they may lag by that much.

use serde::Serialize;
use stratus_metrics::window::{self, Merged};
use stratus_types::{LocationPath, Status};

use super::{Ctx, Service, map_store};

/// One queue's last minute, as JSON (`{"queue":"projects/…/queues/q","windowSeconds":60,…}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    /// Full queue name.
    pub queue: String,
    /// The span the counts cover, in seconds: 60 once the nodes have known the queue that
    /// long (sampled every 5 s, so 55 to 60), less just after a start.
    pub window_seconds: f64,
    /// Tasks created.
    pub creates: u64,
    /// Attempts started (dispatches and RunTask).
    pub dispatches: u64,
    /// Attempts answered with a 2xx.
    pub succeeded: u64,
    /// Attempts that ended any other way: another status, a timeout, no answer.
    pub failed: u64,
    /// Failed attempts whose task was scheduled again.
    pub retries: u64,
    /// Failed attempts that left their task failed for good.
    pub permanent_failures: u64,
    /// Attempts in flight now.
    pub in_flight: i64,
    /// Tasks created per second over the window.
    pub create_rate: f64,
    /// Attempts started per second over the window.
    pub dispatch_rate: f64,
    /// How many nodes reported activity of the queue.
    pub nodes: u32,
}

impl QueueStats {
    fn new(queue: String, m: Merged) -> Self {
        // Rates to three decimals: the JSON stays short and the figures stay honest.
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        QueueStats {
            queue,
            window_seconds: round(m.span_ms as f64 / 1000.0),
            creates: m.counts.creates,
            dispatches: m.counts.dispatches,
            succeeded: m.counts.succeeded,
            failed: m.counts.failed,
            retries: m.counts.retries,
            permanent_failures: m.counts.permanent_failures,
            in_flight: m.in_flight,
            create_rate: round(m.create_rate),
            dispatch_rate: round(m.dispatch_rate),
            nodes: m.nodes,
        }
    }
}

/// The statistics of a location, as JSON: `{"queueStats":[…]}`, by queue name. Queues with
/// nothing in the last minute and nothing in flight are left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQueueStatsResponse {
    /// One entry per queue with activity.
    pub queue_stats: Vec<QueueStats>,
}

impl Service {
    /// The last minute of every queue of `location` with activity, over every node.
    /// Errors: INVALID_ARGUMENT for a malformed location, UNAVAILABLE when the store cannot
    /// give the other nodes' figures.
    pub async fn queue_stats(&self, location: &str) -> Result<ListQueueStatsResponse, Status> {
        let location = LocationPath::parse(location, "parent")?;
        let prefix = format!("{location}/queues/");
        let mut windows = stratus_metrics::global().windows(&prefix);
        let peers = self
            .store
            .peer_stats()
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        for text in peers {
            windows.extend(
                window::decode(&text)
                    .into_iter()
                    .filter(|w| w.queue.starts_with(&prefix)),
            );
        }
        Ok(ListQueueStatsResponse {
            queue_stats: window::merge(windows)
                .into_iter()
                .map(|(q, m)| QueueStats::new(q, m))
                .collect(),
        })
    }
}
