//! SQL of the `queues` and `iam_policies` tables.
//!
//! A queue row is live while `deleted_at IS NULL`; a deleted queue keeps its row as the
//! tombstone that blocks its name for the reuse window. The `state` and `purge_time` columns
//! are the truth for those fields and are laid over the decoded proto on every read.

use rusqlite::{Connection, OptionalExtension, params};
use stratus_store::{QueuePage, QueueUpdate, StoreError, Windows};
use stratus_types::proto::google::iam::v1::Policy;
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::Queue;
use stratus_types::queue::QueueFilter;
use stratus_types::time::{micros_to_ts, ts_to_micros};
use stratus_types::{LocationPath, Micros, QueuePath};

use crate::error::{SqlResult, decode};

/// ListQueues: a range scan of `queues_location`.
pub(crate) const LIST: &str = "SELECT proto, state, purge_time FROM queues
     WHERE project = ?1 AND location = ?2 AND deleted_at IS NULL AND name > ?3 ORDER BY name";
/// PurgeQueue: live tasks of the queue through `tasks_due`, tombstoned when created before now.
pub(crate) const PURGE_TASKS: &str = "UPDATE tasks SET state = 4, finished_at = ?2 WHERE queue_id = ?1 AND state <= 1 AND create_time < ?2";

/// A live queue row.
struct Row {
    id: i64,
    queue: Queue,
}

fn to_queue(proto: &[u8], state: i32, purge_time: Option<Micros>) -> Result<Queue, StoreError> {
    let mut q = Queue::decode(proto).map_err(|e| decode("queue", e))?;
    q.state = state;
    q.purge_time = purge_time.map(micros_to_ts);
    Ok(q)
}

/// The id of the live queue `name`.
pub(crate) fn live_id(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT id FROM queues WHERE name = ?1 AND deleted_at IS NULL")
        .db()?
        .query_row([name], |r| r.get(0))
        .optional()
        .db()
}

/// The id of the live queue `name`, or `QueueNotFound`.
pub(crate) fn require_id(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    live_id(conn, name)?.ok_or(StoreError::QueueNotFound)
}

