//! The store conformance suite: one set of behavioural checks every [`crate::Store`] must pass.
//!
//! Each check gets a fresh, empty store and drives it through the trait only, with explicit
//! `now` values and [`Windows`], so windows are crossed by arithmetic, never by sleeping. A
//! backend runs the whole suite from one test:
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     stratus_store::conformance::run_all(|| async {
//!         let dir = tempfile::tempdir().unwrap();
//!         (MyStore::open(dir.path()).unwrap(), dir) // the second value lives as long as the store
//!     })
//!     .await;
//! }
//! ```
//!
//! Every check runs even when an earlier one fails; the suite then panics naming each failed
//! check with its message. [`CHECKS`] and [`run_one`] let a backend run checks one at a time.
//!
//! The checks live in `queues` (queue lifecycle, name reuse, upsert, listing, state), `contents`
//! (delete, purge, IAM), `tasks` (create, deduplication and tombstones, get, list, delete),
//! `misc` (blobs, cleanup, concurrency) and `dispatch` (the due scan, attempt outcomes, attempt
//! history, failed tasks and re-runs, retention per state, the start-up queue list, live tasks
//! by row).

mod contents;
mod dispatch;
mod misc;
mod queues;
mod tasks;

use std::future::Future;
use std::pin::Pin;

use stratus_types::proto::tasks::{HttpMethod, HttpRequest, Queue, Task, task::MessageType};
use stratus_types::proto::wkt::Duration;
use stratus_types::queue::normalize_queue;
use stratus_types::time::{SECOND, micros_to_ts};
use stratus_types::{LocationPath, Micros, QueuePath};

use crate::{Store, StoreError, Windows};

/// A point in time all checks start from (2030-03-17).
pub const T0: Micros = 1_900_000_000 * SECOND;
/// One minute in µs.
pub const MINUTE: Micros = 60 * SECOND;
/// One hour in µs.
pub const HOUR: Micros = 60 * MINUTE;
/// One day in µs.
pub const DAY: Micros = 24 * HOUR;
/// The production-like windows: tombstones for an hour, queue names blocked for seven days.
pub const W: Windows = Windows {
    tombstone_ttl: HOUR,
    queue_reuse_block: 7 * DAY,
    retain_succeeded: HOUR,
    retain_failed: 7 * DAY,
};
/// Both windows zero: names are free again the moment they are released.
pub const W0: Windows = Windows {
    tombstone_ttl: 0,
    queue_reuse_block: 0,
    retain_succeeded: 0,
    retain_failed: 0,
};

type CheckFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

macro_rules! checks {
    ($($module:ident :: $name:ident),* $(,)?) => {
        /// The names of all checks, in the order [`run_all`] runs them.
        pub const CHECKS: &[&str] = &[$(stringify!($name)),*];

        fn check<'a>(name: &str, store: &'a dyn Store) -> Option<CheckFuture<'a>> {
            match name {
                $(stringify!($name) => Some(Box::pin($module::$name(store))),)*
                _ => None,
            }
        }
    };
}

checks!(
    queues::queue_create_and_get,
    queues::queue_name_reuse_window,
    queues::queue_update_upsert,
    queues::queue_list_filter_and_paging,
    queues::queue_state,
    contents::queue_delete_removes_everything,
    contents::queue_purge,
    contents::iam_policy,
    tasks::task_create_duplicates,
    tasks::task_create_in_missing_queue,
    tasks::task_get_and_tombstones,
    tasks::task_round_trip,
    tasks::task_list_order_and_paging,
    tasks::task_delete_outcomes,
    misc::blobs,
    misc::cleanup,
    misc::concurrent_creates,
    misc::ping,
    dispatch::dispatch_due_tasks,
    dispatch::dispatch_retry_updates_the_task,
    dispatch::dispatch_success_finishes_the_task,
    dispatch::dispatch_failure_and_rerun,
    dispatch::dispatch_outcome_for_a_gone_task,
    dispatch::dispatch_retention_per_state,
    dispatch::dispatch_list_all_queues,
    dispatch::dispatch_live_tasks,
);

/// Runs one named check against `store` (which should be empty). Panics when the check fails
/// or the name is unknown.
pub async fn run_one(name: &str, store: &dyn Store) {
    match check(name, store) {
        Some(fut) => fut.await,
        None => panic!("no conformance check named `{name}`"),
    }
}

