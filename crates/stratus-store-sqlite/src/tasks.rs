//! SQL of the `tasks` table.
//!
//! A row is live while `state <= 1` (Scheduled, Dispatched). A finished row (`finished_at` set)
//! is the task's tombstone: it blocks the name while `finished_at > now - tombstone_ttl`, and
//! after that a create replaces it. `schedule_time` and `create_time` are columns (they are
//! what queries order and filter by) and are laid over the decoded proto on every read.

use rusqlite::{Connection, OptionalExtension, params};
use stratus_store::dispatch::DueTask;
use stratus_store::rows::{NewTask, to_task};
use stratus_store::{StoreError, TaskCursor, TaskPage, TaskState, Windows};
use stratus_types::Micros;
use stratus_types::proto::tasks::Task;

use crate::error::SqlResult;

/// Create: appends to the table plus one entry in `tasks_name` and one in `tasks_due`.
pub(crate) const INSERT: &str =
    "INSERT INTO tasks (queue_id, task_id, schedule_time, create_time, state, proto)
     VALUES (?1, ?2, ?3, ?4, 0, ?5) ON CONFLICT (queue_id, task_id) DO NOTHING";
/// GetTask through `queues_name` and `tasks_name`.
pub(crate) const GET: &str =
    "SELECT t.state, t.finished_at, t.schedule_time, t.create_time, t.proto
     FROM queues q JOIN tasks t ON t.queue_id = q.id
     WHERE q.name = ?1 AND q.deleted_at IS NULL AND t.task_id = ?2";
/// ListTasks: a range scan of `tasks_due` from the cursor (`state <= 1` selects the partial index).
pub(crate) const LIST: &str = "SELECT task_id, schedule_time, create_time, proto FROM tasks
     WHERE queue_id = ?1 AND state <= 1 AND (schedule_time, task_id) > (?2, ?3)
     ORDER BY schedule_time, task_id LIMIT ?4";
/// DeleteTask through `tasks_name`.
pub(crate) const DELETE: &str = "UPDATE tasks SET state = 4, finished_at = ?3 WHERE queue_id = ?1 AND task_id = ?2 AND state <= 1";
/// Cleanup: a bounded range of `tasks_finished` for one state.
pub(crate) const CLEANUP: &str = "DELETE FROM tasks WHERE id IN
     (SELECT id FROM tasks WHERE state = ?3 AND finished_at IS NOT NULL AND finished_at <= ?1 LIMIT ?2)";

/// Whether a finished row still blocks its name at `now`.
fn blocks(finished_at: Option<Micros>, now: Micros, w: Windows) -> bool {
    finished_at.is_some_and(|at| at > now.saturating_sub(w.tombstone_ttl))
}

/// CreateTask/BatchCreate into the live queue `queue_id`, one outcome per task in order.
///
/// The common case is one `INSERT … ON CONFLICT DO NOTHING`; only when the name is taken does
/// the existing row get read to tell a live duplicate from a tombstone, and an expired
/// tombstone is replaced.
pub(crate) fn create(
    conn: &Connection,
    queue_id: i64,
    tasks: Vec<Result<NewTask, StoreError>>,
    now: Micros,
    w: Windows,
) -> Result<Vec<Result<DueTask, StoreError>>, StoreError> {
    let mut ins = conn.prepare_cached(INSERT).db()?;
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let t = match t {
            Ok(t) => t,
            Err(e) => {
                out.push(Err(e));
                continue;
            }
        };
        let insert = |stmt: &mut rusqlite::CachedStatement<'_>| {
            stmt.execute(params![
                queue_id,
                t.task_id,
                t.schedule_time,
                t.create_time,
                t.proto
            ])
            .db()
        };
        if insert(&mut ins)? == 1 {
            out.push(Ok(t.into_due(conn.last_insert_rowid())));
            continue;
        }
        let (row, state, finished_at): (i64, i32, Option<Micros>) = conn
            .prepare_cached(
                "SELECT id, state, finished_at FROM tasks WHERE queue_id = ?1 AND task_id = ?2",
            )
            .db()?
            .query_row(params![queue_id, t.task_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .db()?;
        if TaskState::from_i32(state).is_live() {
            out.push(Err(StoreError::TaskExists));
        } else if blocks(finished_at, now, w) {
            out.push(Err(StoreError::TaskRecentlyExisted));
        } else {
            conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")
                .db()?
                .execute([row])
                .db()?;
            if insert(&mut ins)? != 1 {
                return Err(StoreError::Internal(
                    "task insert after tombstone removal changed nothing".into(),
                ));
            }
            out.push(Ok(t.into_due(conn.last_insert_rowid())));
        }
    }
    Ok(out)
}

/// GetTask: the live task, `TaskRecentlyExisted` for a blocking tombstone, else `TaskNotFound`
/// (also when the queue is missing).
pub(crate) fn get(
    conn: &Connection,
    queue_name: &str,
    task_id: &str,
    now: Micros,
    w: Windows,
) -> Result<Task, StoreError> {
    struct Found {
        state: i32,
        finished_at: Option<Micros>,
        schedule_time: Micros,
        create_time: Micros,
        proto: Vec<u8>,
    }
    let found = conn
        .prepare_cached(GET)
        .db()?
        .query_row(params![queue_name, task_id], |r| {
            Ok(Found {
                state: r.get(0)?,
                finished_at: r.get(1)?,
                schedule_time: r.get(2)?,
                create_time: r.get(3)?,
                proto: r.get(4)?,
            })
        })
        .optional()
        .db()?
        .ok_or(StoreError::TaskNotFound)?;
    if TaskState::from_i32(found.state).is_live() {
        to_task(&found.proto, found.schedule_time, found.create_time)
    } else if blocks(found.finished_at, now, w) {
        Err(StoreError::TaskRecentlyExisted)
    } else {
        Err(StoreError::TaskNotFound)
    }
}

