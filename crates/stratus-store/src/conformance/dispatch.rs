//! Dispatch checks: the look-ahead scan, attempt outcomes and their counters, the attempt
//! history, finished tasks and re-runs, retention per state, and the start-up queue list.

use futures::future::join_all;
use stratus_types::proto::tasks::{Attempt, RetryConfig, Task, queue::State};
use stratus_types::time::{micros_to_duration, micros_to_ts};
use stratus_types::{Code, LocationPath, Micros, QueuePath, TaskPath};

use super::{DAY, HOUR, SECOND, T0, W, W0, create_ok, ids, make_queue, qp, task, task_at};
use crate::dispatch::{
    AttemptOutcome, AttemptRecord, Decision, DispatchMeta, DueTask, Recorded, TaskRecord,
    apply_attempt,
};
use crate::{Store, StoreError, TaskCursor, TaskState, Windows};

// ---- helpers --------------------------------------------------------------------------------

/// Retries after 10 s, 20 s, 40 s … (at most 300 s), stopping after `max_attempts` attempts
/// (-1: never); no duration limit.
fn retry(max_attempts: i32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        max_retry_duration: Some(micros_to_duration(0)),
        min_backoff: Some(micros_to_duration(10 * SECOND)),
        max_backoff: Some(micros_to_duration(300 * SECOND)),
        max_doublings: 3,
    }
}

/// An attempt of task instance `row` sent at `at` that ended one second later with `status`
/// (`None`: the connection was refused). The next schedule_time counts from its end.
fn outcome(row: i64, at: Micros, status: Option<u16>, rc: &RetryConfig) -> AttemptOutcome {
    AttemptOutcome {
        row,
        dispatch_time: at,
        response_time: at + SECOND,
        http_status: status,
        timed_out: false,
        error: status.is_none().then(|| "connection refused".to_string()),
        retry_after: None,
        retry: *rc,
        anchor: at + SECOND,
        fence: None,
    }
}

/// Creates one task with windows `w`, returning it with its row.
async fn create_due(s: &dyn Store, q: &QueuePath, t: Task, now: Micros, w: Windows) -> DueTask {
    let name = t.name.clone();
    s.create_tasks(q, vec![t], now, w)
        .await
        .unwrap_or_else(|e| panic!("create_tasks {name}: call failed with {e:?}"))
        .pop()
        .unwrap_or_else(|| panic!("create_tasks {name}: no outcome"))
        .unwrap_or_else(|e| panic!("create_tasks {name}: {e:?}"))
}

/// Records an attempt, expecting it to be accepted.
async fn record(s: &dyn Store, o: AttemptOutcome, now: Micros) -> Recorded {
    let row = o.row;
    s.record_attempt(o, now)
        .await
        .unwrap_or_else(|e| panic!("record_attempt on row {row}: {e:?}"))
}

/// The task record of `name`, expecting it to be kept.
async fn record_of(s: &dyn Store, name: &TaskPath) -> TaskRecord {
    s.task_record(name)
        .await
        .unwrap_or_else(|e| panic!("task_record {name}: {e:?}"))
}

/// Task IDs of due tasks.
fn due_ids(tasks: &[DueTask]) -> Vec<String> {
    tasks.iter().map(|t| t.task_id().to_string()).collect()
}

