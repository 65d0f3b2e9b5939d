//! What cluster mode relies on from the store: a lease row per live queue, fenced attempt
//! outcomes, NOTIFY inside the writing transaction, and migrations that are safe to race.

use std::time::Duration;

use futures::StreamExt;
use stratus_store::dispatch::{AttemptOutcome, Decision};
use stratus_store::{Store, StoreError, Windows};
use stratus_store_postgres::{PgOptions, PgStore, migrate, notify, schema};
use stratus_testpg::PgServer;
use stratus_types::proto::tasks::{Queue, RetryConfig, Task};
use stratus_types::queue::normalize_queue;
use stratus_types::time::{SECOND, micros_to_ts};
use stratus_types::{LocationPath, Micros, QueuePath};
use tokio_postgres::{AsyncMessage, NoTls};

const T0: Micros = 1_900_000_000 * SECOND;
const W: Windows = Windows {
    tombstone_ttl: 0,
    queue_reuse_block: 0,
    retain_succeeded: 3600 * SECOND,
    retain_failed: 3600 * SECOND,
};

fn qp(id: &str) -> QueuePath {
    LocationPath {
        project: "p".into(),
        location: "l".into(),
    }
    .queue(id)
}

fn queue(q: &QueuePath) -> Queue {
    normalize_queue(Queue {
        name: q.to_string(),
        ..Default::default()
    })
}

fn task(q: &QueuePath, id: &str) -> Task {
    Task {
        name: q.task(id).to_string(),
        schedule_time: Some(micros_to_ts(T0)),
        ..Default::default()
    }
}

fn outcome(row: i64, status: u16, fence: Option<i64>) -> AttemptOutcome {
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
            ..Default::default()
        },
        anchor: T0 + SECOND,
        fence,
    }
}

