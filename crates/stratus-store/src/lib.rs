//! The storage seam of Stratus.
//!
//! [`Store`] is what the service layer (and later the dispatcher) needs from durable storage.
//! Each backend (`stratus-store-sqlite`, later PostgreSQL) implements it and must pass the one
//! [`conformance`] suite. Every call takes `now` from the caller: stores never read the clock,
//! so windows (tombstones, queue-name reuse) are testable without waiting.
//!
//! Semantics every implementation must keep:
//! - A write returns only after its transaction is durably committed.
//! - Task names are unique per queue among live tasks *and* finished tasks whose row is kept;
//!   a finished task blocks its name for `tombstone_ttl` after `finished_at`.
//! - A deleted queue blocks its name for `queue_reuse_block`; its tasks are gone at once.

pub mod cluster;
pub mod conformance;
pub mod dispatch;
pub mod hook;
pub mod rows;

use async_trait::async_trait;
use stratus_types::proto::google::iam::v1::Policy;
use stratus_types::proto::tasks::{Queue, Task};
use stratus_types::queue::QueueFilter;
use stratus_types::{LocationPath, Micros, QueuePath, Status, TaskPath};

use crate::dispatch::{AttemptOutcome, DueTask, Recorded, TaskRecord};

/// What can go wrong in a store call. The service layer turns each into the exact
/// Cloud Tasks error of the RPC at hand.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The queue does not exist (never created, or deleted).
    #[error("queue not found")]
    QueueNotFound,
    /// CreateQueue on a live queue.
    #[error("queue already exists")]
    QueueExists,
    /// CreateQueue/UpdateQueue (upsert) on a name deleted less than `queue_reuse_block` ago.
    #[error("queue deleted too recently")]
    QueueRecentlyDeleted,
    /// The task does not exist and no tombstone is held for its name.
    #[error("task not found")]
    TaskNotFound,
    /// The task does not exist but finished (succeeded, failed, deleted, purged) inside the
    /// tombstone window.
    #[error("task existed recently")]
    TaskRecentlyExisted,
    /// A live task with the same name exists.
    #[error("task already exists")]
    TaskExists,
    /// A caller-supplied update function refused the change.
    #[error("{0}")]
    Rejected(Status),
    /// The store cannot be reached or is overloaded; the call may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An unexpected store failure (corruption, bug).
    #[error("store failure: {0}")]
    Internal(String),
}

/// The lifecycle state of a stored task. Only `Scheduled` and `Dispatched` are live (visible
/// through the Cloud Tasks API); the others are kept as tombstones and for retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum TaskState {
    /// Waiting for its schedule_time (or due and not yet dispatched).
    Scheduled = 0,
    /// An attempt is in flight.
    Dispatched = 1,
    /// Finished with a 2xx answer.
    Succeeded = 2,
    /// Ran out of attempts (permanently failed).
    Failed = 3,
    /// Removed by DeleteTask, BatchDeleteTasks or PurgeQueue.
    Deleted = 4,
}

impl TaskState {
    /// Whether the task is visible through the Cloud Tasks API.
    pub fn is_live(self) -> bool {
        matches!(self, TaskState::Scheduled | TaskState::Dispatched)
    }

    /// The state for a stored integer; unknown values read as `Deleted`.
    pub fn from_i32(v: i32) -> TaskState {
        match v {
            0 => TaskState::Scheduled,
            1 => TaskState::Dispatched,
            2 => TaskState::Succeeded,
            3 => TaskState::Failed,
            _ => TaskState::Deleted,
        }
    }
}

/// Time windows that decide name reuse and retention; all may be 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// How long a finished task blocks its name (default 1 h).
    pub tombstone_ttl: Micros,
    /// How long a deleted queue blocks its name (default 7 days).
    pub queue_reuse_block: Micros,
    /// How long a succeeded task is kept with its attempts (default 1 h); never shorter than
    /// `tombstone_ttl` in effect, since the row is the tombstone.
    pub retain_succeeded: Micros,
    /// How long a permanently failed task is kept with its attempts (default 7 days).
    pub retain_failed: Micros,
}

impl Windows {
    /// How long a row finished in `state` is kept.
    pub fn keep(&self, state: TaskState) -> Micros {
        let retain = match state {
            TaskState::Succeeded => self.retain_succeeded,
            TaskState::Failed => self.retain_failed,
            _ => 0,
        };
        retain.max(self.tombstone_ttl)
    }
}

