//! The [`Store`] impl: writes go to the writer thread, reads to the read pool.
//!
//! Work that needs no database (encoding tasks, checking names) happens here, on the caller's
//! task, so that it runs in parallel and the single writer thread only runs SQL.

use async_trait::async_trait;
use stratus_store::dispatch::{AttemptOutcome, DueTask, Recorded, TaskRecord};
use stratus_store::{
    QueuePage, QueueUpdate, Store, StoreError, TaskCursor, TaskPage, TaskState, Windows,
};
use stratus_types::proto::google::iam::v1::Policy;
use stratus_types::proto::tasks::{Queue, Task};
use stratus_types::queue::QueueFilter;
use stratus_types::{LocationPath, Micros, QueuePath, TaskPath};

use crate::{SqliteStore, blobs, dispatch, queues, tasks};

/// Finished task rows deleted per cleanup transaction, so cleanup never holds the writer for
/// long and creates keep flowing between its chunks.
const CLEANUP_CHUNK: i64 = 5_000;

#[async_trait]
impl Store for SqliteStore {
    async fn create_queue(
        &self,
        queue: Queue,
        now: Micros,
        w: Windows,
    ) -> Result<Queue, StoreError> {
        self.writer()
            .write(move |tx| queues::create(tx, queue, now, w))
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
        self.writer()
            .write(move |tx| queues::update(tx, &name, update, now, w))
            .await
    }

    async fn get_queue(&self, name: &QueuePath) -> Result<Queue, StoreError> {
        let name = name.to_string();
        self.readers().read(move |tx| queues::get(tx, &name)).await
    }

    async fn list_queues(
        &self,
        parent: &LocationPath,
        filter: &QueueFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<QueuePage, StoreError> {
        let (parent, filter, after) = (parent.clone(), filter.clone(), after.map(str::to_string));
        self.readers()
            .read(move |tx| queues::list(tx, &parent, &filter, after.as_deref(), limit))
            .await
    }

    async fn delete_queue(&self, name: &QueuePath, now: Micros) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer()
            .write(move |tx| queues::delete(tx, &name, now))
            .await
    }

    async fn purge_queue(&self, name: &QueuePath, now: Micros) -> Result<Queue, StoreError> {
        let name = name.to_string();
        self.writer()
            .write(move |tx| queues::purge(tx, &name, now))
            .await
    }

    async fn set_queue_state(&self, name: &QueuePath, state: i32) -> Result<Queue, StoreError> {
        let name = name.to_string();
        self.writer()
            .write(move |tx| queues::set_state(tx, &name, state))
            .await
    }

    async fn create_tasks(
        &self,
        queue: &QueuePath,
        new: Vec<Task>,
        now: Micros,
        w: Windows,
    ) -> Result<Vec<Result<DueTask, StoreError>>, StoreError> {
        let name = queue.to_string();
        let prepared: Vec<_> = new
            .into_iter()
            .map(|t| stratus_store::rows::prepare(&name, t, now))
            .collect();
        // No savepoint: the closure reports duplicates per item in `Ok` and fails only on a
        // storage error (which rolls back its whole batch).
        self.writer()
            .write_whole(move |tx| match queues::live_id(tx, &name)? {
                None => Ok(prepared
                    .iter()
                    .map(|_| Err(StoreError::QueueNotFound))
                    .collect()),
                Some(id) => tasks::create(tx, id, prepared, now, w),
            })
            .await
    }

    async fn get_task(&self, name: &TaskPath, now: Micros, w: Windows) -> Result<Task, StoreError> {
        let (queue, id) = (name.queue.to_string(), name.task.clone());
        self.readers()
            .read(move |tx| tasks::get(tx, &queue, &id, now, w))
            .await
    }

