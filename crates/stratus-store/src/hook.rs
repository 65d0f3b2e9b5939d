//! How the service layer tells the dispatcher about committed changes, without knowing its
//! internals (DESIGN.md §3: API → service → store, then wake the dispatcher).
//!
//! Every call comes *after* the store committed the change, so the dispatcher never acts on
//! something that could still roll back. Notifications are hints that keep the dispatcher's
//! in-memory due-time index current; the store stays the truth (a lost hint only delays a task
//! until the dispatcher's next scan of the store).

use async_trait::async_trait;
use stratus_types::proto::tasks::{Queue, Task};
use stratus_types::{Code, QueuePath, Status, TaskPath};

use crate::dispatch::DueTask;

/// The dispatcher as the service layer sees it.
#[async_trait]
pub trait DispatchHook: Send + Sync + 'static {
    /// Tasks were created in `queue`.
    fn tasks_created(&self, queue: &QueuePath, tasks: &[DueTask]);

    /// Tasks of `queue` were deleted (DeleteTask, BatchDeleteTasks).
    fn tasks_deleted(&self, queue: &QueuePath, ids: &[String]);

    /// A queue was created or changed (update, pause, resume, purge): its stored state now.
    fn queue_changed(&self, queue: &Queue);

    /// A queue was deleted with all its tasks.
    fn queue_deleted(&self, queue: &QueuePath);

    /// RunTask: dispatches the live task now, ignoring pause and rate limits, and returns it as
    /// dispatched (before the response).
    async fn run_task(&self, name: &TaskPath) -> Result<Task, Status>;
}

/// No dispatcher: notifications are dropped and RunTask is refused. For a control plane
/// without delivery (tests of the API alone).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDispatch;

#[async_trait]
impl DispatchHook for NoDispatch {
    fn tasks_created(&self, _: &QueuePath, _: &[DueTask]) {}
    fn tasks_deleted(&self, _: &QueuePath, _: &[String]) {}
    fn queue_changed(&self, _: &Queue) {}
    fn queue_deleted(&self, _: &QueuePath) {}

    async fn run_task(&self, _: &TaskPath) -> Result<Task, Status> {
        Err(Status::new(
            Code::FailedPrecondition,
            "RunTask is not available: this server runs without a dispatcher.",
        ))
    }
}