/// Task IDs of task records.
fn record_ids(records: &[TaskRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            r.task
                .name
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// `(seq, http_status)` of each attempt.
fn seqs(records: &[AttemptRecord]) -> Vec<(i64, Option<u16>)> {
    records.iter().map(|a| (a.seq, a.http_status)).collect()
}

/// Due task IDs of `q` up to `until`.
async fn due_until(s: &dyn Store, q: &QueuePath, until: Micros) -> Vec<String> {
    due_ids(
        &s.due_tasks(q, None, until, 1000)
            .await
            .unwrap_or_else(|e| panic!("due_tasks {q}: {e:?}")),
    )
}

/// Whether a row is still stored for `name` at `now` (live, or a finished row of any state):
/// with a tombstone window longer than any test, only a removed row reads as not found.
async fn row_kept(s: &dyn Store, name: TaskPath, now: Micros) -> bool {
    let forever = Windows {
        tombstone_ttl: 10_000 * DAY,
        ..W
    };
    match s.get_task(&name, now, forever).await {
        Ok(_) | Err(StoreError::TaskRecentlyExisted) => true,
        Err(StoreError::TaskNotFound) => false,
        Err(e) => panic!("get_task {name}: {e:?}"),
    }
}

fn cursor(schedule_time: Micros, id: &str) -> TaskCursor {
    TaskCursor {
        schedule_time,
        task_id: id.into(),
    }
}

// ---- checks ---------------------------------------------------------------------------------

pub(super) async fn dispatch_due_tasks(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    assert_eq!(
        s.due_tasks(&q, None, T0 + DAY, 10).await,
        Ok(Vec::new()),
        "an empty queue has nothing due"
    );
    let plan = [
        ("e", 3),
        ("c", 2),
        ("a", 1),
        ("d", 2),
        ("b", 2),
        ("gone", 0),
        ("later", 60),
    ];
    let mut created = Vec::new();
    for (id, at) in plan {
        let d = create_due(s, &q, task_at(&q, id, T0 + at * SECOND, T0), T0, W).await;
        assert_eq!(d.task_id(), id, "create_tasks returns the task it created");
        assert_eq!(
            d.meta,
            DispatchMeta::default(),
            "a new task has no counters"
        );
        created.push(d);
    }
    let other = qp("other");
    make_queue(s, &other).await;
    create_ok(s, &other, task_at(&other, "x", T0, T0), T0).await;
    assert_eq!(
        s.delete_tasks(&q, vec!["gone".into()], T0).await,
        Ok(vec![Ok(())])
    );

    let due = |after: Option<TaskCursor>, until: Micros, limit: usize| {
        let q = &q;
        async move {
            let got = s
                .due_tasks(q, after.as_ref(), until, limit)
                .await
                .unwrap_or_else(|e| panic!("due_tasks: {e:?}"));
            due_ids(&got)
        }
    };
    let at = |n: Micros| T0 + n * SECOND;
    assert_eq!(
        due(None, at(3), 100).await,
        ["a", "b", "c", "d", "e"],
        "by (schedule_time, task id), a deleted task left out"
    );
    assert_eq!(
        due(None, at(2), 100).await,
        ["a", "b", "c", "d"],
        "`until` is inclusive"
    );
    assert_eq!(
        due(None, at(2) - 1, 100).await,
        ["a"],
        "nothing after `until`"
    );
    assert_eq!(
        due(None, T0, 100).await,
        Vec::<String>::new(),
        "the deleted task due at T0 is not due"
    );
    assert_eq!(
        due(None, T0 + DAY, 100).await,
        ["a", "b", "c", "d", "e", "later"],
        "a later `until` reaches later tasks"
    );
    assert_eq!(due(None, at(3), 2).await, ["a", "b"], "limit");
    assert_eq!(
        due(Some(cursor(at(2), "b")), at(3), 2).await,
        ["c", "d"],
        "the cursor is exclusive"
    );
    assert_eq!(
        due(Some(cursor(at(2), "d")), at(3), 2).await,
        ["e"],
        "last page"
    );
    assert_eq!(
        due(Some(cursor(at(2), "bb")), at(3), 10).await,
        ["c", "d", "e"],
        "a cursor between tasks"
    );
    assert_eq!(
        due(Some(cursor(at(1), "zzz")), at(3), 10).await,
        ["b", "c", "d", "e"],
        "the cursor compares schedule_time first"
    );
    assert_eq!(
        due(Some(cursor(at(3), "e")), T0 + DAY, 10).await,
        ["later"],
        "after the cursor up to a later `until`"
    );

    // The full values: exactly what create_tasks returned (row, task, times, counters).
    let want: Vec<DueTask> = ["a", "b", "c", "d", "e", "later"]
        .iter()
        .map(|id| {
            created
                .iter()
                .find(|d| d.task_id() == *id)
                .cloned()
                .unwrap_or_else(|| panic!("created {id}"))
        })
        .collect();
    assert_eq!(
        s.due_tasks(&q, None, T0 + DAY, 100).await,
        Ok(want.clone()),
        "due tasks read back as created"
    );
    assert_eq!(
        s.get_due_task(&q.task("a")).await,
        Ok(want[0].clone()),
        "get_due_task reads the task as created"
    );
    for (name, what) in [
        (q.task("gone"), "deleted task"),
        (q.task("missing"), "missing task"),
        (qp("nope").task("a"), "missing queue"),
        (other.task("a"), "task of another queue"),
    ] {
        assert_eq!(
            s.get_due_task(&name).await,
            Err(StoreError::TaskNotFound),
            "get_due_task of a {what}"
        );
    }

    // Purged tasks are not due either.
    let p = qp("purged");
    make_queue(s, &p).await;
    create_ok(s, &p, task(&p, "old"), T0).await;
    s.purge_queue(&p, T0 + SECOND).await.expect("purge_queue");
    assert_eq!(
        due_until(s, &p, T0 + DAY).await,
        Vec::<String>::new(),
        "a purged task is not due"
    );

    assert_eq!(
        s.due_tasks(&qp("missing"), None, T0, 10).await,
        Err(StoreError::QueueNotFound),
        "missing queue"
    );
    s.delete_queue(&other, T0).await.expect("delete_queue");
    assert_eq!(
        s.due_tasks(&other, None, T0, 10).await,
        Err(StoreError::QueueNotFound),
        "deleted queue"
    );
}

pub(super) async fn dispatch_retry_updates_the_task(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    let created = create_due(s, &q, task(&q, "t"), T0, W).await;
    let name = q.task("t");
    let rc = retry(-1);

    // 503: retried 10 s after the attempt ended.
    let at = T0 + SECOND;
    let o = outcome(created.row, at, Some(503), &rc);
    let rec = record(s, o.clone(), at + SECOND).await;
    let next = at + SECOND + 10 * SECOND;
    assert_eq!(rec.decision, Decision::Retry(next), "a 503 is retried");
    let mut want = created.clone();
    assert_eq!(
        apply_attempt(&mut want.task, &mut want.meta, &o),
        rec.decision
    );
    want.schedule_time = next;
    assert_eq!(
        rec.task, want,
        "record_attempt returns the task as apply_attempt leaves it"
    );
    let got = s
        .get_task(&name, at + SECOND, W)
        .await
        .expect("a retried task stays live");
    assert_eq!(got, want.task, "get_task shows the stored outcome");
    assert_eq!(
        got.schedule_time,
        Some(micros_to_ts(next)),
        "schedule_time moved"
    );
    assert_eq!((got.dispatch_count, got.response_count), (1, 1), "counters");
    assert_eq!(
        got.first_attempt,
        Some(Attempt {
            dispatch_time: Some(micros_to_ts(at)),
            ..Default::default()
        }),
        "first_attempt holds the dispatch time only"
    );
    let last = got.last_attempt.clone().expect("last_attempt");
    assert_eq!(
        last.schedule_time,
        Some(micros_to_ts(T0)),
        "last_attempt.schedule_time is the time the attempt was due"
    );
    assert_eq!(last.dispatch_time, Some(micros_to_ts(at)));
    assert_eq!(last.response_time, Some(micros_to_ts(at + SECOND)));
    assert_eq!(
        last.response_status.map(|st| st.code),
        Some(Code::Unavailable.grpc()),
        "503 is UNAVAILABLE"
    );
    let page = s.list_tasks(&q, None, 10).await.expect("list_tasks");
    assert_eq!(page.tasks, vec![got], "list_tasks shows the stored outcome");

    assert_eq!(
        due_until(s, &q, next - 1).await,
        Vec::<String>::new(),
        "not due before its new schedule_time"
    );
    let due = s.due_tasks(&q, None, next, 10).await.expect("due_tasks");
    assert_eq!(due, vec![want.clone()], "due at its new schedule_time");
    assert_eq!(
        due[0].meta,
        DispatchMeta {
            execution_count: 0,
            previous_response: Some(503),
        },
        "a 5xx is not an execution"
    );
    assert_eq!(
        s.get_due_task(&name).await,
        Ok(want.clone()),
        "get_due_task"
    );

    // 404: an execution; backoff doubles; first_attempt stays.
    let o2 = outcome(created.row, next, Some(404), &rc);
    let rec2 = record(s, o2.clone(), next + SECOND).await;
    let next2 = next + SECOND + 20 * SECOND;
    assert_eq!(rec2.decision, Decision::Retry(next2), "a 404 is retried");
    apply_attempt(&mut want.task, &mut want.meta, &o2);
    want.schedule_time = next2;
    assert_eq!(rec2.task, want);
    let meta = |execution_count, previous_response| DispatchMeta {
        execution_count,
        previous_response: Some(previous_response),
    };
    assert_eq!(
        s.get_due_task(&name).await.map(|d| d.meta),
        Ok(meta(1, 404)),
        "counters after a 404"
    );
    let got = s.get_task(&name, next2, W).await.expect("get_task");
    assert_eq!((got.dispatch_count, got.response_count), (2, 2));
    assert_eq!(
        got.first_attempt.and_then(|a| a.dispatch_time),
        Some(micros_to_ts(at)),
        "first_attempt is the first dispatch"
    );

    // No response at all: previous response 0, response_count unchanged.
    let o3 = outcome(created.row, next2, None, &rc);
    let rec3 = record(s, o3.clone(), next2 + SECOND).await;
    let next3 = next2 + SECOND + 40 * SECOND;
    assert_eq!(rec3.decision, Decision::Retry(next3));
    assert_eq!(
        s.get_due_task(&name).await.map(|d| d.meta),
        Ok(meta(1, 0)),
        "a previous response of 0 (no response) is kept, not read as none"
    );

    // Timed out: previous response 504.
    let mut o4 = outcome(created.row, next3, None, &rc);
    o4.timed_out = true;
    o4.error = Some("deadline exceeded".into());
    record(s, o4.clone(), next3 + SECOND).await;
    let due = s
        .due_tasks(&q, None, T0 + DAY, 10)
        .await
        .expect("due_tasks");
    assert_eq!(due.len(), 1, "still one live task");
    assert_eq!(due[0].meta, meta(1, 504), "a timeout reads as 504");
    assert_eq!(due[0].row, created.row, "the row stays the same");
    let got = s.get_task(&name, next3, W).await.expect("get_task");
    assert_eq!((got.dispatch_count, got.response_count), (4, 2));
    assert_eq!(
        got.last_attempt
            .and_then(|a| a.response_status)
            .map(|st| st.code),
        Some(Code::DeadlineExceeded.grpc())
    );

    let r = record_of(s, &name).await;
    assert_eq!(r.state, TaskState::Scheduled, "still live");
    assert_eq!(r.finished_at, None);
    assert_eq!(r.row, created.row);
    assert_eq!(
        r.attempts,
        vec![
            AttemptRecord::of(&o, 1),
            AttemptRecord::of(&o2, 2),
            AttemptRecord::of(&o3, 3),
            AttemptRecord::of(&o4, 4),
        ],
        "every attempt is kept, in order"
    );

    // Concurrent outcomes for one task (RunTask while a dispatch is in flight) compose: each is
    // applied to the row as stored at that moment, none overwrites another.
    let calls = (0..8).map(|i| {
        s.record_attempt(
            outcome(created.row, T0 + HOUR + i * SECOND, Some(500), &rc),
            T0 + HOUR + i * SECOND + SECOND,
        )
    });
    for (i, r) in join_all(calls).await.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("concurrent outcome {i}: {e:?}"));
        assert!(
            matches!(r.decision, Decision::Retry(_)),
            "concurrent outcome {i}: {:?}",
            r.decision
        );
    }
    let got = s.get_task(&name, T0 + HOUR, W).await.expect("get_task");
    assert_eq!(
        (got.dispatch_count, got.response_count),
        (12, 10),
        "every concurrent outcome counted"
    );
    let r = record_of(s, &name).await;
    assert_eq!(
        r.attempts.iter().map(|a| a.seq).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<i64>>(),
        "concurrent attempts get distinct, consecutive seqs"
    );
    assert_eq!(
        s.get_due_task(&name).await.map(|d| d.meta),
        Ok(meta(1, 500)),
        "5xx outcomes add no execution"
    );
}

