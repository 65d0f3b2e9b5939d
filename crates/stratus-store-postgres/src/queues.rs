//! SQL of the `queues`, `iam_policies` and `leases` tables.
//!
//! A queue row is live while `deleted_at IS NULL`; a deleted queue keeps its row as the
//! tombstone that blocks its name for the reuse window. The `state` and `purge_time` columns
//! are the truth for those fields and are laid over the decoded proto on every read.
//!
//! Writes lock the queue row (`FOR UPDATE`) before touching anything else of the queue, so they
//! serialise with each other; those that create, delete or purge a queue first take the queue's
//! name lock ([`lock_name`]), which the writer's task creates hold shared.

use deadpool_postgres::GenericClient;
use stratus_store::{QueuePage, QueueUpdate, StoreError, Windows};
use stratus_types::proto::google::iam::v1::Policy;
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::Queue;
use stratus_types::queue::QueueFilter;
use stratus_types::time::{micros_to_ts, ts_to_micros};
use stratus_types::{LocationPath, Micros, QueuePath};

use crate::error::{PgResult, decode};

/// The columns [`to_queue`] reads.
const LIVE: &str = "SELECT id, proto, state, purge_time FROM queues
     WHERE name = $1 AND deleted_at IS NULL";
const LIVE_FOR_UPDATE: &str = "SELECT id, proto, state, purge_time FROM queues
     WHERE name = $1 AND deleted_at IS NULL FOR UPDATE";
/// ListQueues: a range scan of `queues_location`, in chunks.
const LIST: &str = "SELECT proto, state, purge_time, name FROM queues
     WHERE project = $1 AND location = $2 AND deleted_at IS NULL AND name > $3
     ORDER BY name LIMIT $4";
/// PurgeQueue: live tasks of the queue through `tasks_due`, tombstoned when created before now.
const PURGE_TASKS: &str = "UPDATE tasks SET state = 4, finished_at = $2
     WHERE queue_id = $1 AND state <= 1 AND create_time < $2";
/// Everything a queue owns: its tasks (tombstones included) with their attempts.
const DROP_TASKS: &str = "WITH gone AS (DELETE FROM tasks WHERE queue_id = $1 RETURNING id)
     DELETE FROM attempts WHERE task_row IN (SELECT id FROM gone)";

/// A live queue row.
pub(crate) struct Row {
    pub(crate) id: i64,
    pub(crate) queue: Queue,
}

/// Decodes a stored queue and lays the owned columns over it.
pub(crate) fn to_queue(
    proto: &[u8],
    state: i32,
    purge_time: Option<Micros>,
) -> Result<Queue, StoreError> {
    let mut q = Queue::decode(proto).map_err(|e| decode("queue", e))?;
    q.state = state;
    q.purge_time = purge_time.map(micros_to_ts);
    Ok(q)
}

fn row_of(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let proto: &[u8] = r.try_get(1).db()?;
    Ok(Row {
        id: r.try_get(0).db()?,
        queue: to_queue(proto, r.try_get(2).db()?, r.try_get(3).db()?)?,
    })
}

/// The id of the live queue `name`.
pub(crate) async fn live_id(c: &impl GenericClient, name: &str) -> Result<Option<i64>, StoreError> {
    let st = c
        .prepare_cached("SELECT id FROM queues WHERE name = $1 AND deleted_at IS NULL")
        .await
        .db()?;
    match c.query_opt(&st, &[&name]).await.db()? {
        Some(r) => Ok(Some(r.try_get(0).db()?)),
        None => Ok(None),
    }
}

/// The id of the live queue `name`, or `QueueNotFound`.
pub(crate) async fn require_id(c: &impl GenericClient, name: &str) -> Result<i64, StoreError> {
    live_id(c, name).await?.ok_or(StoreError::QueueNotFound)
}

