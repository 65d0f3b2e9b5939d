//! Group commit: concurrent creates share transactions, and every acknowledged create is durable.

use std::sync::Arc;

use stratus_store::Store;
use stratus_store::conformance::{T0, W};
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::LocationPath;
use stratus_types::proto::tasks::{HttpRequest, Queue, Task, task::MessageType};
use stratus_types::time::micros_to_ts;

const CALLERS: usize = 64;
const PER_CALLER: usize = 32; // 2,048 calls in all

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_share_commits_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let queue = LocationPath {
        project: "p".into(),
        location: "l".into(),
    }
    .queue("q");
    let q = Queue {
        name: queue.to_string(),
        state: 1,
        ..Default::default()
    };
    store.create_queue(q, T0, W).await.unwrap();
    let before = store.stats();

    let handle = store.clone();
    let store: Arc<dyn Store> = Arc::new(store);
    let mut callers = Vec::new();
    for c in 0..CALLERS {
        let (store, queue) = (store.clone(), queue.clone());
        callers.push(tokio::spawn(async move {
            for i in 0..PER_CALLER {
                let t = Task {
                    name: queue.task(&format!("c{c:02}-{i:03}")).to_string(),
                    schedule_time: Some(micros_to_ts(T0)),
                    create_time: Some(micros_to_ts(T0)),
                    message_type: Some(MessageType::HttpRequest(HttpRequest {
                        body: vec![7; 1024],
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                let out = store
                    .create_tasks(&queue, vec![t], T0, W)
                    .await
                    .expect("create_tasks");
                assert!(
                    matches!(out.as_slice(), [Ok(_)]),
                    "create c{c:02}-{i:03}: {out:?}"
                );
            }
        }));
    }
    for c in callers {
        c.await.unwrap();
    }
    let calls = (CALLERS * PER_CALLER) as u64;
    let after = handle.stats();
    let (commits, items) = (after.commits - before.commits, after.items - before.items);
    assert_eq!(items, calls, "every call was one committed item");
    assert!(
        commits < calls,
        "{calls} concurrent calls took {commits} commits: no group commit"
    );
    eprintln!("{calls} creates from {CALLERS} callers in {commits} commits");
    let page = store.list_tasks(&queue, None, 10_000).await.unwrap();
    assert_eq!(page.tasks.len() as u64, calls);
    drop((store, handle));

    // Reopen: everything acknowledged is there.
    let reopened = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let page = reopened.list_tasks(&queue, None, 10_000).await.unwrap();
    assert_eq!(
        page.tasks.len() as u64,
        calls,
        "acknowledged creates survive a reopen"
    );
    assert_eq!(reopened.stats().commits, 0, "stats are per open store");
}