pub(super) async fn dispatch_success_finishes_the_task(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    let created = create_due(s, &q, task(&q, "t"), T0, W).await;
    create_ok(s, &q, task(&q, "u"), T0).await;
    let name = q.task("t");
    let rc = retry(-1);

    let o1 = outcome(created.row, T0, Some(500), &rc);
    let r1 = record(s, o1.clone(), T0 + SECOND).await;
    assert_eq!(r1.decision, Decision::Retry(T0 + 11 * SECOND));
    let o2 = outcome(created.row, T0 + 11 * SECOND, Some(200), &rc);
    let done = T0 + 12 * SECOND;
    let r2 = record(s, o2.clone(), done).await;
    assert_eq!(r2.decision, Decision::Succeeded, "a 200 succeeds");
    assert_eq!(r2.task.task.dispatch_count, 2);

    for now in [done, done + W.tombstone_ttl - 1] {
        assert_eq!(
            s.get_task(&name, now, W).await,
            Err(StoreError::TaskRecentlyExisted),
            "a succeeded task is a tombstone {} µs after it finished",
            now - done
        );
    }
    assert_eq!(
        s.get_task(&name, done + W.tombstone_ttl, W).await,
        Err(StoreError::TaskNotFound),
        "tombstone window over"
    );
    assert_eq!(
        s.get_due_task(&name).await,
        Err(StoreError::TaskNotFound),
        "a succeeded task cannot be run"
    );
    assert_eq!(
        due_until(s, &q, T0 + DAY).await,
        ["u"],
        "a succeeded task is not due"
    );
    assert_eq!(
        ids(&s.list_tasks(&q, None, 10).await.expect("list_tasks").tasks),
        ["u"],
        "a succeeded task is not listed"
    );
    assert_eq!(
        s.delete_tasks(&q, vec!["t".into()], done).await,
        Ok(vec![Err(StoreError::TaskNotFound)]),
        "a succeeded task cannot be deleted"
    );
    assert_eq!(
        s.create_tasks(&q, vec![task(&q, "t")], done, W)
            .await
            .map(|v| v.into_iter().map(|r| r.map(|_| ())).collect::<Vec<_>>()),
        Ok(vec![Err(StoreError::TaskRecentlyExisted)]),
        "a succeeded task blocks its name"
    );

    let rec = record_of(s, &name).await;
    assert_eq!(rec.state, TaskState::Succeeded, "task_record state");
    assert_eq!(
        rec.finished_at,
        Some(done),
        "finished_at is the `now` of the outcome"
    );
    assert_eq!(rec.row, created.row);
    assert_eq!(
        rec.attempts,
        vec![AttemptRecord::of(&o1, 1), AttemptRecord::of(&o2, 2)],
        "attempts in order"
    );
    assert_eq!(seqs(&rec.attempts), [(1, Some(500)), (2, Some(200))]);
    assert_eq!(rec.task, r2.task.task, "the task as last stored");
    assert_eq!(
        rec.task
            .last_attempt
            .as_ref()
            .and_then(|a| a.response_status.as_ref())
            .map(|st| st.code),
        Some(Code::Ok.grpc())
    );

    let listed = s
        .list_finished(&q, TaskState::Succeeded, None, 10)
        .await
        .expect("list_finished");
    assert_eq!(record_ids(&listed), ["t"], "list_finished(Succeeded)");
    assert!(listed[0].attempts.is_empty(), "lists carry no attempts");
    assert_eq!(
        (listed[0].state, listed[0].finished_at, listed[0].row),
        (TaskState::Succeeded, Some(done), created.row)
    );
    assert_eq!(
        s.list_finished(&q, TaskState::Failed, None, 10)
            .await
            .map(|l| l.len()),
        Ok(0),
        "nothing failed"
    );

    // A second outcome for the finished instance (RunTask racing the dispatcher) is refused.
    let late = outcome(created.row, done, Some(200), &rc);
    assert_eq!(
        s.record_attempt(late, done + SECOND).await,
        Err(StoreError::TaskNotFound),
        "an outcome for a finished task"
    );
    assert_eq!(
        record_of(s, &name).await,
        rec,
        "a refused outcome writes nothing"
    );

    // Concurrent 2xx outcomes for one live task: exactly one finishes it.
    let v = create_due(s, &q, task(&q, "v"), T0, W).await;
    let calls = (0..8).map(|_| s.record_attempt(outcome(v.row, T0, Some(200), &rc), done));
    let outcomes: Vec<_> = join_all(calls).await;
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(r) if r.decision == Decision::Succeeded))
        .count();
    let lost = outcomes
        .iter()
        .filter(|o| matches!(o, Err(StoreError::TaskNotFound)))
        .count();
    assert_eq!(
        (won, lost),
        (1, 7),
        "one outcome finishes a task, the others find it gone: {outcomes:?}"
    );
    assert_eq!(
        seqs(&record_of(s, &q.task("v")).await.attempts),
        [(1, Some(200))],
        "only the winning attempt is recorded"
    );

    let live = record_of(s, &q.task("u")).await;
    assert_eq!(
        (live.state, live.finished_at, live.attempts.len()),
        (TaskState::Scheduled, None, 0),
        "task_record of a live task never attempted"
    );
    for (name, what) in [
        (q.task("missing"), "missing task"),
        (qp("nope").task("t"), "missing queue"),
    ] {
        assert_eq!(
            s.task_record(&name).await.map(|_| ()),
            Err(StoreError::TaskNotFound),
            "task_record of a {what}"
        );
    }
}