fn live(conn: &Connection, name: &str) -> Result<Option<Row>, StoreError> {
    let row = conn
        .prepare_cached("SELECT id, proto, state, purge_time FROM queues WHERE name = ?1 AND deleted_at IS NULL")
        .db()?
        .query_row([name], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .db()?;
    row.map(|(id, proto, state, purge)| {
        Ok(Row {
            id,
            queue: to_queue(&proto, state, purge)?,
        })
    })
    .transpose()
}

/// A live queue, or `QueueNotFound`.
pub(crate) fn get(conn: &Connection, name: &str) -> Result<Queue, StoreError> {
    live(conn, name)?
        .map(|r| r.queue)
        .ok_or(StoreError::QueueNotFound)
}

/// Makes `name` free for a new queue: `QueueExists` when live, `QueueRecentlyDeleted` while
/// the tombstone is inside the reuse window; an expired tombstone (and anything left of that
/// queue) is deleted so the new queue gets a fresh row and id.
fn claim_name(conn: &Connection, name: &str, now: Micros, w: Windows) -> Result<(), StoreError> {
    let row: Option<(i64, Option<Micros>)> = conn
        .prepare_cached("SELECT id, deleted_at FROM queues WHERE name = ?1")
        .db()?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    match row {
        None => Ok(()),
        Some((_, None)) => Err(StoreError::QueueExists),
        Some((_, Some(at))) if at > now.saturating_sub(w.queue_reuse_block) => {
            Err(StoreError::QueueRecentlyDeleted)
        }
        Some((id, Some(_))) => {
            drop_contents(conn, id)?;
            conn.prepare_cached("DELETE FROM queues WHERE id = ?1")
                .db()?
                .execute([id])
                .db()?;
            Ok(())
        }
    }
}

/// Deletes everything a queue owns (its tasks, tombstones included, and its policy).
fn drop_contents(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM tasks WHERE queue_id = ?1")
        .db()?
        .execute([id])
        .db()?;
    conn.prepare_cached("DELETE FROM iam_policies WHERE queue_id = ?1")
        .db()?
        .execute([id])
        .db()?;
    Ok(())
}

fn insert(conn: &Connection, q: &Queue) -> Result<(), StoreError> {
    let path = QueuePath::try_parse(&q.name)
        .ok_or_else(|| StoreError::Internal(format!("invalid queue name {:?}", q.name)))?;
    conn.prepare_cached(
        "INSERT INTO queues (name, project, location, state, proto, purge_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .db()?
    .execute(params![
        q.name,
        path.location.project,
        path.location.location,
        q.state,
        q.encode_to_vec(),
        q.purge_time.as_ref().map(ts_to_micros),
    ])
    .db()?;
    Ok(())
}

fn rewrite(conn: &Connection, id: i64, q: &Queue) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE queues SET state = ?2, proto = ?3, purge_time = ?4 WHERE id = ?1")
        .db()?
        .execute(params![
            id,
            q.state,
            q.encode_to_vec(),
            q.purge_time.as_ref().map(ts_to_micros)
        ])
        .db()?;
    Ok(())
}

/// CreateQueue.
pub(crate) fn create(
    conn: &Connection,
    q: Queue,
    now: Micros,
    w: Windows,
) -> Result<Queue, StoreError> {
    claim_name(conn, &q.name, now, w)?;
    insert(conn, &q)?;
    Ok(q)
}

/// UpdateQueue (upsert). On an existing queue the store keeps the fields it owns (`name`,
/// `state`, `purge_time`) whatever `update` returns.
pub(crate) fn update(
    conn: &Connection,
    name: &str,
    update: QueueUpdate,
    now: Micros,
    w: Windows,
) -> Result<Queue, StoreError> {
    if let Some(row) = live(conn, name)? {
        let (state, purge_time) = (row.queue.state, row.queue.purge_time);
        let mut q = update(Some(row.queue)).map_err(StoreError::Rejected)?;
        q.name = name.to_string();
        q.state = state;
        q.purge_time = purge_time;
        rewrite(conn, row.id, &q)?;
        return Ok(q);
    }
    claim_name(conn, name, now, w)?;
    let mut q = update(None).map_err(StoreError::Rejected)?;
    q.name = name.to_string();
    insert(conn, &q)?;
    Ok(q)
}

/// DeleteQueue: tombstone the row, drop the tasks and the policy.
pub(crate) fn delete(conn: &Connection, name: &str, now: Micros) -> Result<(), StoreError> {
    let id = require_id(conn, name)?;
    drop_contents(conn, id)?;
    conn.prepare_cached("UPDATE queues SET deleted_at = ?2 WHERE id = ?1")
        .db()?
        .execute(params![id, now])
        .db()?;
    Ok(())
}

/// PurgeQueue: `purge_time = now`, and every live task created before `now` becomes a
/// `Deleted` tombstone (through the `tasks_due` index).
pub(crate) fn purge(conn: &Connection, name: &str, now: Micros) -> Result<Queue, StoreError> {
    let mut row = live(conn, name)?.ok_or(StoreError::QueueNotFound)?;
    row.queue.purge_time = Some(micros_to_ts(now));
    rewrite(conn, row.id, &row.queue)?;
    conn.prepare_cached(PURGE_TASKS)
        .db()?
        .execute(params![row.id, now])
        .db()?;
    Ok(row.queue)
}

/// Pause/Resume.
pub(crate) fn set_state(conn: &Connection, name: &str, state: i32) -> Result<Queue, StoreError> {
    let mut row = live(conn, name)?.ok_or(StoreError::QueueNotFound)?;
    row.queue.state = state;
    rewrite(conn, row.id, &row.queue)?;
    Ok(row.queue)
}

/// ListQueues: scans the live queues of the location in name order after `after`, applying
/// the filter, until `limit` match; one more match decides whether there is a next page.
pub(crate) fn list(
    conn: &Connection,
    parent: &LocationPath,
    filter: &QueueFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<QueuePage, StoreError> {
    let mut stmt = conn.prepare_cached(LIST).db()?;
    let mut rows = stmt
        .query(params![
            parent.project,
            parent.location,
            after.unwrap_or("")
        ])
        .db()?;
    let mut page = QueuePage::default();
    while let Some(r) = rows.next().db()? {
        let q = to_queue(
            &r.get::<_, Vec<u8>>(0).db()?,
            r.get(1).db()?,
            r.get(2).db()?,
        )?;
        if !filter.matches(&q) {
            continue;
        }
        if page.queues.len() == limit {
            page.next = page.queues.last().map(|q| q.name.clone());
            break;
        }
        page.queues.push(q);
    }
    Ok(page)
}

/// GetIamPolicy: the stored policy, or the default one.
pub(crate) fn get_policy(conn: &Connection, name: &str) -> Result<Policy, StoreError> {
    let id = require_id(conn, name)?;
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT policy FROM iam_policies WHERE queue_id = ?1")
        .db()?
        .query_row([id], |r| r.get(0))
        .optional()
        .db()?;
    blob.map_or(Ok(Policy::default()), |b| {
        Policy::decode(b.as_slice()).map_err(|e| decode("iam policy", e))
    })
}

/// SetIamPolicy.
pub(crate) fn set_policy(
    conn: &Connection,
    name: &str,
    policy: Policy,
) -> Result<Policy, StoreError> {
    let id = require_id(conn, name)?;
    conn.prepare_cached(
        "INSERT INTO iam_policies (queue_id, policy) VALUES (?1, ?2)
         ON CONFLICT (queue_id) DO UPDATE SET policy = excluded.policy",
    )
    .db()?
    .execute(params![id, policy.encode_to_vec()])
    .db()?;
    Ok(policy)
}

/// Cleanup: queue tombstones past the reuse window (their tasks went with the delete).
pub(crate) fn cleanup(conn: &Connection, now: Micros, w: Windows) -> Result<u64, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM queues WHERE deleted_at IS NOT NULL AND deleted_at <= ?1")
        .db()?
        .execute([now.saturating_sub(w.queue_reuse_block)])
        .db()?;
    Ok(n as u64)
}
