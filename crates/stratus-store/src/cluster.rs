//! Cluster mode as the dispatcher sees it (DESIGN.md §4): which queues this node owns, and what
//! other nodes changed.
//!
//! A store shared by several nodes (PostgreSQL) runs a lease manager: every queue is owned by
//! one live node at a time through a lease with an epoch. The dispatcher of a node dispatches
//! exactly the queues it owns, and passes the lease epoch with every attempt outcome as a
//! fencing token ([`crate::dispatch::AttemptOutcome::fence`]): once another node has taken a
//! lease over, the old owner's late writes for that queue are refused.
//!
//! Creates, deletes and queue changes made through *this* node reach the dispatcher directly
//! through [`crate::hook::DispatchHook`]; those made through other nodes arrive as
//! [`ClusterEvent`]s (PostgreSQL: LISTEN/NOTIFY). Events are hints: when some may have been
//! lost, [`ClusterEvent::Resync`] tells the dispatcher to rescan every queue it owns.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio::sync::mpsc;

/// Something the dispatcher of this node must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// The queues this node owns now (full name → lease epoch); replaces the previous set.
    /// A queue left out must stop dispatching and, once nothing of it is in flight, be handed
    /// back with [`Cluster::released`].
    Owned(HashMap<String, i64>),
    /// Another node created tasks in `queue` (store rows; see [`crate::Store::live_tasks`]).
    TasksCreated {
        /// Full queue name.
        queue: String,
        /// The new task rows.
        rows: Vec<i64>,
    },
    /// Another node deleted tasks of `queue` by task ID.
    TasksDeleted {
        /// Full queue name.
        queue: String,
        /// Task IDs.
        ids: Vec<String>,
    },
    /// Another node created or changed `queue` (update, pause, resume, purge): reload it.
    QueueChanged {
        /// Full queue name.
        queue: String,
    },
    /// Another node deleted `queue`.
    QueueDeleted {
        /// Full queue name.
        queue: String,
    },
    /// Events may have been lost (the listener reconnected): rescan every owned queue.
    Resync,
}

/// A node's membership in a cluster.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// This node's ID (unique among live nodes).
    fn node_id(&self) -> &str;

    /// The event stream of this node. There is one; later calls get `None`.
    fn take_events(&self) -> Option<mpsc::Receiver<ClusterEvent>>;

    /// The dispatcher has stopped `queue` (no attempt of it in flight) after it was left out of
    /// [`ClusterEvent::Owned`]: the lease held under `epoch` may go to another node now.
    async fn released(&self, queue: &str, epoch: i64);

    /// Leaves the cluster at shutdown: gives up every lease at once so other nodes take the
    /// queues over without waiting for them to expire. Call after dispatching has stopped.
    async fn leave(&self);
}