async fn live(
    c: &impl GenericClient,
    name: &str,
    for_update: bool,
) -> Result<Option<Row>, StoreError> {
    let st = c
        .prepare_cached(if for_update { LIVE_FOR_UPDATE } else { LIVE })
        .await
        .db()?;
    c.query_opt(&st, &[&name])
        .await
        .db()?
        .as_ref()
        .map(row_of)
        .transpose()
}

/// A live queue, or `QueueNotFound`.
pub(crate) async fn get(c: &impl GenericClient, name: &str) -> Result<Queue, StoreError> {
    live(c, name, false)
        .await?
        .map(|r| r.queue)
        .ok_or(StoreError::QueueNotFound)
}

/// Makes `name` free for a new queue: `QueueExists` when live, `QueueRecentlyDeleted` while
/// the tombstone is inside the reuse window; an expired tombstone (and anything left of that
/// queue) is deleted so the new queue gets a fresh row and id.
async fn claim_name(
    c: &impl GenericClient,
    name: &str,
    now: Micros,
    w: Windows,
) -> Result<(), StoreError> {
    let st = c
        .prepare_cached("SELECT id, deleted_at FROM queues WHERE name = $1 FOR UPDATE")
        .await
        .db()?;
    let Some(r) = c.query_opt(&st, &[&name]).await.db()? else {
        return Ok(());
    };
    let (id, deleted_at): (i64, Option<Micros>) = (r.try_get(0).db()?, r.try_get(1).db()?);
    match deleted_at {
        None => Err(StoreError::QueueExists),
        Some(at) if at > now.saturating_sub(w.queue_reuse_block) => {
            Err(StoreError::QueueRecentlyDeleted)
        }
        Some(_) => {
            drop_contents(c, id).await?;
            c.execute("DELETE FROM queues WHERE id = $1", &[&id])
                .await
                .db()?;
            Ok(())
        }
    }
}

/// Deletes everything a queue owns: its tasks (tombstones included) with their attempts, its
/// policy and its lease.
async fn drop_contents(c: &impl GenericClient, id: i64) -> Result<(), StoreError> {
    let st = c.prepare_cached(DROP_TASKS).await.db()?;
    c.execute(&st, &[&id]).await.db()?;
    c.execute("DELETE FROM iam_policies WHERE queue_id = $1", &[&id])
        .await
        .db()?;
    // After the tasks: a writer batch holding a task row of this queue may still want the
    // lease row (fencing); taking it last keeps the lock order tasks → leases.
    c.execute("DELETE FROM leases WHERE queue_id = $1", &[&id])
        .await
        .db()?;
    Ok(())
}

/// Inserts a live queue row and its lease row. `QueueExists` when a concurrent create won the
/// name.
async fn insert(c: &impl GenericClient, q: &Queue) -> Result<(), StoreError> {
    let path = QueuePath::try_parse(&q.name)
        .ok_or_else(|| StoreError::Internal(format!("invalid queue name {:?}", q.name)))?;
    let st = c
        .prepare_cached(
            "INSERT INTO queues (name, project, location, state, proto, purge_time)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .await
        .db()?;
    let purge = q.purge_time.as_ref().map(ts_to_micros);
    let row = c
        .query_opt(
            &st,
            &[
                &q.name,
                &path.location.project,
                &path.location.location,
                &q.state,
                &q.encode_to_vec(),
                &purge,
            ],
        )
        .await
        .db()?
        .ok_or(StoreError::QueueExists)?;
    let id: i64 = row.try_get(0).db()?;
    c.execute(
        "INSERT INTO leases (queue_id) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&id],
    )
    .await
    .db()?;
    Ok(())
}

async fn rewrite(c: &impl GenericClient, id: i64, q: &Queue) -> Result<(), StoreError> {
    let st = c
        .prepare_cached("UPDATE queues SET state = $2, proto = $3, purge_time = $4 WHERE id = $1")
        .await
        .db()?;
    let purge = q.purge_time.as_ref().map(ts_to_micros);
    c.execute(&st, &[&id, &q.state, &q.encode_to_vec(), &purge])
        .await
        .db()?;
    Ok(())
}

/// Serialises the transactions that create, delete or purge the queue `name` with each other
/// and with the writer's task creates, which hold the same lock shared (so a queue cannot be
/// deleted or purged under a create batch, and two upserts of a new name cannot both find it
/// free). A transaction-level advisory lock, keyed by a hash of the name: no row lock, no WAL;
/// a hash collision only serialises two unrelated queues.
async fn lock_name(c: &impl GenericClient, name: &str) -> Result<(), StoreError> {
    let st = c
        .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended('stratus queue ' || $1, 0))")
        .await
        .db()?;
    c.execute(&st, &[&name]).await.db()?;
    Ok(())
}

