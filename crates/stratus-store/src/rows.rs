//! What every backend does the same way with task rows: preparing a new task for insertion
//! (on the caller's task, so a writer only runs SQL) and laying the time columns back over a
//! stored proto.
//!
//! `schedule_time` and `create_time` are columns (queries order and filter by them); on every
//! read they are laid over the decoded proto so the two can never disagree. The `create_time`
//! column keeps the create instant at µs precision (PurgeQueue compares against it); the API
//! shows it truncated to whole seconds, as Cloud Tasks does.

use stratus_types::Micros;
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::Task;
use stratus_types::time::{SECOND, micros_to_ts, ts_to_micros};

use crate::StoreError;
use crate::dispatch::{DispatchMeta, DueTask};

/// A task ready for insertion.
#[derive(Debug)]
pub struct NewTask {
    /// The short task ID (the name's last segment).
    pub task_id: String,
    /// schedule_time in µs.
    pub schedule_time: Micros,
    /// create_time in µs (precise).
    pub create_time: Micros,
    /// The encoded task as stored.
    pub proto: Vec<u8>,
    /// The task as it will read back.
    task: Task,
}

impl NewTask {
    /// The created task, stored as `row`.
    pub fn into_due(self, row: i64) -> DueTask {
        DueTask {
            row,
            task: self.task,
            schedule_time: self.schedule_time,
            create_time: self.create_time,
            meta: DispatchMeta::default(),
        }
    }
}

/// Checks that `task` belongs to `queue_name` and encodes it; a missing schedule_time means
/// `now`, and `now` is the create time.
pub fn prepare(queue_name: &str, mut task: Task, now: Micros) -> Result<NewTask, StoreError> {
    let task_id = task
        .name
        .strip_prefix(queue_name)
        .and_then(|rest| rest.strip_prefix("/tasks/"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| {
            StoreError::Internal(format!(
                "task name {:?} is not in queue {queue_name}",
                task.name
            ))
        })?
        .to_string();
    let schedule_time = task.schedule_time.as_ref().map_or(now, ts_to_micros);
    let create_time = now;
    task.schedule_time = Some(micros_to_ts(schedule_time));
    task.create_time = Some(micros_to_ts(whole_seconds(create_time)));
    let proto = task.encode_to_vec();
    Ok(NewTask {
        task_id,
        schedule_time,
        create_time,
        proto,
        task,
    })
}

/// `us` truncated to whole seconds (towards the past).
pub fn whole_seconds(us: Micros) -> Micros {
    us - us.rem_euclid(SECOND)
}

/// Decodes a stored task and lays the time columns over it.
pub fn to_task(
    proto: &[u8],
    schedule_time: Micros,
    create_time: Micros,
) -> Result<Task, StoreError> {
    let mut t =
        Task::decode(proto).map_err(|e| StoreError::Internal(format!("corrupt task row: {e}")))?;
    t.schedule_time = Some(micros_to_ts(schedule_time));
    t.create_time = Some(micros_to_ts(whole_seconds(create_time)));
    Ok(t)
}
