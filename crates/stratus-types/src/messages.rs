//! Error texts of the real Cloud Tasks service (recorded; see `shared/conformance`), in one place.

/// NOT_FOUND for a missing or recently deleted queue (GetQueue, Pause/Resume/Purge, CreateTask, ListTasks).
pub const QUEUE_NOT_FOUND: &str = "Queue does not exist. If you just created the queue, wait at least a minute for the queue to initialize.";
/// ALREADY_EXISTS on CreateQueue.
pub const QUEUE_ALREADY_EXISTS: &str = "Queue already exists";
/// FAILED_PRECONDITION on CreateQueue inside the queue-name reuse window.
pub const QUEUE_RECENTLY_DELETED: &str =
    "The queue cannot be created because a queue with this name existed too recently.";
/// NOT_FOUND for DeleteQueue, GetTask, DeleteTask, RunTask on a missing entity.
pub const ENTITY_NOT_FOUND: &str = "Requested entity was not found.";
/// ALREADY_EXISTS for a live task with the same name.
pub const TASK_ALREADY_EXISTS: &str = "Requested entity already exists";
/// ALREADY_EXISTS for a task name inside its tombstone window.
pub const TASK_RECENTLY_EXISTED: &str =
    "The task cannot be created because a task with this name existed too recently.";
/// NOT_FOUND for GetTask on a tombstoned name.
pub const TASK_GONE: &str = "The task no longer exists, though a task with this name existed recently. The task either successfully completed or was deleted.";
/// INVALID_ARGUMENT for a malformed queue name.
pub const QUEUE_NAME_FORMAT: &str = "Queue name must be formatted: \"projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>\".";
/// Help link description for [`QUEUE_NAME_FORMAT`].
pub const QUEUE_NAME_HELP: &str = "Definition of queue name";
/// Help link URL for [`QUEUE_NAME_FORMAT`].
pub const QUEUE_NAME_HELP_URL: &str = "https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues#Queue.FIELDS.name";
/// Help link description for an invalid task ID.
pub const TASK_ID_HELP: &str = "Definition of task ID";
/// Help link URL for an invalid task ID.
pub const TASK_ID_HELP_URL: &str = "https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks#Task.FIELDS.name";
/// INVALID_ARGUMENT when an HTTP task has no URL.
pub const URL_REQUIRED: &str = "HttpRequest.url is required.";
/// INVALID_ARGUMENT when an HTTP task URL has another scheme.
pub const URL_SCHEME: &str = "HttpTarget.url must start with 'http://' or 'https://'.";

/// INVALID_ARGUMENT text for a task ID outside `[A-Za-z0-9_-]{1,500}`.
pub fn task_id_invalid(id: &str) -> String {
    format!(
        "Task ID \"{id}\" can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), or underscores (_). Task ID must between 1 and 500 characters."
    )
}

/// INVALID_ARGUMENT text when a named task lies under another queue than the request's parent.
pub fn queue_mismatch(parent: &str, task_queue: &str) -> String {
    format!(
        "The queue name from request ('{parent}') must be the same as the queue name in the named task ('{task_queue}')."
    )
}
