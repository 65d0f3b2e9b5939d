//! The create jobs of a batch: the insert of every task, and the resolution of the names that
//! conflicted (see the crate docs).

use std::collections::{HashMap, HashSet};

use deadpool_postgres::ClientWrapper;
use stratus_store::{StoreError, TaskState, Windows};
use stratus_types::Micros;
use tokio_postgres::Row;

use super::{Failure, Job};
use crate::tasks::blocks;
use stratus_store::rows::NewTask;

/// Conflict-resolution rounds of one create batch before the remaining names give up.
const MAX_ROUNDS: usize = 8;
/// The existing rows of names that conflicted.
const EXISTING: &str = "SELECT t.id, t.queue_id, t.task_id, t.state, t.finished_at
     FROM tasks t JOIN unnest($1::bigint[], $2::text[]) AS u(q, n)
       ON t.queue_id = u.q AND t.task_id = u.n";
/// Expired tombstones, with their attempts; only rows still finished go.
const DROP_TOMBSTONES: &str = "WITH gone AS (
         DELETE FROM tasks WHERE id = ANY($1::bigint[]) AND state >= 2 RETURNING id),
     a AS (DELETE FROM attempts WHERE task_row IN (SELECT id FROM gone))
     SELECT id FROM gone";

/// A task to insert, with where it came from.
struct Item<'a> {
    job: usize,
    idx: usize,
    queue: &'a str,
    /// Known once the queue lookup answered (0: the queue is not live).
    queue_id: i64,
    t: &'a NewTask,
    now: Micros,
    w: Windows,
}

impl<'a> Item<'a> {
    fn key(&self) -> (&'a str, &'a str) {
        (self.queue, self.t.task_id.as_str())
    }
}

/// The insert's parameters, one array per column.
pub(super) struct InsertParams<'a> {
    pub(super) queues: Vec<&'a str>,
    pub(super) ids: Vec<&'a str>,
    pub(super) sched: Vec<i64>,
    pub(super) created: Vec<i64>,
    pub(super) protos: Vec<&'a [u8]>,
}

/// The create jobs of a batch, resolved item by item.
pub(super) struct Creates<'a> {
    /// Queue names of the creates, sorted and unique (the lock order).
    pub(super) names: Vec<&'a str>,
    items: Vec<Item<'a>>,
    /// Per create job, each task's outcome once known.
    out: HashMap<usize, Vec<Option<Result<i64, StoreError>>>>,
    /// Live queues: id → name.
    queues: HashMap<i64, &'a str>,
    /// Items still to insert, in batch order (so the first of a repeated name goes first).
    pub(super) pending: Vec<usize>,
    rounds: usize,
}

impl<'a> Creates<'a> {
    pub(super) fn new(jobs: &'a [Job]) -> Self {
        let mut c = Creates {
            names: Vec::new(),
            items: Vec::new(),
            out: HashMap::new(),
            queues: HashMap::new(),
            pending: Vec::new(),
            rounds: 0,
        };
        for (j, job) in jobs.iter().enumerate() {
            let Job::Create {
                queue,
                tasks,
                now,
                w,
                ..
            } = job
            else {
                continue;
            };
            let mut slots = Vec::with_capacity(tasks.len());
            for (idx, t) in tasks.iter().enumerate() {
                match t {
                    Err(e) => slots.push(Some(Err(e.clone()))),
                    Ok(t) => {
                        slots.push(None);
                        c.items.push(Item {
                            job: j,
                            idx,
                            queue,
                            queue_id: 0,
                            t,
                            now: *now,
                            w: *w,
                        });
                    }
                }
            }
            c.out.insert(j, slots);
        }
        c.names = c.items.iter().map(|i| i.queue).collect();
        c.names.sort_unstable();
        c.names.dedup();
        c.pending = (0..c.items.len()).collect();
        c
    }

    fn set(&mut self, i: usize, r: Result<i64, StoreError>) {
        let it = &self.items[i];
        if let Some(slot) = self.out.get_mut(&it.job).and_then(|s| s.get_mut(it.idx)) {
            *slot = Some(r);
        }
    }

    /// The first pending item of each name (inserted now) and the others (they wait for its
    /// fate).
    pub(super) fn candidates(&mut self) -> (Vec<usize>, Vec<usize>) {
        self.rounds += 1;
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        self.pending
            .iter()
            .partition(|&&i| seen.insert(self.items[i].key()))
    }

