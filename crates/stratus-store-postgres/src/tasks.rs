//! SQL of the `tasks` table outside the writer: get, list, delete, cleanup; and the
//! preparation of new tasks (on the caller's task, so the writer only runs SQL).
//!
//! A row is live while `state <= 1` (Scheduled, Dispatched). A finished row (`finished_at` set)
//! is the task's tombstone: it blocks the name while `finished_at > now - tombstone_ttl`.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;
use stratus_store::rows::to_task;
use stratus_store::{StoreError, TaskCursor, TaskPage, TaskState, Windows};
use stratus_types::Micros;
use stratus_types::proto::tasks::Task;

use crate::error::PgResult;

/// GetTask through `queues_name` and `tasks_name`.
const GET: &str = "SELECT t.state, t.finished_at, t.schedule_time, t.create_time, t.proto
     FROM queues q JOIN tasks t ON t.queue_id = q.id
     WHERE q.name = $1 AND q.deleted_at IS NULL AND t.task_id = $2";
/// ListTasks: a range scan of `tasks_due` from the cursor (`state <= 1` selects the partial
/// index).
const LIST: &str = "SELECT task_id, schedule_time, create_time, proto FROM tasks
     WHERE queue_id = $1 AND state <= 1 AND (schedule_time, task_id) > ($2, $3)
     ORDER BY schedule_time, task_id LIMIT $4";
/// DeleteTask/BatchDelete through `tasks_name`, one statement for all names.
const DELETE: &str = "UPDATE tasks SET state = 4, finished_at = $3
     WHERE queue_id = $1 AND task_id = ANY($2::text[]) AND state <= 1
     RETURNING task_id";
/// Cleanup: a bounded range of `tasks_finished` for one state, the rows' attempts with them.
const CLEANUP: &str = "WITH gone AS (
         DELETE FROM tasks WHERE id IN (
             SELECT id FROM tasks
             WHERE state = $3 AND finished_at IS NOT NULL AND finished_at <= $1
             LIMIT $2)
         RETURNING id),
     a AS (DELETE FROM attempts WHERE task_row IN (SELECT id FROM gone))
     SELECT count(*) FROM gone";

/// Whether a finished row still blocks its name at `now`.
pub(crate) fn blocks(finished_at: Option<Micros>, now: Micros, w: Windows) -> bool {
    finished_at.is_some_and(|at| at > now.saturating_sub(w.tombstone_ttl))
}

/// GetTask: the live task, `TaskRecentlyExisted` for a blocking tombstone, else `TaskNotFound`
/// (also when the queue is missing).
pub(crate) async fn get(
    c: &impl GenericClient,
    queue_name: &str,
    task_id: &str,
    now: Micros,
    w: Windows,
) -> Result<Task, StoreError> {
    let st = c.prepare_cached(GET).await.db()?;
    let row = c
        .query_opt(&st, &[&queue_name, &task_id])
        .await
        .db()?
        .ok_or(StoreError::TaskNotFound)?;
    let state: i32 = row.try_get(0).db()?;
    if TaskState::from_i32(state).is_live() {
        let proto: &[u8] = row.try_get(4).db()?;
        to_task(proto, row.try_get(2).db()?, row.try_get(3).db()?)
    } else if blocks(row.try_get(1).db()?, now, w) {
        Err(StoreError::TaskRecentlyExisted)
    } else {
        Err(StoreError::TaskNotFound)
    }
}

/// ListTasks: live tasks after the cursor in (schedule_time, task_id) order. Reads
/// `limit + 1` rows to know whether a next page exists.
pub(crate) async fn list(
    c: &impl GenericClient,
    queue_id: i64,
    after: Option<&TaskCursor>,
    limit: usize,
) -> Result<TaskPage, StoreError> {
    let (sched, id) = after.map_or((Micros::MIN, ""), |c| (c.schedule_time, c.task_id.as_str()));
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
    let st = c.prepare_cached(LIST).await.db()?;
    let rows = c.query(&st, &[&queue_id, &sched, &id, &fetch]).await.db()?;
    let mut page = TaskPage::default();
    let mut last: Option<TaskCursor> = None;
    for r in &rows {
        if page.tasks.len() == limit {
            page.next = last.take();
            break;
        }
        let task_id: String = r.try_get(0).db()?;
        let sched: Micros = r.try_get(1).db()?;
        let created: Micros = r.try_get(2).db()?;
        let proto: &[u8] = r.try_get(3).db()?;
        page.tasks.push(to_task(proto, sched, created)?);
        last = Some(TaskCursor {
            schedule_time: sched,
            task_id,
        });
    }
    Ok(page)
}

/// DeleteTask/BatchDelete: each live task becomes a `Deleted` tombstone; anything else is
/// `TaskNotFound`, and so is a name repeated in `ids` after its first occurrence. Returns the
/// outcomes and the IDs actually deleted.
pub(crate) async fn delete(
    c: &impl GenericClient,
    queue_id: i64,
    ids: &[String],
    now: Micros,
) -> Result<(Vec<Result<(), StoreError>>, Vec<String>), StoreError> {
    if ids.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let st = c.prepare_cached(DELETE).await.db()?;
    let rows = c.query(&st, &[&queue_id, &ids, &now]).await.db()?;
    let mut deleted: HashSet<String> = HashSet::with_capacity(rows.len());
    for r in &rows {
        deleted.insert(r.try_get(0).db()?);
    }
    let mut gone = Vec::with_capacity(deleted.len());
    let out = ids
        .iter()
        .map(|id| {
            if deleted.remove(id) {
                gone.push(id.clone());
                Ok(())
            } else {
                Err(StoreError::TaskNotFound)
            }
        })
        .collect();
    Ok((out, gone))
}

/// Cleanup: deletes up to `chunk` finished rows past their state's retention (through
/// `tasks_finished`), their attempts with them. Returns how many went; fewer than `chunk`
/// means none are left.
pub(crate) async fn cleanup_chunk(
    c: &impl GenericClient,
    now: Micros,
    w: Windows,
    chunk: i64,
) -> Result<u64, StoreError> {
    let st = c.prepare_cached(CLEANUP).await.db()?;
    let mut total = 0i64;
    for state in [TaskState::Deleted, TaskState::Succeeded, TaskState::Failed] {
        let left = chunk - total;
        if left <= 0 {
            break;
        }
        let cut = now.saturating_sub(w.keep(state));
        let n: i64 = c
            .query_one(&st, &[&cut, &left, &(state as i32)])
            .await
            .db()?
            .try_get(0)
            .db()?;
        total += n;
    }
    Ok(total as u64)
}