/// CreateQueue.
pub(crate) async fn create(
    c: &impl GenericClient,
    q: Queue,
    now: Micros,
    w: Windows,
) -> Result<Queue, StoreError> {
    lock_name(c, &q.name).await?;
    claim_name(c, &q.name, now, w).await?;
    insert(c, &q).await?;
    Ok(q)
}

/// UpdateQueue (upsert). On an existing queue the store keeps the fields it owns (`name`,
/// `state`, `purge_time`) whatever `update` returns.
pub(crate) async fn update(
    c: &impl GenericClient,
    name: &str,
    update: QueueUpdate,
    now: Micros,
    w: Windows,
) -> Result<Queue, StoreError> {
    lock_name(c, name).await?;
    if let Some(row) = live(c, name, true).await? {
        let (state, purge_time) = (row.queue.state, row.queue.purge_time);
        let mut q = update(Some(row.queue)).map_err(StoreError::Rejected)?;
        q.name = name.to_string();
        q.state = state;
        q.purge_time = purge_time;
        rewrite(c, row.id, &q).await?;
        return Ok(q);
    }
    claim_name(c, name, now, w).await?;
    let mut q = update(None).map_err(StoreError::Rejected)?;
    q.name = name.to_string();
    insert(c, &q).await?;
    Ok(q)
}

/// DeleteQueue: tombstone the row (first, so it is locked before anything else of the queue),
/// then drop the tasks, the policy and the lease.
pub(crate) async fn delete(
    c: &impl GenericClient,
    name: &str,
    now: Micros,
) -> Result<(), StoreError> {
    lock_name(c, name).await?;
    let st = c
        .prepare_cached(
            "UPDATE queues SET deleted_at = $2 WHERE name = $1 AND deleted_at IS NULL RETURNING id",
        )
        .await
        .db()?;
    let row = c
        .query_opt(&st, &[&name, &now])
        .await
        .db()?
        .ok_or(StoreError::QueueNotFound)?;
    drop_contents(c, row.try_get(0).db()?).await
}

/// PurgeQueue: `purge_time = now`, and every live task created before `now` becomes a
/// `Deleted` tombstone (through the `tasks_due` index).
pub(crate) async fn purge(
    c: &impl GenericClient,
    name: &str,
    now: Micros,
) -> Result<Queue, StoreError> {
    lock_name(c, name).await?;
    let mut row = live(c, name, true)
        .await?
        .ok_or(StoreError::QueueNotFound)?;
    row.queue.purge_time = Some(micros_to_ts(now));
    rewrite(c, row.id, &row.queue).await?;
    let st = c.prepare_cached(PURGE_TASKS).await.db()?;
    c.execute(&st, &[&row.id, &now]).await.db()?;
    Ok(row.queue)
}

/// Pause/Resume.
pub(crate) async fn set_state(
    c: &impl GenericClient,
    name: &str,
    state: i32,
) -> Result<Queue, StoreError> {
    let mut row = live(c, name, true)
        .await?
        .ok_or(StoreError::QueueNotFound)?;
    row.queue.state = state;
    rewrite(c, row.id, &row.queue).await?;
    Ok(row.queue)
}

