//! The attempt outcome jobs of a batch: applied in Rust to the rows the batch locked, written
//! back with one statement per table.

use std::collections::HashMap;

use deadpool_postgres::ClientWrapper;
use stratus_store::StoreError;
use stratus_store::TaskState;
use stratus_store::dispatch::{AttemptOutcome, Decision, DueTask, Recorded, apply_attempt};
use stratus_types::Micros;
use stratus_types::proto::prost::Message;
use tokio_postgres::Row;

use super::{Failure, Job};
use crate::dispatch::due_row;

/// The task rows the outcome jobs of a batch touch, sorted (the lock order) and unique.
pub(super) fn attempt_rows(jobs: &[Job]) -> Vec<i64> {
    let mut rows: Vec<i64> = jobs
        .iter()
        .filter_map(|j| match j {
            Job::Attempt { outcome, .. } => Some(outcome.row),
            Job::Create { .. } => None,
        })
        .collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// The task rows of the fenced outcome jobs of a batch, sorted and unique.
pub(super) fn fenced_rows(jobs: &[Job]) -> Vec<i64> {
    let mut rows: Vec<i64> = jobs
        .iter()
        .filter_map(|j| match j {
            Job::Attempt { outcome, .. } if outcome.fence.is_some() => Some(outcome.row),
            _ => None,
        })
        .collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// A locked live task row and what the batch did to it.
struct Slot {
    due: DueTask,
    queue_id: i64,
    /// Attempts recorded for this row so far (the last `seq`).
    seq: i64,
    state: TaskState,
    finished_at: Option<Micros>,
    dirty: bool,
}

/// The row updates of a batch's outcomes, one array per column.
#[derive(Default)]
pub(super) struct Writes<'a> {
    pub(super) ids: Vec<i64>,
    pub(super) states: Vec<i32>,
    pub(super) fins: Vec<Option<i64>>,
    pub(super) scheds: Vec<i64>,
    pub(super) protos: Vec<Vec<u8>>,
    pub(super) execs: Vec<i32>,
    pub(super) prevs: Vec<Option<i32>>,
    pub(super) seqs: Vec<i64>,
    pub(super) attempts: AttemptRows<'a>,
}

/// The outcome jobs of a batch, applied to their locked rows.
pub(super) struct Outcomes<'a> {
    /// Each outcome job's answer, by job index.
    pub(super) answers: HashMap<usize, Result<Recorded, StoreError>>,
    pub(super) writes: Writes<'a>,
}

impl<'a> Outcomes<'a> {
    /// Applies the outcomes in batch order to the rows `loaded` (locked `FOR UPDATE`), so
    /// several outcomes of one task compose; checks the fence of fenced ones against
    /// `leases`, the leases this node holds (locked `FOR SHARE` until commit).
    pub(super) async fn apply(
        c: &ClientWrapper,
        jobs: &'a [Job],
        loaded: Vec<Row>,
        leases: Vec<Row>,
    ) -> Result<Outcomes<'a>, Failure> {
        let mut out = Outcomes {
            answers: HashMap::new(),
            writes: Writes::default(),
        };
        if loaded.is_empty() && !jobs.iter().any(|j| matches!(j, Job::Attempt { .. })) {
            return Ok(out);
        }
        let mut slots: HashMap<i64, Slot> = HashMap::new();
        for r in &loaded {
            let due = due_row(r)?;
            slots.insert(
                due.row,
                Slot {
                    due,
                    queue_id: r.try_get(6)?,
                    seq: r.try_get(7)?,
                    state: TaskState::Scheduled,
                    finished_at: None,
                    dirty: false,
                },
            );
        }

        let mut held: HashMap<i64, i64> = HashMap::new();
        for r in &leases {
            held.insert(r.try_get(0)?, r.try_get(1)?);
        }

        let mut lost: Vec<(usize, i64)> = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            let Job::Attempt {
                outcome: o, now, ..
            } = job
            else {
                continue;
            };
            let Some(slot) = slots.get_mut(&o.row).filter(|s| s.state.is_live()) else {
                out.answers.insert(j, Err(StoreError::TaskNotFound));
                continue;
            };
            if let Some(epoch) = o.fence
                && held.get(&slot.queue_id) != Some(&epoch)
            {
                lost.push((j, slot.queue_id));
                continue;
            }
            let decision = apply_attempt(&mut slot.due.task, &mut slot.due.meta, o);
            if let Decision::Retry(at) = decision {
                slot.due.schedule_time = at;
            }
            slot.state = decision.state();
            slot.finished_at = (slot.state != TaskState::Scheduled).then_some(*now);
            slot.seq += 1;
            slot.dirty = true;
            out.writes.attempts.push(o, slot.seq);
            out.answers.insert(
                j,
                Ok(Recorded {
                    decision,
                    task: slot.due.clone(),
                }),
            );
        }
        if !lost.is_empty() {
            let mut ids: Vec<i64> = lost.iter().map(|(_, q)| *q).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut names: HashMap<i64, String> = HashMap::new();
            for r in c
                .query(
                    "SELECT id, name FROM queues WHERE id = ANY($1::bigint[])",
                    &[&ids],
                )
                .await?
            {
                names.insert(r.try_get(0)?, r.try_get(1)?);
            }
            for (j, q) in lost {
                let name = names.get(&q).map_or("?", String::as_str);
                out.answers.insert(
                    j,
                    Err(StoreError::Unavailable(format!(
                        "the lease of queue {name} is no longer held by this node"
                    ))),
                );
            }
        }

        let w = &mut out.writes;
        for s in slots.values().filter(|s| s.dirty) {
            w.ids.push(s.due.row);
            w.states.push(s.state as i32);
            w.fins.push(s.finished_at);
            w.scheds.push(s.due.schedule_time);
            w.protos.push(s.due.task.encode_to_vec());
            w.execs.push(s.due.meta.execution_count);
            w.prevs.push(s.due.meta.previous_response.map(i32::from));
            w.seqs.push(s.seq);
        }
        Ok(out)
    }
}

/// Columns of the `attempts` rows a batch inserts.
#[derive(Default)]
pub(super) struct AttemptRows<'a> {
    pub(super) rows: Vec<i64>,
    pub(super) seqs: Vec<i64>,
    pub(super) dispatched: Vec<i64>,
    pub(super) responded: Vec<i64>,
    pub(super) statuses: Vec<Option<i32>>,
    pub(super) errors: Vec<Option<&'a str>>,
}

impl<'a> AttemptRows<'a> {
    fn push(&mut self, o: &'a AttemptOutcome, seq: i64) {
        self.rows.push(o.row);
        self.seqs.push(seq);
        self.dispatched.push(o.dispatch_time);
        self.responded.push(o.response_time);
        self.statuses.push(o.http_status.map(i32::from));
        self.errors.push(o.error.as_deref());
    }
}