pub(super) async fn dispatch_failure_and_rerun(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    let a = create_due(s, &q, task(&q, "a"), T0, W).await;
    let b = create_due(s, &q, task(&q, "b"), T0, W).await;
    let c = create_due(s, &q, task(&q, "c"), T0, W).await;
    create_ok(s, &q, task(&q, "live"), T0).await;
    let two = retry(2);

    // A 404 first, so the failed task has an execution count for the re-run to reset.
    let r = record(s, outcome(a.row, T0, Some(404), &two), T0 + SECOND).await;
    assert!(
        matches!(r.decision, Decision::Retry(_)),
        "first of two attempts is retried: {:?}",
        r.decision
    );
    let failed_at = T0 + 20 * SECOND;
    let r = record(
        s,
        outcome(a.row, T0 + 11 * SECOND, Some(500), &two),
        failed_at,
    )
    .await;
    assert_eq!(r.decision, Decision::Failed, "max_attempts reached");
    let r = record(s, outcome(b.row, T0, Some(404), &retry(1)), failed_at).await;
    assert_eq!(r.decision, Decision::Failed, "max_attempts 1");
    let r = record(s, outcome(c.row, T0, Some(204), &two), failed_at).await;
    assert_eq!(r.decision, Decision::Succeeded);

    assert_eq!(
        s.get_task(&q.task("a"), failed_at, W).await,
        Err(StoreError::TaskRecentlyExisted),
        "a failed task is a tombstone"
    );
    assert_eq!(
        due_until(s, &q, T0 + DAY).await,
        ["live"],
        "failed tasks are not due"
    );
    let rec = record_of(s, &q.task("a")).await;
    assert_eq!(
        (rec.state, rec.finished_at),
        (TaskState::Failed, Some(failed_at)),
        "task_record of a failed task"
    );
    assert_eq!(seqs(&rec.attempts), [(1, Some(404)), (2, Some(500))]);

    let list = |state: TaskState, after: Option<i64>, limit: usize| {
        let q = &q;
        async move {
            s.list_finished(q, state, after, limit)
                .await
                .unwrap_or_else(|e| panic!("list_finished: {e:?}"))
        }
    };
    let failed = list(TaskState::Failed, None, 10).await;
    assert_eq!(
        record_ids(&failed),
        ["a", "b"],
        "list_finished(Failed), oldest row first"
    );
    assert!(
        failed
            .iter()
            .all(|r| r.state == TaskState::Failed && r.attempts.is_empty()),
        "failed, without attempts: {failed:?}"
    );
    assert_eq!(
        (failed[0].row, failed[1].row),
        (a.row, b.row),
        "rows are the instances"
    );
    assert_eq!(
        record_ids(&list(TaskState::Failed, None, 1).await),
        ["a"],
        "limit"
    );
    assert_eq!(
        record_ids(&list(TaskState::Failed, Some(a.row), 10).await),
        ["b"],
        "after a row"
    );
    assert!(
        list(TaskState::Failed, Some(b.row), 10).await.is_empty(),
        "past the end"
    );
    assert_eq!(
        record_ids(&list(TaskState::Succeeded, None, 10).await),
        ["c"],
        "list_finished(Succeeded)"
    );
    assert_eq!(
        s.list_finished(&qp("missing"), TaskState::Failed, None, 10)
            .await
            .map(|l| l.len()),
        Err(StoreError::QueueNotFound)
    );

    // Rerun: live again at `now`, fresh counters, history kept.
    let now = failed_at + HOUR / 2;
    let rerun = s
        .rerun_task(&q.task("a"), now)
        .await
        .expect("rerun a failed task");
    assert_eq!(rerun.task_id(), "a");
    assert_eq!(rerun.schedule_time, now, "scheduled at `now`");
    assert_eq!(rerun.task.schedule_time, Some(micros_to_ts(now)));
    assert_eq!(
        (
            rerun.task.dispatch_count,
            rerun.task.response_count,
            rerun.task.first_attempt.clone(),
            rerun.task.last_attempt.clone()
        ),
        (0, 0, None, None),
        "fresh counters"
    );
    assert_eq!(rerun.meta, DispatchMeta::default(), "fresh dispatch meta");
    assert_eq!(
        s.get_task(&q.task("a"), now, W).await,
        Ok(rerun.task.clone()),
        "get_task sees the re-run task"
    );
    assert_eq!(
        s.get_due_task(&q.task("a")).await,
        Ok(rerun.clone()),
        "get_due_task sees the re-run task"
    );
    assert_eq!(
        due_until(s, &q, now).await,
        ["live", "a"],
        "the re-run task is due at `now` (after `live`, due at T0)"
    );
    let rec = record_of(s, &q.task("a")).await;
    assert_eq!(
        (rec.state, rec.finished_at),
        (TaskState::Scheduled, None),
        "live again"
    );
    assert_eq!(
        seqs(&rec.attempts),
        [(1, Some(404)), (2, Some(500))],
        "the attempt history is kept"
    );
    assert_eq!(
        record_ids(&list(TaskState::Failed, None, 10).await),
        ["b"],
        "no longer listed as failed"
    );

    // The retry budget starts over; numbering continues.
    let r = record(s, outcome(rerun.row, now, Some(500), &two), now + SECOND).await;
    assert!(
        matches!(r.decision, Decision::Retry(_)),
        "a re-run task has its attempts again: {:?}",
        r.decision
    );
    assert_eq!(r.task.task.dispatch_count, 1);
    assert_eq!(
        seqs(&record_of(s, &q.task("a")).await.attempts),
        [(1, Some(404)), (2, Some(500)), (3, Some(500))],
        "attempts after a re-run continue the sequence"
    );

    assert_eq!(
        s.rerun_task(&q.task("a"), now).await,
        Err(StoreError::TaskExists),
        "rerun of a live task"
    );
    assert_eq!(
        s.rerun_task(&q.task("live"), now).await,
        Err(StoreError::TaskExists),
        "rerun of a never finished task"
    );
    let again = s
        .rerun_task(&q.task("c"), now)
        .await
        .expect("rerun a succeeded task");
    assert_eq!(again.schedule_time, now);
    assert!(
        list(TaskState::Succeeded, None, 10).await.is_empty(),
        "no longer listed as succeeded"
    );
    s.delete_tasks(&q, vec!["live".into()], now)
        .await
        .expect("delete_tasks");
    for (name, what) in [
        (q.task("missing"), "an unknown task"),
        (q.task("live"), "a deleted task"),
        (qp("nope").task("a"), "a task of a missing queue"),
    ] {
        assert_eq!(
            s.rerun_task(&name, now).await,
            Err(StoreError::TaskNotFound),
            "rerun of {what}"
        );
    }
}

