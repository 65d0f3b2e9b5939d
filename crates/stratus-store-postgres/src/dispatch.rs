//! SQL of dispatch outside the writer: the look-ahead scan, rows by id, RunTask's lookup, the
//! attempt history, finished tasks and re-runs.
//!
//! The scan is a range of the partial `tasks_due` index. Recording outcomes lives in the writer
//! (`writer::attempts`), which locks the rows it updates.

use deadpool_postgres::GenericClient;
use stratus_store::dispatch::{AttemptRecord, DispatchMeta, DueTask, TaskRecord, reset_for_rerun};
use stratus_store::{StoreError, TaskCursor, TaskState};
use stratus_types::Micros;
use stratus_types::proto::prost::Message;
use tokio_postgres::Row;

use crate::error::PgResult;
use stratus_store::rows::to_task;

/// The columns [`due_row`] reads, in order (a macro so the statements below are constants).
macro_rules! due_columns {
    () => {
        "t.id, t.schedule_time, t.create_time, t.proto, t.exec_count, t.prev_response"
    };
}
pub(crate) use due_columns;

/// The look-ahead scan: a range of `tasks_due`.
const DUE: &str = concat!(
    "SELECT ",
    due_columns!(),
    " FROM tasks t
     WHERE t.queue_id = $1 AND t.state <= 1 AND (t.schedule_time, t.task_id) > ($2, $3)
       AND t.schedule_time <= $4
     ORDER BY t.schedule_time, t.task_id LIMIT $5"
);
/// Live rows of a queue by id (cluster mode: tasks another node created).
const LIVE_ROWS: &str = concat!(
    "SELECT ",
    due_columns!(),
    " FROM tasks t WHERE t.id = ANY($1::bigint[]) AND t.queue_id = $2 AND t.state <= 1
     ORDER BY t.id"
);
/// RunTask's lookup by name.
const DUE_ONE: &str = concat!(
    "SELECT ",
    due_columns!(),
    " FROM queues q JOIN tasks t ON t.queue_id = q.id
     WHERE q.name = $1 AND q.deleted_at IS NULL AND t.task_id = $2 AND t.state <= 1"
);
/// A kept task by name with its state (the status endpoint).
const RECORD: &str = concat!(
    "SELECT ",
    due_columns!(),
    ", t.state, t.finished_at FROM queues q JOIN tasks t ON t.queue_id = q.id
     WHERE q.name = $1 AND q.deleted_at IS NULL AND t.task_id = $2 AND t.state != 4"
);
/// The attempt history of a row.
const ATTEMPTS: &str = "SELECT seq, dispatch_time, response_time, http_status, error
     FROM attempts WHERE task_row = $1 ORDER BY seq";
/// The failed-task list: a range of the partial index `tasks_failed`.
const FAILED: &str = concat!(
    "SELECT ",
    due_columns!(),
    ", t.state, t.finished_at FROM tasks t
     WHERE t.queue_id = $1 AND t.state = 3 AND t.id > $2 ORDER BY t.id LIMIT $3"
);
/// Other finished states: the queue's rows through `tasks_name` (no endpoint lists them).
const FINISHED: &str = concat!(
    "SELECT ",
    due_columns!(),
    ", t.state, t.finished_at FROM tasks t
     WHERE t.queue_id = $1 AND t.state = $4 AND t.id > $2 ORDER BY t.id LIMIT $3"
);
/// Re-run: the kept row by name, locked.
const RERUN_FIND: &str = concat!(
    "SELECT ",
    due_columns!(),
    ", t.state FROM queues q JOIN tasks t ON t.queue_id = q.id
     WHERE q.name = $1 AND q.deleted_at IS NULL AND t.task_id = $2
     FOR UPDATE OF t"
);
const RERUN: &str = "UPDATE tasks SET state = 0, finished_at = NULL, schedule_time = $2,
         proto = $3, exec_count = 0, prev_response = NULL
     WHERE id = $1";

/// A row of the [`due_columns`] (first six columns).
pub(crate) fn due_row(r: &Row) -> Result<DueTask, StoreError> {
    let row: i64 = r.try_get(0).db()?;
    let schedule_time: Micros = r.try_get(1).db()?;
    let create_time: Micros = r.try_get(2).db()?;
    let proto: &[u8] = r.try_get(3).db()?;
    let execution_count: i32 = r.try_get(4).db()?;
    let prev: Option<i32> = r.try_get(5).db()?;
    let task = to_task(proto, schedule_time, create_time)?;
    Ok(DueTask {
        row,
        task,
        schedule_time,
        create_time,
        meta: DispatchMeta {
            execution_count,
            previous_response: prev.and_then(|p| u16::try_from(p).ok()),
        },
    })
}