/// Runs every check, each on a fresh store from `make`. `make` returns the store and a value to
/// keep alive while it is used (a temporary directory, a database handle), dropped after it.
/// Must be called inside a Tokio runtime. Panics listing every failed check.
pub async fn run_all<S, K, F, Fut>(make: F)
where
    S: Store,
    K: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, K)>,
{
    let mut failed = Vec::new();
    for &name in CHECKS {
        let (store, keep) = make().await;
        let outcome = tokio::spawn(async move {
            let _keep = keep;
            let store = store; // dropped before `_keep`
            run_one(name, &store).await;
        })
        .await;
        if let Err(e) = outcome {
            let msg = if e.is_panic() {
                let p = e.into_panic();
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "panicked".into())
            } else {
                e.to_string()
            };
            failed.push(format!("{name}: {msg}"));
        }
    }
    assert!(
        failed.is_empty(),
        "store conformance: {} of {} checks failed:\n  {}",
        failed.len(),
        CHECKS.len(),
        failed.join("\n  ")
    );
}

// ---- shared helpers -------------------------------------------------------------------------

/// `projects/p/locations/l`.
fn loc() -> LocationPath {
    LocationPath {
        project: "p".into(),
        location: "l".into(),
    }
}

/// A queue path in [`loc`].
fn qp(id: &str) -> QueuePath {
    loc().queue(id)
}

/// A normalised, running queue named `path`.
fn queue(path: &QueuePath) -> Queue {
    normalize_queue(Queue {
        name: path.to_string(),
        ..Default::default()
    })
}

/// Creates a queue at [`T0`], panicking on failure.
async fn make_queue(s: &dyn Store, path: &QueuePath) -> Queue {
    s.create_queue(queue(path), T0, W)
        .await
        .unwrap_or_else(|e| panic!("create_queue {path}: {e:?}"))
}

/// A fully formed task `id` in `queue`, due at `schedule_time`, created at `create_time`.
fn task_at(queue: &QueuePath, id: &str, schedule_time: Micros, create_time: Micros) -> Task {
    Task {
        name: queue.task(id).to_string(),
        schedule_time: Some(micros_to_ts(schedule_time)),
        create_time: Some(micros_to_ts(create_time)),
        dispatch_deadline: Some(Duration {
            seconds: 600,
            nanos: 0,
        }),
        message_type: Some(MessageType::HttpRequest(HttpRequest {
            url: format!("https://example.com/{id}"),
            http_method: HttpMethod::Post as i32,
            headers: [("Content-Type".to_string(), "application/json".to_string())].into(),
            body: format!("{{\"task\":\"{id}\"}}").into_bytes(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A task due and created at [`T0`].
fn task(queue: &QueuePath, id: &str) -> Task {
    task_at(queue, id, T0, T0)
}

/// Creates tasks, expecting the call itself to succeed.
async fn create(
    s: &dyn Store,
    queue: &QueuePath,
    tasks: Vec<Task>,
    now: Micros,
    w: Windows,
) -> Vec<Result<Task, StoreError>> {
    s.create_tasks(queue, tasks, now, w)
        .await
        .unwrap_or_else(|e| panic!("create_tasks in {queue}: call failed with {e:?}"))
        .into_iter()
        .map(|r| r.map(|d| d.task))
        .collect()
}

/// Creates one task, expecting it to succeed.
async fn create_ok(s: &dyn Store, queue: &QueuePath, t: Task, now: Micros) -> Task {
    let name = t.name.clone();
    create(s, queue, vec![t], now, W)
        .await
        .pop()
        .unwrap_or_else(|| panic!("create_tasks {name}: no outcome"))
        .unwrap_or_else(|e| panic!("create_tasks {name}: {e:?}"))
}

/// The outcome of creating one task.
async fn create_one(
    s: &dyn Store,
    queue: &QueuePath,
    t: Task,
    now: Micros,
    w: Windows,
) -> Result<Task, StoreError> {
    let name = t.name.clone();
    let mut out = create(s, queue, vec![t], now, w).await;
    assert_eq!(out.len(), 1, "create_tasks {name}: one outcome per task");
    out.remove(0)
}

/// Task IDs of a list of tasks.
fn ids(tasks: &[Task]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| t.name.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

/// Queue IDs of a list of queues.
fn queue_ids(queues: &[Queue]) -> Vec<String> {
    queues
        .iter()
        .map(|q| q.name.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}
