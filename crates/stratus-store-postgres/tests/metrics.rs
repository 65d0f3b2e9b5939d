//! The PostgreSQL writers report every group commit to the process's metrics: its latency and
//! how many writes it carried.

use futures::future::join_all;
use stratus_store::{Store, Windows};
use stratus_store_postgres::{PgOptions, PgStore};
use stratus_testpg::PgServer;
use stratus_types::proto::tasks::{Queue, Task};
use stratus_types::queue::normalize_queue;
use stratus_types::time::{SECOND, micros_to_ts};
use stratus_types::{LocationPath, Micros};

const T0: Micros = 1_900_000_000 * SECOND;
const W: Windows = Windows {
    tombstone_ttl: 3600 * SECOND,
    queue_reuse_block: 3600 * SECOND,
    retain_succeeded: 3600 * SECOND,
    retain_failed: 3600 * SECOND,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_measured() {
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

    let m = &stratus_metrics::global().postgres;
    let (commits, writes) = (m.commit_seconds.count(), m.batch_size.count());
    let n = 50;
    let calls = (0..n).map(|i| {
        let t = Task {
            name: q.task(&format!("t{i:04}")).to_string(),
            schedule_time: Some(micros_to_ts(T0)),
            ..Default::default()
        };
        store.create_tasks(&q, vec![t], T0, W)
    });
    for r in join_all(calls).await {
        r.expect("create");
    }
    let stats = store.writer_stats();
    let new_commits = m.commit_seconds.count() - commits;
    assert!(new_commits >= 1, "no commit measured");
    // One batch-size sample per commit, and the writer's own count of commits agrees.
    assert_eq!(m.batch_size.count() - writes, new_commits);
    assert_eq!(new_commits, stats.commits);
    let rendered = stratus_metrics::global().render();
    assert!(
        rendered.contains(&format!(
            "stratus_store_commit_seconds_count{{store=\"postgres\"}} {}\n",
            m.commit_seconds.count()
        )),
        "{rendered}"
    );
}