pub(super) async fn dispatch_outcome_for_a_gone_task(s: &dyn Store) {
    let rc = retry(-1);
    let q = qp("q");
    make_queue(s, &q).await;
    let a = create_due(s, &q, task(&q, "a"), T0, W).await;
    record(s, outcome(a.row, T0, Some(500), &rc), T0 + SECOND).await;

    // Deleted while its attempt was in flight.
    let deleted_at = T0 + 2 * SECOND;
    assert_eq!(
        s.delete_tasks(&q, vec!["a".into()], deleted_at).await,
        Ok(vec![Ok(())])
    );
    assert_eq!(
        s.record_attempt(outcome(a.row, T0 + SECOND, Some(200), &rc), T0 + 3 * SECOND)
            .await,
        Err(StoreError::TaskNotFound),
        "an outcome for a deleted task"
    );
    let tombstone = |name: TaskPath, finished_at: Micros, attempts: usize, what: &'static str| async move {
        assert_eq!(
            s.get_task(&name, finished_at + W.tombstone_ttl - 1, W)
                .await,
            Err(StoreError::TaskRecentlyExisted),
            "{what}: still a tombstone"
        );
        assert_eq!(
            s.get_task(&name, finished_at + W.tombstone_ttl, W).await,
            Err(StoreError::TaskNotFound),
            "{what}: the refused outcome did not move finished_at"
        );
        // A backend may or may not show a deleted tombstone as a record; either way the refused
        // outcome left no trace.
        match s.task_record(&name).await {
            Err(StoreError::TaskNotFound) => {}
            Ok(r) => {
                assert_eq!(r.state, TaskState::Deleted, "{what}: still deleted");
                assert_eq!(r.finished_at, Some(finished_at), "{what}: finished_at");
                assert_eq!(r.attempts.len(), attempts, "{what}: no attempt recorded");
            }
            Err(e) => panic!("{what}: task_record: {e:?}"),
        }
        assert_eq!(
            s.get_due_task(&name).await.map(|_| ()),
            Err(StoreError::TaskNotFound),
            "{what}: not live again"
        );
    };
    tombstone(q.task("a"), deleted_at, 1, "deleted").await;
    assert_eq!(
        due_until(s, &q, T0 + DAY).await,
        Vec::<String>::new(),
        "not due again"
    );

    // Purged while in flight.
    let p = qp("p");
    make_queue(s, &p).await;
    let pt = create_due(s, &p, task(&p, "t"), T0, W).await;
    s.purge_queue(&p, T0 + SECOND).await.expect("purge_queue");
    assert_eq!(
        s.record_attempt(outcome(pt.row, T0, Some(503), &rc), T0 + 2 * SECOND)
            .await,
        Err(StoreError::TaskNotFound),
        "an outcome for a purged task"
    );
    tombstone(p.task("t"), T0 + SECOND, 0, "purged").await;

    // The name re-created meanwhile: the old instance's outcome does not touch the new one.
    let r = qp("r");
    make_queue(s, &r).await;
    let old = create_due(s, &r, task(&r, "t"), T0, W0).await;
    s.delete_tasks(&r, vec!["t".into()], T0)
        .await
        .expect("delete_tasks");
    let new = create_due(s, &r, task_at(&r, "t", T0, T0 + SECOND), T0 + SECOND, W0).await;
    assert_ne!(new.row, old.row, "a re-created task is a new instance");
    assert_eq!(
        s.record_attempt(outcome(old.row, T0, Some(200), &rc), T0 + 2 * SECOND)
            .await,
        Err(StoreError::TaskNotFound),
        "an outcome for a replaced instance"
    );
    assert_eq!(
        s.get_due_task(&r.task("t")).await,
        Ok(new.clone()),
        "the new instance is untouched"
    );
    let rec = record_of(s, &r.task("t")).await;
    assert_eq!(
        (rec.state, rec.attempts.len()),
        (TaskState::Scheduled, 0),
        "no attempt was recorded for the new instance"
    );

    // The queue deleted meanwhile.
    let d = qp("d");
    make_queue(s, &d).await;
    let dt = create_due(s, &d, task(&d, "t"), T0, W).await;
    s.delete_queue(&d, T0 + SECOND).await.expect("delete_queue");
    assert_eq!(
        s.record_attempt(outcome(dt.row, T0, Some(200), &rc), T0 + 2 * SECOND)
            .await,
        Err(StoreError::TaskNotFound),
        "an outcome for a task of a deleted queue"
    );

    assert_eq!(
        s.record_attempt(outcome(i64::MAX - 7, T0, Some(200), &rc), T0)
            .await,
        Err(StoreError::TaskNotFound),
        "an outcome for a row that never existed"
    );
}