/// ListTasks: live tasks after the cursor in (schedule_time, task_id) order, a range scan of
/// `tasks_due`. Reads `limit + 1` rows to know whether a next page exists.
pub(crate) fn list(
    conn: &Connection,
    queue_id: i64,
    after: Option<&TaskCursor>,
    limit: usize,
) -> Result<TaskPage, StoreError> {
    let (sched, id) = after.map_or((Micros::MIN, ""), |c| (c.schedule_time, c.task_id.as_str()));
    let mut stmt = conn.prepare_cached(LIST).db()?;
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
    let mut rows = stmt.query(params![queue_id, sched, id, fetch]).db()?;
    let mut page = TaskPage::default();
    let mut last: Option<TaskCursor> = None;
    while let Some(r) = rows.next().db()? {
        if page.tasks.len() == limit {
            page.next = last.take();
            break;
        }
        let (task_id, sched, created): (String, Micros, Micros) =
            (r.get(0).db()?, r.get(1).db()?, r.get(2).db()?);
        page.tasks
            .push(to_task(&r.get::<_, Vec<u8>>(3).db()?, sched, created)?);
        last = Some(TaskCursor {
            schedule_time: sched,
            task_id,
        });
    }
    Ok(page)
}

/// DeleteTask/BatchDelete: each live task becomes a `Deleted` tombstone; anything else is
/// `TaskNotFound`.
pub(crate) fn delete(
    conn: &Connection,
    queue_id: i64,
    ids: &[String],
    now: Micros,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut stmt = conn.prepare_cached(DELETE).db()?;
    ids.iter()
        .map(|id| {
            let n = stmt.execute(params![queue_id, id, now]).db()?;
            Ok(if n == 1 {
                Ok(())
            } else {
                Err(StoreError::TaskNotFound)
            })
        })
        .collect()
}

/// Cleanup: deletes up to `chunk` finished rows past their state's retention (through
/// `tasks_finished`), their attempts with them. Returns how many went; fewer than `chunk`
/// means none are left.
pub(crate) fn cleanup_chunk(
    conn: &Connection,
    now: Micros,
    w: Windows,
    chunk: i64,
) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached(CLEANUP).db()?;
    let mut total = 0u64;
    for state in [TaskState::Deleted, TaskState::Succeeded, TaskState::Failed] {
        let left = chunk - total as i64;
        if left <= 0 {
            break;
        }
        let cut = now.saturating_sub(w.keep(state));
        total += stmt.execute(params![cut, left, state as i32]).db()? as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_store::rows::prepare;
    use stratus_types::proto::tasks::Task;
    use stratus_types::time::micros_to_ts;

    const W: Windows = Windows {
        tombstone_ttl: 0,
        queue_reuse_block: 0,
        retain_succeeded: 0,
        retain_failed: 0,
    };
    const Q: &str = "projects/p/locations/l/queues/q";

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn new(id: &str, at: Micros) -> Result<NewTask, StoreError> {
        let t = Task {
            name: format!("{Q}/tasks/{id}"),
            schedule_time: Some(micros_to_ts(at)),
            ..Default::default()
        };
        prepare(Q, t, at)
    }

    fn row_id(conn: &Connection, id: &str) -> i64 {
        conn.query_row("SELECT id FROM tasks WHERE task_id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    }

    #[test]
    fn row_ids_are_never_reused() {
        let conn = db();
        create(&conn, 1, vec![new("a", 10)], 10, W)
            .unwrap()
            .remove(0)
            .unwrap();
        let first = row_id(&conn, "a");
        delete(&conn, 1, &["a".into()], 20).unwrap();
        assert_eq!(cleanup_chunk(&conn, 30, W, 100).unwrap(), 1);
        create(&conn, 1, vec![new("a", 40)], 40, W)
            .unwrap()
            .remove(0)
            .unwrap();
        assert!(
            row_id(&conn, "a") > first,
            "a re-created task gets a new row id"
        );
    }

    #[test]
    fn columns_win_over_the_stored_proto() {
        let conn = db();
        create(&conn, 1, vec![new("a", 10)], 10, W).unwrap();
        conn.execute("UPDATE tasks SET schedule_time = 99", [])
            .unwrap();
        let page = list(&conn, 1, None, 10).unwrap();
        assert_eq!(page.tasks[0].schedule_time, Some(micros_to_ts(99)));
    }

    #[test]
    fn foreign_task_names_are_refused() {
        let t = Task {
            name: "projects/p/locations/l/queues/other/tasks/a".into(),
            ..Default::default()
        };
        assert!(matches!(prepare(Q, t, 0), Err(StoreError::Internal(_))));
        let t = Task {
            name: format!("{Q}/tasks/"),
            ..Default::default()
        };
        assert!(prepare(Q, t, 0).is_err());
    }
}