    async fn list_tasks(
        &self,
        queue: &QueuePath,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<TaskPage, StoreError> {
        let (name, after) = (queue.to_string(), after.cloned());
        self.readers()
            .read(move |tx| {
                let id = queues::require_id(tx, &name)?;
                tasks::list(tx, id, after.as_ref(), limit)
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
        self.writer()
            .write(move |tx| {
                let id = queues::require_id(tx, &name)?;
                tasks::delete(tx, id, &ids, now)
            })
            .await
    }

    async fn get_iam_policy(&self, queue: &QueuePath) -> Result<Policy, StoreError> {
        let name = queue.to_string();
        self.readers()
            .read(move |tx| queues::get_policy(tx, &name))
            .await
    }

    async fn set_iam_policy(
        &self,
        queue: &QueuePath,
        policy: Policy,
    ) -> Result<Policy, StoreError> {
        let name = queue.to_string();
        self.writer()
            .write(move |tx| queues::set_policy(tx, &name, policy))
            .await
    }

    async fn get_blob(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (ns, key) = (namespace.to_string(), key.to_string());
        self.readers()
            .read(move |tx| blobs::get(tx, &ns, &key))
            .await
    }

    async fn put_blob(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        now: Micros,
    ) -> Result<(), StoreError> {
        let (ns, key) = (namespace.to_string(), key.to_string());
        self.writer()
            .write(move |tx| blobs::put(tx, &ns, &key, &value, now))
            .await
    }

    async fn list_all_queues(&self) -> Result<Vec<Queue>, StoreError> {
        self.readers().read(|tx| dispatch::all_queues(tx)).await
    }

    async fn due_tasks(
        &self,
        queue: &QueuePath,
        after: Option<&TaskCursor>,
        until: Micros,
        limit: usize,
    ) -> Result<Vec<DueTask>, StoreError> {
        let (name, after) = (queue.to_string(), after.cloned());
        self.readers()
            .read(move |tx| {
                let id = queues::require_id(tx, &name)?;
                dispatch::due(tx, id, after.as_ref(), until, limit)
            })
            .await
    }

    async fn live_tasks(
        &self,
        queue: &QueuePath,
        rows: &[i64],
    ) -> Result<Vec<DueTask>, StoreError> {
        let (name, rows) = (queue.to_string(), rows.to_vec());
        self.readers()
            .read(move |tx| {
                let id = queues::require_id(tx, &name)?;
                dispatch::live_rows(tx, id, &rows)
            })
            .await
    }

    async fn get_due_task(&self, name: &TaskPath) -> Result<DueTask, StoreError> {
        let (queue, id) = (name.queue.to_string(), name.task.clone());
        self.readers()
            .read(move |tx| dispatch::due_one(tx, &queue, &id))
            .await
    }

    async fn record_attempt(
        &self,
        outcome: AttemptOutcome,
        now: Micros,
    ) -> Result<Recorded, StoreError> {
        // The hot path of dispatch: no savepoint (see `Writer::write_whole`). A task that is no
        // longer live is reported inside `Ok` before anything is written; only a storage error
        // fails the closure (and with it the batch).
        self.writer()
            .write_whole(move |tx| match dispatch::record(tx, &outcome, now) {
                Ok(r) => Ok(Ok(r)),
                Err(StoreError::TaskNotFound) => Ok(Err(StoreError::TaskNotFound)),
                Err(e) => Err(e),
            })
            .await?
    }

    async fn task_record(&self, name: &TaskPath) -> Result<TaskRecord, StoreError> {
        let (queue, id) = (name.queue.to_string(), name.task.clone());
        self.readers()
            .read(move |tx| dispatch::task_record(tx, &queue, &id))
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
        self.readers()
            .read(move |tx| {
                let id = queues::require_id(tx, &name)?;
                dispatch::finished(tx, id, state, after, limit)
            })
            .await
    }

    async fn rerun_task(&self, name: &TaskPath, now: Micros) -> Result<DueTask, StoreError> {
        let (queue, id) = (name.queue.to_string(), name.task.clone());
        self.writer()
            .write(move |tx| dispatch::rerun(tx, &queue, &id, now))
            .await
    }

    async fn cleanup(&self, now: Micros, w: Windows, blob_ttl: Micros) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self
                .writer()
                .write(move |tx| tasks::cleanup_chunk(tx, now, w, CLEANUP_CHUNK))
                .await?;
            total += n;
            if n < CLEANUP_CHUNK as u64 {
                break;
            }
        }
        let rest = self
            .writer()
            .write(move |tx| Ok(queues::cleanup(tx, now, w)? + blobs::cleanup(tx, now, blob_ttl)?))
            .await?;
        Ok(total + rest)
    }
}
