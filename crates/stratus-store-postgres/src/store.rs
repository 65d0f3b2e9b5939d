//! The [`Store`] impl: creates and outcomes go to the group-commit writer, everything else runs
//! on a pooled connection (writes in their own transaction). Every call is bounded by
//! `op_timeout` ([`PgStore::bounded`]).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use stratus_store::dispatch::{AttemptOutcome, DueTask, Recorded, TaskRecord};
use stratus_store::{
    QueuePage, QueueUpdate, Store, StoreError, TaskCursor, TaskPage, TaskState, Windows,
};
use stratus_types::proto::google::iam::v1::Policy;
use stratus_types::proto::tasks::{Queue, Task};
use stratus_types::queue::QueueFilter;
use stratus_types::{LocationPath, Micros, QueuePath, TaskPath};

use crate::error::PgResult;
use crate::{PgStore, blobs, dispatch, notify, queues, tasks};

/// Finished task rows deleted per cleanup transaction, so retention never holds many row locks
/// for long.
const CLEANUP_CHUNK: i64 = 10_000;

/// Sends notifications inside the caller's transaction (delivered when it commits).
async fn notify_all(
    c: &impl GenericClient,
    channel: &str,
    payloads: &[String],
) -> Result<(), StoreError> {
    if payloads.is_empty() {
        return Ok(());
    }
    let st = c
        .prepare_cached("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .await
        .db()?;
    c.execute(&st, &[&channel, &payloads]).await.db()?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn create_queue(
        &self,
        queue: Queue,
        now: Micros,
        w: Windows,
    ) -> Result<Queue, StoreError> {
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.db()?;
            let q = queues::create(&tx, queue, now, w).await?;
            notify_all(
                &tx,
                self.channel(),
                &[notify::queue_changed(self.node_id(), &q.name)],
            )
            .await?;
            tx.commit().await.db()?;
            Ok(q)
        })
        .await
    }

    async fn update_queue(
        &self,
        name: &QueuePath,
        update: QueueUpdate,
        now: Micros,
        w: Windows,
    ) -> Result<Queue, StoreError> {
        let name = name.to_string();
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.db()?;
            let q = queues::update(&tx, &name, update, now, w).await?;
            notify_all(
                &tx,
                self.channel(),
                &[notify::queue_changed(self.node_id(), &name)],
            )
            .await?;
            tx.commit().await.db()?;
            Ok(q)
        })
        .await
    }

    async fn get_queue(&self, name: &QueuePath) -> Result<Queue, StoreError> {
        let name = name.to_string();
        self.bounded(async {
            let c = self.client().await?;
            queues::get(&c, &name).await
        })
        .await
    }

    async fn list_queues(
        &self,
        parent: &LocationPath,
        filter: &QueueFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<QueuePage, StoreError> {
        self.bounded(async {
            let c = self.client().await?;
            queues::list(&c, parent, filter, after, limit).await
        })
        .await
    }

    async fn delete_queue(&self, name: &QueuePath, now: Micros) -> Result<(), StoreError> {
        let name = name.to_string();
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.db()?;
            queues::delete(&tx, &name, now).await?;
            notify_all(
                &tx,
                self.channel(),
                &[notify::queue_deleted(self.node_id(), &name)],
            )
            .await?;
            tx.commit().await.db()
        })
        .await
    }

    async fn purge_queue(&self, name: &QueuePath, now: Micros) -> Result<Queue, StoreError> {
        let name = name.to_string();
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.db()?;
            let q = queues::purge(&tx, &name, now).await?;
            notify_all(
                &tx,
                self.channel(),
                &[notify::queue_changed(self.node_id(), &name)],
            )
            .await?;
            tx.commit().await.db()?;
            Ok(q)
        })
        .await
    }

    async fn set_queue_state(&self, name: &QueuePath, state: i32) -> Result<Queue, StoreError> {
        let name = name.to_string();
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.db()?;
            let q = queues::set_state(&tx, &name, state).await?;
            notify_all(
                &tx,
                self.channel(),
                &[notify::queue_changed(self.node_id(), &name)],
            )
            .await?;
            tx.commit().await.db()?;
            Ok(q)
        })
        .await
    }

    async fn create_tasks(
        &self,
        queue: &QueuePath,
        new: Vec<Task>,
        now: Micros,
        w: Windows,
    ) -> Result<Vec<Result<DueTask, StoreError>>, StoreError> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let name = queue.to_string();
        // Encoding happens here, on the caller's task, so the writers only run SQL.
        let prepared: Vec<_> = new
            .into_iter()
            .map(|t| stratus_store::rows::prepare(&name, t, now))
            .collect();
        self.bounded(self.writer().create(name, prepared, now, w))
            .await
    }

    async fn get_task(&self, name: &TaskPath, now: Micros, w: Windows) -> Result<Task, StoreError> {
        let queue = name.queue.to_string();
        self.bounded(async {
            let c = self.client().await?;
            tasks::get(&c, &queue, &name.task, now, w).await
        })
        .await
    }

    async fn list_tasks(
        &self,
        queue: &QueuePath,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<TaskPage, StoreError> {
        let name = queue.to_string();
        self.bounded(async {
            let c = self.client().await?;
            let id = queues::require_id(&c, &name).await?;
            tasks::list(&c, id, after, limit).await
        })
        .await
    }

    async fn delete_tasks(
        &self,
        queue: &QueuePath,
        ids: Vec<String>,
        now: Micros,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let name = queue.to_string();
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.db()?;
            let id = queues::require_id(&tx, &name).await?;
            let (out, gone) = tasks::delete(&tx, id, &ids, now).await?;
            notify_all(
                &tx,
                self.channel(),
                &notify::deleted(self.node_id(), &name, &gone),
            )
            .await?;
            tx.commit().await.db()?;
            Ok(out)
        })
        .await
    }

    async fn get_iam_policy(&self, queue: &QueuePath) -> Result<Policy, StoreError> {
        let name = queue.to_string();
        self.bounded(async {
            let c = self.client().await?;
            queues::get_policy(&c, &name).await
        })
        .await
    }

    async fn set_iam_policy(
        &self,
        queue: &QueuePath,
        policy: Policy,
    ) -> Result<Policy, StoreError> {
        let name = queue.to_string();
        self.bounded(async {
            let c = self.client().await?;
            queues::set_policy(&c, &name, policy).await
        })
        .await
    }

    async fn get_blob(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.bounded(async {
            let c = self.client().await?;
            blobs::get(&c, namespace, key).await
        })
        .await
    }

    async fn peer_stats(&self) -> Result<Vec<String>, StoreError> {
        self.bounded(async {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT stats FROM nodes
                     WHERE id <> $1 AND stats IS NOT NULL
                       AND stats_at > now() - make_interval(secs => $2)",
                )
                .await
                .map_err(crate::error::pg)?;
            let max_age = stratus_store::PEER_STATS_MAX_AGE.as_secs_f64();
            let rows = c
                .query(&st, &[&self.node_id(), &max_age])
                .await
                .map_err(crate::error::pg)?;
            rows.iter()
                .map(|r| r.try_get::<_, String>(0).map_err(crate::error::pg))
                .collect()
        })
        .await
    }

    async fn put_blob(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        now: Micros,
    ) -> Result<(), StoreError> {
        self.bounded(async {
            let c = self.client().await?;
            blobs::put(&c, namespace, key, &value, now).await
        })
        .await
    }

    async fn list_all_queues(&self) -> Result<Vec<Queue>, StoreError> {
        self.bounded(async {
            let c = self.client().await?;
            queues::all(&c).await
        })
        .await
    }

    async fn due_tasks(
        &self,
        queue: &QueuePath,
        after: Option<&TaskCursor>,
        until: Micros,
        limit: usize,
    ) -> Result<Vec<DueTask>, StoreError> {
        let name = queue.to_string();
        self.bounded(async {
            let c = self.client().await?;
            let id = queues::require_id(&c, &name).await?;
            dispatch::due(&c, id, after, until, limit).await
        })
        .await
    }

    async fn live_tasks(
        &self,
        queue: &QueuePath,
        rows: &[i64],
    ) -> Result<Vec<DueTask>, StoreError> {
        let name = queue.to_string();
        self.bounded(async {
            let c = self.client().await?;
            let id = queues::require_id(&c, &name).await?;
            dispatch::live_rows(&c, id, rows).await
        })
        .await
    }

    async fn get_due_task(&self, name: &TaskPath) -> Result<DueTask, StoreError> {
        let queue = name.queue.to_string();
        self.bounded(async {
            let c = self.client().await?;
            dispatch::due_one(&c, &queue, &name.task).await
        })
        .await
    }

    async fn record_attempt(
        &self,
        outcome: AttemptOutcome,
        now: Micros,
    ) -> Result<Recorded, StoreError> {
        self.bounded(self.writer().attempt(outcome, now)).await
    }

    async fn task_record(&self, name: &TaskPath) -> Result<TaskRecord, StoreError> {
        let queue = name.queue.to_string();
        self.bounded(async {
            let mut c = self.client().await?;
            // One snapshot for the row and its history.
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .db()?;
            let rec = dispatch::task_record(&tx, &queue, &name.task).await?;
            tx.commit().await.db()?;
            Ok(rec)
        })
        .await
    }

    async fn list_finished(
        &self,
        queue: &QueuePath,
        state: TaskState,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let name = queue.to_string();
        self.bounded(async {
            let c = self.client().await?;
            let id = queues::require_id(&c, &name).await?;
            dispatch::finished(&c, id, state, after, limit).await
        })
        .await
    }

    async fn rerun_task(&self, name: &TaskPath, now: Micros) -> Result<DueTask, StoreError> {
        let queue = name.queue.to_string();
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.db()?;
            let t = dispatch::rerun(&tx, &queue, &name.task, now).await?;
            notify_all(
                &tx,
                self.channel(),
                &notify::created(self.node_id(), &queue, &[t.row]),
            )
            .await?;
            tx.commit().await.db()?;
            Ok(t)
        })
        .await
    }

    async fn cleanup(&self, now: Micros, w: Windows, blob_ttl: Micros) -> Result<u64, StoreError> {
        self.bounded(async {
            let c = self.client().await?;
            // Each chunk is its own (autocommit) statement: no lock outlives it.
            let mut total = 0;
            loop {
                let n = tasks::cleanup_chunk(&c, now, w, CLEANUP_CHUNK).await?;
                total += n;
                if n < CLEANUP_CHUNK as u64 {
                    break;
                }
            }
            Ok(total
                + queues::cleanup(&c, now, w).await?
                + blobs::cleanup(&c, now, blob_ttl).await?)
        })
        .await
    }
}