/// ListQueues: scans the live queues of the location in name order after `after`, in chunks,
/// applying the filter, until `limit` match; one more match decides whether there is a next
/// page.
pub(crate) async fn list(
    c: &impl GenericClient,
    parent: &LocationPath,
    filter: &QueueFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<QueuePage, StoreError> {
    let st = c.prepare_cached(LIST).await.db()?;
    let chunk = i64::try_from(limit.saturating_add(1).clamp(16, 1000)).unwrap_or(1000);
    let mut cursor = after.unwrap_or("").to_string();
    let mut page = QueuePage::default();
    loop {
        let rows = c
            .query(&st, &[&parent.project, &parent.location, &cursor, &chunk])
            .await
            .db()?;
        for r in &rows {
            let proto: &[u8] = r.try_get(0).db()?;
            let q = to_queue(proto, r.try_get(1).db()?, r.try_get(2).db()?)?;
            if !filter.matches(&q) {
                continue;
            }
            if page.queues.len() == limit {
                page.next = page.queues.last().map(|q| q.name.clone());
                return Ok(page);
            }
            page.queues.push(q);
        }
        if (rows.len() as i64) < chunk {
            return Ok(page);
        }
        if let Some(last) = rows.last() {
            cursor = last.try_get(3).db()?;
        }
    }
}

/// Every live queue (the dispatcher's start-up list).
pub(crate) async fn all(c: &impl GenericClient) -> Result<Vec<Queue>, StoreError> {
    let rows = c
        .query(
            "SELECT proto, state, purge_time FROM queues WHERE deleted_at IS NULL ORDER BY id",
            &[],
        )
        .await
        .db()?;
    rows.iter()
        .map(|r| {
            let proto: &[u8] = r.try_get(0).db()?;
            to_queue(proto, r.try_get(1).db()?, r.try_get(2).db()?)
        })
        .collect()
}

/// GetIamPolicy: the stored policy, or the default one.
pub(crate) async fn get_policy(c: &impl GenericClient, name: &str) -> Result<Policy, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT p.policy FROM queues q LEFT JOIN iam_policies p ON p.queue_id = q.id
             WHERE q.name = $1 AND q.deleted_at IS NULL",
        )
        .await
        .db()?;
    let row = c
        .query_opt(&st, &[&name])
        .await
        .db()?
        .ok_or(StoreError::QueueNotFound)?;
    let blob: Option<&[u8]> = row.try_get(0).db()?;
    blob.map_or(Ok(Policy::default()), |b| {
        Policy::decode(b).map_err(|e| decode("iam policy", e))
    })
}

/// SetIamPolicy (the queue row is held `FOR SHARE` so a concurrent delete cannot orphan it).
pub(crate) async fn set_policy(
    c: &impl GenericClient,
    name: &str,
    policy: Policy,
) -> Result<Policy, StoreError> {
    let st = c
        .prepare_cached(
            "WITH q AS (SELECT id FROM queues WHERE name = $1 AND deleted_at IS NULL FOR SHARE)
             INSERT INTO iam_policies (queue_id, policy) SELECT id, $2 FROM q
             ON CONFLICT (queue_id) DO UPDATE SET policy = excluded.policy
             RETURNING queue_id",
        )
        .await
        .db()?;
    c.query_opt(&st, &[&name, &policy.encode_to_vec()])
        .await
        .db()?
        .ok_or(StoreError::QueueNotFound)?;
    Ok(policy)
}

/// Cleanup: queue tombstones past the reuse window (their tasks went with the delete).
pub(crate) async fn cleanup(
    c: &impl GenericClient,
    now: Micros,
    w: Windows,
) -> Result<u64, StoreError> {
    c.execute(
        "DELETE FROM queues WHERE deleted_at IS NOT NULL AND deleted_at <= $1",
        &[&now.saturating_sub(w.queue_reuse_block)],
    )
    .await
    .db()
}