pub(super) async fn dispatch_retention_per_state(s: &dyn Store) {
    let w = Windows {
        tombstone_ttl: HOUR,
        queue_reuse_block: 7 * DAY,
        retain_succeeded: 2 * HOUR,
        retain_failed: 7 * DAY,
    };
    let blob_ttl = 10_000 * DAY;
    let q = qp("q");
    make_queue(s, &q).await;
    let mut rows = Vec::new();
    for id in ["del", "ok", "bad", "live"] {
        rows.push(create_due(s, &q, task_at(&q, id, T0 - HOUR, T0 - HOUR), T0 - HOUR, w).await);
    }
    s.delete_tasks(&q, vec!["del".into()], T0)
        .await
        .expect("delete_tasks");
    let r = record(
        s,
        outcome(rows[1].row, T0 - 2 * SECOND, Some(200), &retry(1)),
        T0,
    )
    .await;
    assert_eq!(r.decision, Decision::Succeeded);
    let r = record(
        s,
        outcome(rows[2].row, T0 - 2 * SECOND, Some(500), &retry(1)),
        T0,
    )
    .await;
    assert_eq!(r.decision, Decision::Failed);

    let kept = |id: &'static str, now: Micros| row_kept(s, q.task(id), now);
    let state_of = |id: &'static str| {
        let name = q.task(id);
        async move { s.task_record(&name).await.map(|r| r.state) }
    };

    // A retention shorter than the tombstone window does not shorten it.
    let short = Windows {
        retain_succeeded: 0,
        retain_failed: 0,
        ..w
    };
    assert_eq!(
        s.cleanup(T0 + HOUR - 1, short, blob_ttl).await,
        Ok(0),
        "nothing goes inside the tombstone window, whatever the retention"
    );

    assert_eq!(
        s.cleanup(T0 + HOUR - 1, w, blob_ttl).await,
        Ok(0),
        "nothing is old enough yet"
    );
    for id in ["del", "ok", "bad", "live"] {
        assert!(kept(id, T0 + HOUR - 1).await, "{id} kept before 1 h");
    }

    // 1 h: the deleted tombstone goes; the succeeded row is kept though it no longer blocks.
    let n = s.cleanup(T0 + HOUR, w, blob_ttl).await.expect("cleanup");
    assert_ne!(n, 0, "cleanup at 1 h removes the deleted tombstone");
    assert!(
        !kept("del", T0 + HOUR).await,
        "deleted tombstone gone after tombstone_ttl"
    );
    assert_eq!(state_of("ok").await, Ok(TaskState::Succeeded), "ok at 1 h");
    assert_eq!(state_of("bad").await, Ok(TaskState::Failed), "bad at 1 h");
    assert_eq!(
        s.get_task(&q.task("ok"), T0 + HOUR, w).await,
        Err(StoreError::TaskNotFound),
        "a retained succeeded row blocks its name only for tombstone_ttl"
    );

    // 2 h: the succeeded row goes.
    assert_eq!(
        s.cleanup(T0 + 2 * HOUR - 1, w, blob_ttl).await,
        Ok(0),
        "succeeded kept until retain_succeeded"
    );
    assert_eq!(
        state_of("ok").await,
        Ok(TaskState::Succeeded),
        "ok just before 2 h"
    );
    let n = s
        .cleanup(T0 + 2 * HOUR, w, blob_ttl)
        .await
        .expect("cleanup");
    assert_ne!(n, 0, "cleanup at 2 h removes the succeeded row");
    assert_eq!(
        state_of("ok").await,
        Err(StoreError::TaskNotFound),
        "succeeded row gone after retain_succeeded"
    );
    assert!(!kept("ok", T0 + 2 * HOUR).await, "no row left for ok");
    assert_eq!(state_of("bad").await, Ok(TaskState::Failed), "bad at 2 h");

    // 7 days: the failed row goes.
    assert_eq!(
        s.cleanup(T0 + 7 * DAY - 1, w, blob_ttl).await,
        Ok(0),
        "failed kept until retain_failed"
    );
    assert_eq!(
        s.list_finished(&q, TaskState::Failed, None, 10)
            .await
            .map(|l| record_ids(&l)),
        Ok(vec!["bad".to_string()]),
        "still listed just before 7 days"
    );
    let n = s.cleanup(T0 + 7 * DAY, w, blob_ttl).await.expect("cleanup");
    assert_ne!(n, 0, "cleanup at 7 days removes the failed row");
    assert_eq!(
        state_of("bad").await,
        Err(StoreError::TaskNotFound),
        "failed row gone after retain_failed"
    );
    assert_eq!(
        s.list_finished(&q, TaskState::Failed, None, 10)
            .await
            .map(|l| l.len()),
        Ok(0),
        "no longer listed"
    );
    assert_eq!(
        s.cleanup(T0 + 7 * DAY, w, blob_ttl).await,
        Ok(0),
        "nothing left to remove"
    );

    assert_eq!(
        s.get_due_task(&q.task("live")).await,
        Ok(rows[3].clone()),
        "live tasks are never cleaned"
    );
    // The names are free again: a fresh instance with no history.
    for id in ["del", "ok", "bad"] {
        let fresh = create_due(s, &q, task(&q, id), T0 + 7 * DAY, w).await;
        assert_eq!(
            record_of(s, &q.task(id)).await.attempts.len(),
            0,
            "{id}: the attempts went with the row"
        );
        assert!(fresh.row > rows[3].row, "{id}: a new row");
    }
}