/// Where a task page starts: after the task with this `(schedule_time, task id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCursor {
    /// schedule_time of the last task returned (µs).
    pub schedule_time: Micros,
    /// Task ID of the last task returned.
    pub task_id: String,
}

/// A page of tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskPage {
    /// Live tasks ordered by (schedule_time, task id), with full request bodies.
    pub tasks: Vec<Task>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<TaskCursor>,
}

/// A page of queues.
#[derive(Debug, Clone, Default)]
pub struct QueuePage {
    /// Queues ordered by name.
    pub queues: Vec<Queue>,
    /// Name of the last queue returned when more may follow; `None` on the last page.
    pub next: Option<String>,
}

/// Decides the new queue from the current one (`None` when missing) in UpdateQueue's
/// read-modify-write; runs inside the store's transaction.
pub type QueueUpdate = Box<dyn FnOnce(Option<Queue>) -> Result<Queue, Status> + Send>;

/// The persistent state behind the Cloud Tasks API.
///
/// Queues and tasks are stored as their proto messages with names fully qualified; the store
/// keeps output-only fields it owns (`Queue.purge_time`, `Queue.state`, task counters) in sync.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a queue (already validated and normalised). Errors: `QueueExists`,
    /// `QueueRecentlyDeleted`.
    async fn create_queue(
        &self,
        queue: Queue,
        now: Micros,
        w: Windows,
    ) -> Result<Queue, StoreError>;

    /// Read-modify-write of a queue, creating it when missing (upsert). `update` gets the current
    /// queue or `None`. Errors: `QueueRecentlyDeleted` (missing and name blocked), `Rejected`.
    async fn update_queue(
        &self,
        name: &QueuePath,
        update: QueueUpdate,
        now: Micros,
        w: Windows,
    ) -> Result<Queue, StoreError>;

    /// A live queue. Errors: `QueueNotFound`.
    async fn get_queue(&self, name: &QueuePath) -> Result<Queue, StoreError>;

    /// Queues of a location ordered by name, starting after `after`, at most `limit`, filtered.
    async fn list_queues(
        &self,
        parent: &LocationPath,
        filter: &QueueFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<QueuePage, StoreError>;

    /// Deletes a queue and all its tasks; the name is blocked for `queue_reuse_block`.
    /// Errors: `QueueNotFound`.
    async fn delete_queue(&self, name: &QueuePath, now: Micros) -> Result<(), StoreError>;

    /// Sets `purge_time = now` and deletes (tombstones) every live task created before `now`.
    /// Returns the updated queue. Errors: `QueueNotFound`.
    async fn purge_queue(&self, name: &QueuePath, now: Micros) -> Result<Queue, StoreError>;

    /// Sets the queue state (RUNNING, PAUSED, DISABLED). Errors: `QueueNotFound`.
    async fn set_queue_state(&self, name: &QueuePath, state: i32) -> Result<Queue, StoreError>;

    /// Creates tasks in one queue, each with its own outcome (the stored task with its row, for
    /// the dispatcher), in order. Tasks come fully
    /// formed (name, schedule_time, create_time, dispatch_deadline set). A duplicate name
    /// inside the same call fails like any other duplicate. If the queue is missing every
    /// item fails with `QueueNotFound`. Item errors: `TaskExists`, `TaskRecentlyExisted`.
    ///
    /// Implementations group-commit concurrent calls: an item's result is returned only after
    /// the transaction holding it is durable.
    async fn create_tasks(
        &self,
        queue: &QueuePath,
        tasks: Vec<Task>,
        now: Micros,
        w: Windows,
    ) -> Result<Vec<Result<DueTask, StoreError>>, StoreError>;

    /// A live task with its full request. Errors: `TaskNotFound`, `TaskRecentlyExisted`
    /// (finished inside the tombstone window). A missing queue reads as `TaskNotFound`.
    async fn get_task(&self, name: &TaskPath, now: Micros, w: Windows) -> Result<Task, StoreError>;

    /// Live tasks of a queue ordered by (schedule_time, task id), after `after`, at most `limit`.
    /// Errors: `QueueNotFound`.
    async fn list_tasks(
        &self,
        queue: &QueuePath,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<TaskPage, StoreError>;

    /// Deletes live tasks of one queue (each becomes a `Deleted` tombstone), one outcome per
    /// name in order. Item errors: `TaskNotFound` (also for already finished tasks).
    /// Errors: `QueueNotFound` for the whole call.
    async fn delete_tasks(
        &self,
        queue: &QueuePath,
        ids: Vec<String>,
        now: Micros,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// The IAM policy of a live queue (`Policy::default()` when never set). Errors: `QueueNotFound`.
    async fn get_iam_policy(&self, queue: &QueuePath) -> Result<Policy, StoreError>;

    /// Replaces the IAM policy of a live queue and returns it. Errors: `QueueNotFound`.
    async fn set_iam_policy(&self, queue: &QueuePath, policy: Policy)
    -> Result<Policy, StoreError>;

    /// A stored blob by key in a namespace (used for CMEK configs and finished Operations).
    async fn get_blob(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores a blob by key in a namespace (replacing any previous value), durably.
    async fn put_blob(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        now: Micros,
    ) -> Result<(), StoreError>;

    /// Every live queue of every project and location (the dispatcher's start-up list).
    async fn list_all_queues(&self) -> Result<Vec<Queue>, StoreError>;

    /// Live tasks of a queue due at or before `until`, in (schedule_time, task id) order after
    /// `after`, at most `limit`. Errors: `QueueNotFound`.
    async fn due_tasks(
        &self,
        queue: &QueuePath,
        after: Option<&TaskCursor>,
        until: Micros,
        limit: usize,
    ) -> Result<Vec<DueTask>, StoreError>;

    /// The live tasks among `rows` of `queue`, in row order (rows no longer live are left
    /// out). Cluster mode: how a queue's owner loads tasks another node created.
    async fn live_tasks(&self, queue: &QueuePath, rows: &[i64])
    -> Result<Vec<DueTask>, StoreError>;

    /// One live task with its row and counters (RunTask). Errors: `TaskNotFound`.
    async fn get_due_task(&self, name: &TaskPath) -> Result<DueTask, StoreError>;

    /// Records an attempt of the live task instance `outcome.row` and applies
    /// [`dispatch::apply_attempt`] to it, durably (group-committed like creates). On success
    /// or permanent failure the row becomes a finished tombstone kept for retention.
    /// Errors: `TaskNotFound` when the instance is no longer live (deleted, purged, finished by
    /// another attempt) — nothing is written then.
    async fn record_attempt(
        &self,
        outcome: AttemptOutcome,
        now: Micros,
    ) -> Result<Recorded, StoreError>;

    /// A live, succeeded or failed task that is still kept, with its attempt history. A
    /// deleted task's row is only a name tombstone: `TaskNotFound`, like an unknown one.
    async fn task_record(&self, name: &TaskPath) -> Result<TaskRecord, StoreError>;

    /// Finished tasks of a queue in `state` (`Failed` or `Succeeded`), oldest row first,
    /// after row `after`, at most `limit`; attempts are left empty. Errors: `QueueNotFound`.
    async fn list_finished(
        &self,
        queue: &QueuePath,
        state: TaskState,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError>;

    /// Schedules a finished (failed or succeeded) task again at `now` with fresh counters
    /// ([`dispatch::reset_for_rerun`]); its history is kept. Errors: `TaskNotFound` (not kept),
    /// `TaskExists` (still live).
    async fn rerun_task(&self, name: &TaskPath, now: Micros) -> Result<DueTask, StoreError>;

    /// Removes rows no longer needed: finished tasks whose `finished_at` is older than
    /// `now - w.keep(state)` (with their attempts), queue tombstones older than `now - queue_reuse_block`, and blobs
    /// older than `blob_ttl`. Returns how many rows went.
    async fn cleanup(&self, now: Micros, w: Windows, blob_ttl: Micros) -> Result<u64, StoreError>;

    /// A cheap round trip proving the store answers (readiness checks): a read of a blob that
    /// is never written. Must stay bounded like every other call. Errors: `Unavailable` when
    /// the store cannot be reached.
    async fn ping(&self) -> Result<(), StoreError> {
        self.get_blob(PING_NAMESPACE, "ping").await.map(|_| ())
    }

    /// What the *other* live nodes of a cluster last published of their activity: one text
    /// per node, in the format of `stratus_metrics::window::encode`, at most
    /// [`PEER_STATS_MAX_AGE`] old. A store that is not shared (SQLite) has no peers.
    async fn peer_stats(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

/// The oldest a node's published activity may be and still be read ([`Store::peer_stats`]):
/// three publishing rounds, so one missed round does not make a node's queues look idle.
pub const PEER_STATS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(15);

/// The blob namespace [`Store::ping`] reads (nothing is ever stored in it).
pub const PING_NAMESPACE: &str = "stratus.ping";
