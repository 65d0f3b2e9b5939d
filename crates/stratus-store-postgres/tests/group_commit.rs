//! Concurrent creates and outcomes share transactions (group commit), and nothing is lost.

use futures::future::join_all;
use stratus_store::dispatch::{AttemptOutcome, Decision};
use stratus_store::{Store, StoreError, Windows};
use stratus_store_postgres::{PgOptions, PgStore};
use stratus_testpg::PgServer;
use stratus_types::proto::tasks::{Queue, RetryConfig, Task};
use stratus_types::queue::normalize_queue;
use stratus_types::time::{SECOND, micros_to_duration, micros_to_ts};
use stratus_types::{LocationPath, Micros};

const T0: Micros = 1_900_000_000 * SECOND;
const W: Windows = Windows {
    tombstone_ttl: 3600 * SECOND,
    queue_reuse_block: 3600 * SECOND,
    retain_succeeded: 3600 * SECOND,
    retain_failed: 3600 * SECOND,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let server = PgServer::start().expect("start PostgreSQL");
    let url = server.fresh_database().expect("create a database");
    let store = PgStore::connect(&url, PgOptions::default())
        .await
        .expect("connect");
    let q = LocationPath {
        project: "p".into(),
        location: "l".into(),
    }
    .queue("q");
    store
        .create_queue(
            normalize_queue(Queue {
                name: q.to_string(),
                ..Default::default()
            }),
            T0,
            W,
        )
        .await
        .expect("create_queue");

    let before = store.writer_stats();
    let n = 400;
    let calls = (0..n).map(|i| {
        let t = Task {
            name: q.task(&format!("t{i:04}")).to_string(),
            schedule_time: Some(micros_to_ts(T0)),
            ..Default::default()
        };
        store.create_tasks(&q, vec![t], T0, W)
    });
    let mut rows = Vec::new();
    for (i, r) in join_all(calls).await.into_iter().enumerate() {
        let mut out = r.unwrap_or_else(|e| panic!("create t{i:04}: {e:?}"));
        let due = out
            .pop()
            .expect("one outcome")
            .unwrap_or_else(|e| panic!("create t{i:04}: {e:?}"));
        rows.push(due.row);
    }
    let after = store.writer_stats();
    let (commits, items) = (after.commits - before.commits, after.items - before.items);
    assert_eq!(items, n as u64, "every create went through the writer");
    assert!(
        commits < items / 4,
        "{items} concurrent creates took {commits} commits: no group commit"
    );
    let page = store.list_tasks(&q, None, 1000).await.expect("list_tasks");
    assert_eq!(page.tasks.len(), n, "every acknowledged create is stored");

    // Outcomes batch the same way, and share transactions with creates: each task gets a
    // 503 and then a 200 while as many new tasks are created.
    let before = store.writer_stats();
    for status in [503, 200] {
        let outcomes = rows
            .iter()
            .map(|&row| store.record_attempt(outcome(row, status), T0 + SECOND));
        let creates = (0..n).map(|i| {
            let t = Task {
                name: q.task(&format!("more-{status}-{i:04}")).to_string(),
                schedule_time: Some(micros_to_ts(T0)),
                ..Default::default()
            };
            store.create_tasks(&q, vec![t], T0, W)
        });
        let (outcomes, creates) = futures::join!(join_all(outcomes), join_all(creates));
        for r in outcomes {
            let want = if status == 200 {
                Decision::Succeeded
            } else {
                Decision::Retry(T0 + 11 * SECOND)
            };
            assert_eq!(r.expect("record_attempt").decision, want);
        }
        for r in creates {
            assert!(matches!(r.expect("create_tasks").pop(), Some(Ok(_))));
        }
    }
    let after = store.writer_stats();
    let (commits, items) = (after.commits - before.commits, after.items - before.items);
    assert_eq!(items, 4 * n as u64);
    assert!(
        commits < items / 4,
        "{items} concurrent outcomes and creates took {commits} commits"
    );
    let page = store.list_tasks(&q, None, 2000).await.expect("list_tasks");
    assert_eq!(
        page.tasks.len(),
        2 * n,
        "the first tasks succeeded, the new ones wait"
    );
    let rec = store
        .task_record(&q.task("t0007"))
        .await
        .expect("task_record");
    assert_eq!(
        rec.attempts
            .iter()
            .map(|a| (a.seq, a.http_status))
            .collect::<Vec<_>>(),
        [(1, Some(503)), (2, Some(200))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_job_fails_alone() {
    let server = PgServer::start().expect("start PostgreSQL");
    let url = server.fresh_database().expect("create a database");
    let store = PgStore::connect(&url, PgOptions::default())
        .await
        .expect("connect");
    let q = LocationPath {
        project: "p".into(),
        location: "l".into(),
    }
    .queue("q");
    store
        .create_queue(
            normalize_queue(Queue {
                name: q.to_string(),
                ..Default::default()
            }),
            T0,
            W,
        )
        .await
        .expect("create_queue");
    // A NUL byte cannot be stored in a PostgreSQL text column: that statement fails, and with
    // it the batch it landed in; its other jobs are run again on their own.
    let calls = (0..100).map(|i| {
        let id = if i == 50 {
            "bad\0name".to_string()
        } else {
            format!("t{i:03}")
        };
        let t = Task {
            name: q.task(&id).to_string(),
            schedule_time: Some(micros_to_ts(T0)),
            ..Default::default()
        };
        store.create_tasks(&q, vec![t], T0, W)
    });
    for (i, r) in join_all(calls).await.into_iter().enumerate() {
        if i == 50 {
            assert!(
                matches!(r, Err(StoreError::Internal(_))),
                "the bad job: {r:?}"
            );
        } else {
            let mut out = r.unwrap_or_else(|e| panic!("create t{i:03}: {e:?}"));
            assert!(matches!(out.pop(), Some(Ok(_))), "create t{i:03}");
        }
    }
    let page = store.list_tasks(&q, None, 1000).await.expect("list_tasks");
    assert_eq!(page.tasks.len(), 99, "every good create is stored");
}

fn outcome(row: i64, status: u16) -> AttemptOutcome {
    AttemptOutcome {
        row,
        dispatch_time: T0,
        response_time: T0 + SECOND,
        http_status: Some(status),
        timed_out: false,
        error: None,
        retry_after: None,
        retry: RetryConfig {
            max_attempts: -1,
            min_backoff: Some(micros_to_duration(10 * SECOND)),
            max_backoff: Some(micros_to_duration(300 * SECOND)),
            max_doublings: 3,
            max_retry_duration: Some(micros_to_duration(0)),
        },
        anchor: T0 + SECOND,
        fence: None,
    }
}