pub(super) async fn dispatch_list_all_queues(s: &dyn Store) {
    assert_eq!(s.list_all_queues().await, Ok(Vec::new()), "an empty store");
    let other_location = LocationPath {
        project: "p".into(),
        location: "other".into(),
    };
    let other_project = LocationPath {
        project: "p2".into(),
        location: "l".into(),
    };
    let live = [
        qp("a"),
        qp("b"),
        qp("f"),
        other_location.queue("c"),
        other_project.queue("d"),
    ];
    for q in &live {
        make_queue(s, q).await;
    }
    make_queue(s, &qp("e")).await;
    s.delete_queue(&qp("e"), T0).await.expect("delete_queue");
    s.set_queue_state(&qp("b"), State::Paused as i32)
        .await
        .expect("pause");
    s.set_queue_state(&other_project.queue("d"), State::Disabled as i32)
        .await
        .expect("disable");
    s.purge_queue(&qp("f"), T0 + SECOND).await.expect("purge");

    let mut got = s.list_all_queues().await.expect("list_all_queues");
    got.sort_by(|x, y| x.name.cmp(&y.name));
    let mut want = Vec::new();
    for q in &live {
        want.push(s.get_queue(q).await.expect("get_queue"));
    }
    want.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(
        got, want,
        "every live queue of every location, as get_queue reads it, deleted ones left out"
    );
    let state = |id: &str| {
        got.iter()
            .find(|q| q.name.ends_with(&format!("/queues/{id}")))
            .map(|q| (q.state, q.purge_time))
    };
    assert_eq!(
        state("b"),
        Some((State::Paused as i32, None)),
        "queue state is filled in"
    );
    assert_eq!(state("d"), Some((State::Disabled as i32, None)));
    assert_eq!(
        state("f"),
        Some((State::Running as i32, Some(micros_to_ts(T0 + SECOND)))),
        "purge_time is filled in"
    );
    assert_eq!(state("e"), None, "a deleted queue is not listed");

    // Re-created after the reuse window: listed again.
    s.create_queue(super::queue(&qp("e")), T0 + W.queue_reuse_block, W)
        .await
        .expect("re-create");
    let n = s.list_all_queues().await.expect("list_all_queues").len();
    assert_eq!(n, live.len() + 1, "a re-created queue is listed");
}