/// The look-ahead scan: live tasks of queue `queue_id` with `(schedule_time, task_id)` after
/// the cursor and `schedule_time <= until`, in that order.
pub(crate) async fn due(
    c: &impl GenericClient,
    queue_id: i64,
    after: Option<&TaskCursor>,
    until: Micros,
    limit: usize,
) -> Result<Vec<DueTask>, StoreError> {
    let (sched, id) = after.map_or((Micros::MIN, ""), |c| (c.schedule_time, c.task_id.as_str()));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let st = c.prepare_cached(DUE).await.db()?;
    let rows = c
        .query(&st, &[&queue_id, &sched, &id, &until, &limit])
        .await
        .db()?;
    rows.iter().map(due_row).collect()
}

/// The live tasks of queue `queue_id` among `rows`, in row order.
pub(crate) async fn live_rows(
    c: &impl GenericClient,
    queue_id: i64,
    rows: &[i64],
) -> Result<Vec<DueTask>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let st = c.prepare_cached(LIVE_ROWS).await.db()?;
    let found = c.query(&st, &[&rows, &queue_id]).await.db()?;
    found.iter().map(due_row).collect()
}

/// One live task by name (RunTask).
pub(crate) async fn due_one(
    c: &impl GenericClient,
    queue_name: &str,
    task_id: &str,
) -> Result<DueTask, StoreError> {
    let st = c.prepare_cached(DUE_ONE).await.db()?;
    match c.query_opt(&st, &[&queue_name, &task_id]).await.db()? {
        Some(r) => due_row(&r),
        None => Err(StoreError::TaskNotFound),
    }
}

fn record_row(r: &Row) -> Result<TaskRecord, StoreError> {
    let t = due_row(r)?;
    let state: i32 = r.try_get(6).db()?;
    Ok(TaskRecord {
        task: t.task,
        state: TaskState::from_i32(state),
        finished_at: r.try_get(7).db()?,
        attempts: Vec::new(),
        row: t.row,
    })
}

/// Any kept task by name, with its attempts. A `Deleted` row is only a tombstone: not found.
/// Run inside one transaction so the row and its history are one snapshot.
pub(crate) async fn task_record(
    c: &impl GenericClient,
    queue_name: &str,
    task_id: &str,
) -> Result<TaskRecord, StoreError> {
    let st = c.prepare_cached(RECORD).await.db()?;
    let mut rec = match c.query_opt(&st, &[&queue_name, &task_id]).await.db()? {
        Some(r) => record_row(&r)?,
        None => return Err(StoreError::TaskNotFound),
    };
    let st = c.prepare_cached(ATTEMPTS).await.db()?;
    for r in c.query(&st, &[&rec.row]).await.db()? {
        let status: Option<i32> = r.try_get(3).db()?;
        rec.attempts.push(AttemptRecord {
            seq: r.try_get(0).db()?,
            dispatch_time: r.try_get(1).db()?,
            response_time: r.try_get(2).db()?,
            http_status: status.and_then(|s| u16::try_from(s).ok()),
            error: r.try_get(4).db()?,
        });
    }
    Ok(rec)
}

/// Finished tasks of a queue in one state, oldest row first.
pub(crate) async fn finished(
    c: &impl GenericClient,
    queue_id: i64,
    state: TaskState,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<TaskRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let after = after.unwrap_or(0);
    let rows = if state == TaskState::Failed {
        let st = c.prepare_cached(FAILED).await.db()?;
        c.query(&st, &[&queue_id, &after, &limit]).await.db()?
    } else {
        let st = c.prepare_cached(FINISHED).await.db()?;
        c.query(&st, &[&queue_id, &after, &limit, &(state as i32)])
            .await
            .db()?
    };
    rows.iter().map(record_row).collect()
}

/// Schedules a kept finished task again at `now` (the row is locked while it is checked and
/// rewritten). The attempt counter is kept, so numbering continues.
pub(crate) async fn rerun(
    c: &impl GenericClient,
    queue_name: &str,
    task_id: &str,
    now: Micros,
) -> Result<DueTask, StoreError> {
    let st = c.prepare_cached(RERUN_FIND).await.db()?;
    let Some(r) = c.query_opt(&st, &[&queue_name, &task_id]).await.db()? else {
        return Err(StoreError::TaskNotFound);
    };
    let state: i32 = r.try_get(6).db()?;
    match TaskState::from_i32(state) {
        s if s.is_live() => return Err(StoreError::TaskExists),
        TaskState::Succeeded | TaskState::Failed => {}
        _ => return Err(StoreError::TaskNotFound),
    }
    let mut t = due_row(&r)?;
    reset_for_rerun(&mut t.task, &mut t.meta, now);
    t.schedule_time = now;
    let st = c.prepare_cached(RERUN).await.db()?;
    c.execute(&st, &[&t.row, &now, &t.task.encode_to_vec()])
        .await
        .db()?;
    Ok(t)
}
