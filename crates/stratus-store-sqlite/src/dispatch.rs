//! SQL of dispatch: the look-ahead scan, attempt outcomes, attempt history and retention.
//!
//! The scan is a range of the partial `tasks_due` index. An outcome is a read-modify-write of
//! one row by its primary key inside the writer's transaction, plus one `attempts` row; the
//! `state <= 1` guard makes an outcome for a task deleted or purged meanwhile a no-op.

use rusqlite::{Connection, OptionalExtension, Row, params};
use stratus_store::dispatch::{
    AttemptOutcome, AttemptRecord, Decision, DispatchMeta, DueTask, Recorded, TaskRecord,
    apply_attempt, reset_for_rerun,
};
use stratus_store::rows::to_task;
use stratus_store::{StoreError, TaskCursor, TaskState};
use stratus_types::Micros;
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::Queue;
use stratus_types::time::micros_to_ts;

use crate::error::{SqlResult, decode};

/// The columns [`due_row`] reads, in order (a macro so the statements below are constants:
/// no SQL is formatted per call on the dispatch path).
macro_rules! due_columns {
    () => {
        "t.id, t.schedule_time, t.create_time, t.proto, t.exec_count, t.prev_response"
    };
}

/// The look-ahead scan: a range of `tasks_due`.
pub(crate) const DUE: &str = concat!(
    "SELECT ",
    due_columns!(),
    " FROM tasks t
     WHERE t.queue_id = ?1 AND t.state <= 1 AND (t.schedule_time, t.task_id) > (?2, ?3)
       AND t.schedule_time <= ?4
     ORDER BY t.schedule_time, t.task_id LIMIT ?5"
);
/// RunTask's lookup by name.
const DUE_ONE: &str = concat!(
    "SELECT ",
    due_columns!(),
    " FROM queues q JOIN tasks t ON t.queue_id = q.id
     WHERE q.name = ?1 AND q.deleted_at IS NULL AND t.task_id = ?2 AND t.state <= 1"
);
/// A live row by primary key (recording an outcome).
pub(crate) const LOAD_LIVE: &str = concat!(
    "SELECT ",
    due_columns!(),
    " FROM tasks t WHERE t.id = ?1 AND t.state <= 1"
);
/// A row in any state by primary key (re-run).
const LOAD_ANY: &str = concat!("SELECT ", due_columns!(), " FROM tasks t WHERE t.id = ?1");
/// A kept task by name with its state (the status endpoint).
const RECORD: &str = concat!(
    "SELECT ",
    due_columns!(),
    ", t.state, t.finished_at FROM queues q JOIN tasks t ON t.queue_id = q.id
     WHERE q.name = ?1 AND q.deleted_at IS NULL AND t.task_id = ?2 AND t.state != 4"
);

/// Every live queue.
pub(crate) fn all_queues(conn: &Connection) -> Result<Vec<Queue>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT proto, state, purge_time FROM queues WHERE deleted_at IS NULL ORDER BY id",
        )
        .db()?;
    let mut rows = stmt.query([]).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        let mut q = Queue::decode(r.get::<_, Vec<u8>>(0).db()?.as_slice())
            .map_err(|e| decode("queue", e))?;
        q.state = r.get(1).db()?;
        q.purge_time = r.get::<_, Option<Micros>>(2).db()?.map(micros_to_ts);
        out.push(q);
    }
    Ok(out)
}

fn due_row(r: &Row<'_>) -> Result<DueTask, StoreError> {
    let row: i64 = r.get(0).db()?;
    let schedule_time: Micros = r.get(1).db()?;
    let create_time: Micros = r.get(2).db()?;
    let proto: Vec<u8> = r.get(3).db()?;
    let execution_count: i32 = r.get(4).db()?;
    let prev: Option<i64> = r.get(5).db()?;
    let task = to_task(proto.as_slice(), schedule_time, create_time)?;
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
pub(crate) fn due(
    conn: &Connection,
    queue_id: i64,
    after: Option<&TaskCursor>,
    until: Micros,
    limit: usize,
) -> Result<Vec<DueTask>, StoreError> {
    let (sched, id) = after.map_or((Micros::MIN, ""), |c| (c.schedule_time, c.task_id.as_str()));
    let mut stmt = conn.prepare_cached(DUE).db()?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt
        .query(params![queue_id, sched, id, until, limit])
        .db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(due_row(r)?);
    }
    Ok(out)
}