async fn connect(url: &str, schema: &str, node: &str) -> PgStore {
    PgStore::connect(
        url,
        PgOptions {
            schema: schema.into(),
            node_id: node.into(),
            pool_size: 4,
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect")
}

async fn lease_count(store: &PgStore, q: &QueuePath) -> i64 {
    let c = store.pool().get().await.expect("connection");
    c.query_one(
        "SELECT count(*) FROM leases l JOIN queues q ON q.id = l.queue_id WHERE q.name = $1",
        &[&q.to_string()],
    )
    .await
    .expect("count leases")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_fencing_and_notifications() {
    let server = PgServer::start().expect("start PostgreSQL");
    let url = server.fresh_database().expect("create a database");
    let store = connect(&url, "cl", "node-a").await;
    assert_eq!((store.schema(), store.node_id()), ("cl", "node-a"));

    // Listen like another node would.
    let (listener, mut conn) = tokio_postgres::connect(&url, NoTls)
        .await
        .expect("listener");
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    listener
        .batch_execute(&format!("LISTEN \"{}\"", notify::channel("cl")))
        .await
        .expect("LISTEN");
    let mut next_note = async || {
        tokio::time::timeout(Duration::from_secs(5), notes.recv())
            .await
            .expect("a notification within 5 s")
            .expect("listener alive")
    };

    // A live queue has a lease row (create and upsert), a deleted one has none.
    let q = qp("q");
    store
        .create_queue(queue(&q), T0, W)
        .await
        .expect("create_queue");
    assert_eq!(
        next_note().await,
        notify::queue_changed("node-a", &q.to_string())
    );
    assert_eq!(
        lease_count(&store, &q).await,
        1,
        "create_queue adds the lease row"
    );
    let u = qp("u");
    store
        .update_queue(&u, Box::new(|_| Ok(queue(&qp("u")))), T0, W)
        .await
        .expect("upsert");
    assert_eq!(
        next_note().await,
        notify::queue_changed("node-a", &u.to_string())
    );
    assert_eq!(
        lease_count(&store, &u).await,
        1,
        "an upsert that creates adds the lease row"
    );
    store.delete_queue(&u, T0).await.expect("delete_queue");
    assert_eq!(
        next_note().await,
        notify::queue_deleted("node-a", &u.to_string())
    );
    assert_eq!(
        lease_count(&store, &u).await,
        0,
        "delete_queue drops the lease row"
    );
    store
        .create_queue(queue(&u), T0, W)
        .await
        .expect("re-create after the (zero) reuse window");
    let _ = next_note().await;
    assert_eq!(
        lease_count(&store, &u).await,
        1,
        "re-creation adds a lease row again"
    );

    // Creates notify their rows, deletes their IDs, a re-run its row.
    let created: Vec<_> = store
        .create_tasks(&q, vec![task(&q, "a"), task(&q, "b")], T0, W)
        .await
        .expect("create_tasks")
        .into_iter()
        .map(|r| r.expect("created"))
        .collect();
    let rows: Vec<i64> = created.iter().map(|d| d.row).collect();
    assert_eq!(
        vec![next_note().await],
        notify::created("node-a", &q.to_string(), &rows)
    );
    store
        .delete_tasks(&q, vec!["b".into(), "missing".into()], T0)
        .await
        .expect("delete_tasks");
    assert_eq!(
        vec![next_note().await],
        notify::deleted("node-a", &q.to_string(), &["b".to_string()])
    );

    // Fencing: an outcome under an epoch this node does not hold is refused and writes nothing.
    let a = created[0].row;
    let refused = store.record_attempt(outcome(a, 500, Some(1)), T0).await;
    assert_eq!(
        refused,
        Err(StoreError::Unavailable(format!(
            "the lease of queue {q} is no longer held by this node"
        ))),
        "no lease held"
    );
    let c = store.pool().get().await.expect("connection");
    c.execute(
        "UPDATE leases SET node_id = 'node-a', epoch = 7, expires_at = now() + interval '1 minute'
         WHERE queue_id = (SELECT id FROM queues WHERE name = $1)",
        &[&q.to_string()],
    )
    .await
    .expect("take the lease");
    assert!(
        matches!(
            store.record_attempt(outcome(a, 500, Some(6)), T0).await,
            Err(StoreError::Unavailable(_))
        ),
        "an older epoch is refused"
    );
    let rec = store
        .record_attempt(outcome(a, 500, Some(7)), T0)
        .await
        .expect("outcome under the held epoch");
    assert!(matches!(rec.decision, Decision::Retry(_)));
    let other = connect(&url, "cl", "node-b").await;
    assert!(
        matches!(
            other.record_attempt(outcome(a, 200, Some(7)), T0).await,
            Err(StoreError::Unavailable(_))
        ),
        "another node's outcome under this node's epoch is refused"
    );
    let unfenced = other
        .record_attempt(outcome(a, 200, None), T0 + SECOND)
        .await
        .expect("an unfenced outcome (RunTask)");
    assert_eq!(unfenced.decision, Decision::Succeeded);
    let record = store.task_record(&q.task("a")).await.expect("task_record");
    assert_eq!(
        record.attempts.iter().map(|a| a.seq).collect::<Vec<_>>(),
        [1, 2],
        "refused outcomes recorded nothing"
    );
    let rerun = store
        .rerun_task(&q.task("a"), T0 + 2 * SECOND)
        .await
        .expect("rerun");
    assert_eq!(
        vec![next_note().await],
        notify::created("node-a", &q.to_string(), &[rerun.row])
    );
    store.purge_queue(&q, T0 + 3 * SECOND).await.expect("purge");
    assert_eq!(
        next_note().await,
        notify::queue_changed("node-a", &q.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_to_race() {
    let server = PgServer::start().expect("start PostgreSQL");
    let url = server.fresh_database().expect("create a database");
    let latest = schema::latest();
    let racers = (0..4).map(|_| migrate(&url, "raced"));
    let mut results: Vec<(i64, i64)> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.expect("migrate"))
        .collect();
    results.sort();
    assert_eq!(results[0], (0, latest), "one racer migrates");
    assert!(
        results[1..].iter().all(|r| *r == (latest, latest)),
        "the others find nothing to do: {results:?}"
    );
    assert_eq!(migrate(&url, "raced").await, Ok((latest, latest)));

    let behind = PgStore::connect(
        &url,
        PgOptions {
            schema: "never_migrated".into(),
            migrate: false,
            ..PgOptions::default()
        },
    )
    .await;
    match behind {
        Err(StoreError::Internal(m)) => assert!(m.contains("stratus migrate"), "{m}"),
        other => panic!("a schema that is behind: {other:?}"),
    }
    PgStore::connect(
        &url,
        PgOptions {
            schema: "raced".into(),
            migrate: false,
            ..PgOptions::default()
        },
    )
    .await
    .expect("a migrated schema needs no migration");
    assert!(matches!(
        migrate(&url, "Bad-Name").await,
        Err(StoreError::Internal(_))
    ));
}