    pub(super) fn insert_params(&self, cands: &[usize]) -> InsertParams<'a> {
        let items = cands.iter().map(|&i| &self.items[i]);
        InsertParams {
            queues: items.clone().map(|it| it.queue).collect(),
            ids: items.clone().map(|it| it.t.task_id.as_str()).collect(),
            sched: items.clone().map(|it| it.t.schedule_time).collect(),
            created: items.clone().map(|it| it.t.create_time).collect(),
            protos: items.map(|it| it.t.proto.as_slice()).collect(),
        }
    }

    /// Records the live queues; tasks of the others fail with `QueueNotFound`.
    pub(super) fn found_queues(&mut self, rows: &[Row]) -> Result<(), Failure> {
        let mut ids: HashMap<&str, i64> = HashMap::new();
        for r in rows {
            let (id, name): (i64, &str) = (r.try_get(0)?, r.try_get(1)?);
            if let Some(&n) = self.names.iter().find(|n| **n == name) {
                ids.insert(n, id);
                self.queues.insert(id, n);
            }
        }
        let mut missing = Vec::new();
        for (i, it) in self.items.iter_mut().enumerate() {
            match ids.get(it.queue) {
                Some(&id) => it.queue_id = id,
                None => missing.push(i),
            }
        }
        for i in missing {
            self.set(i, Err(StoreError::QueueNotFound));
        }
        let items = &self.items;
        self.pending.retain(|&i| items[i].queue_id != 0);
        Ok(())
    }

    /// Another round: inserts the next candidates and settles them.
    pub(super) async fn round(
        &mut self,
        c: &ClientWrapper,
        st_insert: &tokio_postgres::Statement,
    ) -> Result<(), Failure> {
        if self.rounds >= MAX_ROUNDS {
            for i in std::mem::take(&mut self.pending) {
                self.set(
                    i,
                    Err(StoreError::Unavailable(
                        "the task name is being created and deleted concurrently; try again".into(),
                    )),
                );
            }
            return Ok(());
        }
        let (cands, rest) = self.candidates();
        let p = self.insert_params(&cands);
        let rows = c
            .query(
                st_insert,
                &[&p.queues, &p.ids, &p.sched, &p.created, &p.protos],
            )
            .await?;
        self.settle(c, cands, rest, rows).await
    }

    /// Settles one round from the rows the insert returned: inserted candidates are created;
    /// the others meet a live row (`TaskExists`), a tombstone inside the window
    /// (`TaskRecentlyExisted`) or an expired tombstone, deleted here so the next round inserts
    /// again. Later items of an inserted or live name are `TaskExists`; the rest wait for the
    /// next round.
    pub(super) async fn settle(
        &mut self,
        c: &ClientWrapper,
        cands: Vec<usize>,
        rest: Vec<usize>,
        rows: Vec<Row>,
    ) -> Result<(), Failure> {
        let live = |it: &Item<'_>| it.queue_id != 0;
        let by_key: HashMap<(&str, &str), usize> = cands
            .iter()
            .filter(|&&i| live(&self.items[i]))
            .map(|&i| (self.items[i].key(), i))
            .collect();
        let mut inserted: HashSet<usize> = HashSet::new();
        let mut taken: HashSet<(&str, &str)> = HashSet::new();
        for r in &rows {
            let (id, q, n): (i64, i64, &str) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let Some(&queue) = self.queues.get(&q) else {
                continue;
            };
            if let Some(&i) = by_key.get(&(queue, n)) {
                inserted.insert(i);
                taken.insert(self.items[i].key());
                self.set(i, Ok(id));
            }
        }
        let conflicts: Vec<usize> = by_key
            .values()
            .copied()
            .filter(|i| !inserted.contains(i))
            .collect();
        let mut next: Vec<usize> = Vec::new();
        if !conflicts.is_empty() {
            let st = c.prepare_cached(EXISTING).await?;
            let qids: Vec<i64> = conflicts.iter().map(|&i| self.items[i].queue_id).collect();
            let tids: Vec<&str> = conflicts
                .iter()
                .map(|&i| self.items[i].t.task_id.as_str())
                .collect();
            let mut existing: HashMap<(i64, String), (i64, i32, Option<Micros>)> = HashMap::new();
            for r in c.query(&st, &[&qids, &tids]).await? {
                existing.insert(
                    (r.try_get(1)?, r.try_get(2)?),
                    (r.try_get(0)?, r.try_get(3)?, r.try_get(4)?),
                );
            }
            let mut expired: Vec<i64> = Vec::new();
            for i in conflicts {
                let it = &self.items[i];
                match existing.get(&(it.queue_id, it.t.task_id.clone())) {
                    // Gone since the insert (cleanup): insert again.
                    None => next.push(i),
                    Some(&(_, state, _)) if TaskState::from_i32(state).is_live() => {
                        taken.insert(it.key());
                        self.set(i, Err(StoreError::TaskExists));
                    }
                    Some(&(_, _, finished_at)) if blocks(finished_at, it.now, it.w) => {
                        self.set(i, Err(StoreError::TaskRecentlyExisted));
                    }
                    Some(&(row, _, _)) => {
                        expired.push(row);
                        next.push(i);
                    }
                }
            }
            if !expired.is_empty() {
                // Only still-finished rows go (a re-run may have made one live meanwhile; the
                // next round then sees it as live).
                expired.sort_unstable();
                expired.dedup();
                let st = c.prepare_cached(DROP_TOMBSTONES).await?;
                c.query(&st, &[&expired]).await?;
            }
        }
        for i in rest {
            if !live(&self.items[i]) {
                continue;
            }
            if taken.contains(&self.items[i].key()) {
                self.set(i, Err(StoreError::TaskExists));
            } else {
                next.push(i);
            }
        }
        next.sort_unstable();
        self.pending = next;
        Ok(())
    }

    /// Each create job's per-task rows, and the NOTIFY payloads announcing the created rows
    /// per queue (in job order).
    #[allow(clippy::type_complexity)]
    pub(super) fn finish(
        self,
        node: &str,
    ) -> (HashMap<usize, Vec<Result<i64, StoreError>>>, Vec<String>) {
        let mut per_queue: Vec<(&str, Vec<i64>)> = Vec::new();
        for it in &self.items {
            let Some(Some(Ok(row))) = self.out.get(&it.job).and_then(|s| s.get(it.idx)) else {
                continue;
            };
            match per_queue.iter_mut().find(|(q, _)| *q == it.queue) {
                Some((_, rows)) => rows.push(*row),
                None => per_queue.push((it.queue, vec![*row])),
            }
        }
        let notices = per_queue
            .iter()
            .flat_map(|(q, rows)| crate::notify::created(node, q, rows))
            .collect();
        let out = self
            .out
            .into_iter()
            .map(|(j, slots)| {
                let slots = slots
                    .into_iter()
                    .map(|s| {
                        s.unwrap_or_else(|| {
                            Err(StoreError::Internal("task left unanswered".into()))
                        })
                    })
                    .collect();
                (j, slots)
            })
            .collect();
        (out, notices)
    }
}