/// The live tasks of queue `queue_id` among `rows`, in row order.
pub(crate) fn live_rows(
    conn: &Connection,
    queue_id: i64,
    rows: &[i64],
) -> Result<Vec<DueTask>, StoreError> {
    let mut sorted = rows.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            due_columns!(),
            " FROM tasks t WHERE t.id = ?1 AND t.queue_id = ?2 AND t.state <= 1"
        ))
        .db()?;
    let mut out = Vec::new();
    for row in sorted {
        let mut found = stmt.query(params![row, queue_id]).db()?;
        if let Some(r) = found.next().db()? {
            out.push(due_row(r)?);
        }
    }
    Ok(out)
}

/// One live task by name (RunTask).
pub(crate) fn due_one(
    conn: &Connection,
    queue_name: &str,
    task_id: &str,
) -> Result<DueTask, StoreError> {
    let mut stmt = conn.prepare_cached(DUE_ONE).db()?;
    let mut rows = stmt.query(params![queue_name, task_id]).db()?;
    match rows.next().db()? {
        Some(r) => due_row(r),
        None => Err(StoreError::TaskNotFound),
    }
}

fn load_row(conn: &Connection, row: i64, live_only: bool) -> Result<DueTask, StoreError> {
    let mut stmt = conn
        .prepare_cached(if live_only { LOAD_LIVE } else { LOAD_ANY })
        .db()?;
    let mut rows = stmt.query([row]).db()?;
    match rows.next().db()? {
        Some(r) => due_row(r),
        None => Err(StoreError::TaskNotFound),
    }
}

fn next_seq(conn: &Connection, row: i64) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM attempts WHERE task_row = ?1")
        .db()?
        .query_row([row], |r| r.get(0))
        .db()
}

/// Records an attempt: applies it to the stored row and appends it to the history.
/// `TaskNotFound` (the row is no longer live) comes before any write.
pub(crate) fn record(
    conn: &Connection,
    o: &AttemptOutcome,
    now: Micros,
) -> Result<Recorded, StoreError> {
    let mut t = load_row(conn, o.row, true)?;
    let decision = apply_attempt(&mut t.task, &mut t.meta, o);
    let state = decision.state();
    let finished_at = (state != TaskState::Scheduled).then_some(now);
    if let Decision::Retry(at) = decision {
        t.schedule_time = at;
    }
    // The columns are the truth for the times; the proto keeps the rest.
    let proto = t.task.encode_to_vec();
    conn.prepare_cached(
        "UPDATE tasks SET state = ?2, finished_at = ?3, schedule_time = ?4, proto = ?5,
             exec_count = ?6, prev_response = ?7
         WHERE id = ?1",
    )
    .db()?
    .execute(params![
        o.row,
        state as i32,
        finished_at,
        t.schedule_time,
        proto,
        t.meta.execution_count,
        t.meta.previous_response.map(i64::from),
    ])
    .db()?;
    let seq = next_seq(conn, o.row)?;
    insert_attempt(conn, o.row, &AttemptRecord::of(o, seq))?;
    Ok(Recorded { decision, task: t })
}

fn insert_attempt(conn: &Connection, row: i64, a: &AttemptRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO attempts (task_row, seq, dispatch_time, response_time, http_status, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .db()?
    .execute(params![
        row,
        a.seq,
        a.dispatch_time,
        a.response_time,
        a.http_status.map(i64::from),
        a.error
    ])
    .db()?;
    Ok(())
}

fn attempts(conn: &Connection, row: i64) -> Result<Vec<AttemptRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, dispatch_time, response_time, http_status, error FROM attempts
             WHERE task_row = ?1 ORDER BY seq",
        )
        .db()?;
    let mut rows = stmt.query([row]).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        let status: Option<i64> = r.get(3).db()?;
        out.push(AttemptRecord {
            seq: r.get(0).db()?,
            dispatch_time: r.get(1).db()?,
            response_time: r.get(2).db()?,
            http_status: status.and_then(|s| u16::try_from(s).ok()),
            error: r.get(4).db()?,
        });
    }
    Ok(out)
}