pub(super) async fn dispatch_live_tasks(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    let a = create_due(s, &q, task_at(&q, "a", T0 + SECOND, T0), T0, W).await;
    let b = create_due(s, &q, task(&q, "b"), T0, W).await;
    let c = create_due(s, &q, task(&q, "c"), T0, W).await;
    let done = create_due(s, &q, task(&q, "done"), T0, W).await;
    let other = qp("other");
    make_queue(s, &other).await;
    let x = create_due(s, &other, task(&other, "x"), T0, W).await;
    assert!(
        a.row < b.row && b.row < c.row,
        "rows grow in creation order"
    );
    assert_eq!(
        s.live_tasks(&q, &[b.row, a.row]).await,
        Ok(vec![a.clone(), b.clone()]),
        "live tasks read back as created, in row order"
    );
    s.delete_tasks(&q, vec!["c".into()], T0)
        .await
        .expect("delete_tasks");
    let r = record(s, outcome(done.row, T0, Some(200), &retry(-1)), T0 + SECOND).await;
    assert_eq!(r.decision, Decision::Succeeded);
    assert_eq!(
        s.live_tasks(
            &q,
            &[c.row, done.row, b.row, x.row, i64::MAX - 3, a.row, b.row]
        )
        .await,
        Ok(vec![a.clone(), b.clone()]),
        "deleted and finished tasks, other queues' rows, unknown rows and repeats are left out"
    );
    let retried = record(
        s,
        outcome(a.row, T0 + SECOND, Some(503), &retry(-1)),
        T0 + 2 * SECOND,
    )
    .await;
    assert_eq!(
        s.live_tasks(&q, &[a.row]).await,
        Ok(vec![retried.task]),
        "a retried task reads as stored now"
    );
    assert_eq!(
        s.live_tasks(&q, &[]).await,
        Ok(Vec::new()),
        "no rows asked for"
    );
    assert_eq!(
        s.live_tasks(&other, &[x.row]).await,
        Ok(vec![x.clone()]),
        "the other queue's own row"
    );
    assert_eq!(
        s.live_tasks(&qp("missing"), &[a.row]).await,
        Err(StoreError::QueueNotFound),
        "missing queue"
    );
    s.delete_queue(&other, T0).await.expect("delete_queue");
    assert_eq!(
        s.live_tasks(&other, &[x.row]).await,
        Err(StoreError::QueueNotFound),
        "deleted queue"
    );
}