fn record_row(r: &Row<'_>) -> Result<TaskRecord, StoreError> {
    let t = due_row(r)?;
    let state: i32 = r.get(6).db()?;
    Ok(TaskRecord {
        task: t.task,
        state: TaskState::from_i32(state),
        finished_at: r.get(7).db()?,
        attempts: Vec::new(),
        row: t.row,
    })
}

/// Any kept task by name, with its attempts. A `Deleted` row is only a tombstone: not found.
pub(crate) fn task_record(
    conn: &Connection,
    queue_name: &str,
    task_id: &str,
) -> Result<TaskRecord, StoreError> {
    let mut stmt = conn.prepare_cached(RECORD).db()?;
    let mut rows = stmt.query(params![queue_name, task_id]).db()?;
    let mut rec = match rows.next().db()? {
        Some(r) => record_row(r)?,
        None => return Err(StoreError::TaskNotFound),
    };
    rec.attempts = attempts(conn, rec.row)?;
    Ok(rec)
}

/// The failed-task list: a range of the partial index `tasks_failed`.
pub(crate) const FAILED: &str = concat!(
    "SELECT ",
    due_columns!(),
    ", t.state, t.finished_at FROM tasks t
     WHERE t.queue_id = ?1 AND t.state = 3 AND t.id > ?2 ORDER BY t.id LIMIT ?3"
);
/// Other finished states: the queue's rows through `tasks_name` (no endpoint lists them).
const FINISHED: &str = concat!(
    "SELECT ",
    due_columns!(),
    ", t.state, t.finished_at FROM tasks t
     WHERE t.queue_id = ?1 AND t.state = ?4 AND t.id > ?2 ORDER BY t.id LIMIT ?3"
);

/// Finished tasks of a queue in one state, oldest row first.
pub(crate) fn finished(
    conn: &Connection,
    queue_id: i64,
    state: TaskState,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<TaskRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let after = after.unwrap_or(0);
    let mut stmt;
    let mut rows = if state == TaskState::Failed {
        stmt = conn.prepare_cached(FAILED).db()?;
        stmt.query(params![queue_id, after, limit]).db()?
    } else {
        stmt = conn.prepare_cached(FINISHED).db()?;
        stmt.query(params![queue_id, after, limit, state as i32])
            .db()?
    };
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(record_row(r)?);
    }
    Ok(out)
}

/// Schedules a kept finished task again at `now`.
pub(crate) fn rerun(
    conn: &Connection,
    queue_name: &str,
    task_id: &str,
    now: Micros,
) -> Result<DueTask, StoreError> {
    let found: Option<(i64, i32)> = conn
        .prepare_cached(
            "SELECT t.id, t.state FROM queues q JOIN tasks t ON t.queue_id = q.id
             WHERE q.name = ?1 AND q.deleted_at IS NULL AND t.task_id = ?2",
        )
        .db()?
        .query_row(params![queue_name, task_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    let row = match found {
        Some((_, s)) if TaskState::from_i32(s).is_live() => return Err(StoreError::TaskExists),
        Some((row, s))
            if matches!(
                TaskState::from_i32(s),
                TaskState::Succeeded | TaskState::Failed
            ) =>
        {
            row
        }
        _ => return Err(StoreError::TaskNotFound),
    };
    let mut t = load_row(conn, row, false)?;
    reset_for_rerun(&mut t.task, &mut t.meta, now);
    t.schedule_time = now;
    conn.prepare_cached(
        "UPDATE tasks SET state = 0, finished_at = NULL, schedule_time = ?2, proto = ?3,
             exec_count = 0, prev_response = NULL
         WHERE id = ?1",
    )
    .db()?
    .execute(params![row, now, t.task.encode_to_vec()])
    .db()?;
    Ok(t)
}
