//! PostgreSQL goes away (stopped, or frozen behind a proxy) and comes back: calls answer
//! `Unavailable` within the operation timeout meanwhile, and the same store instance works
//! again afterwards without losing an acknowledged task.

use std::time::{Duration, Instant};

use stratus_store::{Store, StoreError, Windows};
use stratus_store_postgres::{PgOptions, PgStore};
use stratus_testpg::PgServer;
use stratus_types::proto::tasks::{Queue, Task};
use stratus_types::queue::normalize_queue;
use stratus_types::time::{SECOND, micros_to_ts};
use stratus_types::{LocationPath, Micros, QueuePath};

const T0: Micros = 1_900_000_000 * SECOND;
const W: Windows = Windows {
    tombstone_ttl: 3600 * SECOND,
    queue_reuse_block: 3600 * SECOND,
    retain_succeeded: 3600 * SECOND,
    retain_failed: 3600 * SECOND,
};
const OP_TIMEOUT: Duration = Duration::from_secs(2);

fn queue_path() -> QueuePath {
    LocationPath {
        project: "p".into(),
        location: "l".into(),
    }
    .queue("q")
}

fn task(q: &QueuePath, id: &str) -> Task {
    Task {
        name: q.task(id).to_string(),
        schedule_time: Some(micros_to_ts(T0)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_recovers_after_postgres_restarts() {
    let mut server = PgServer::start().expect("start PostgreSQL");
    let url = server.fresh_database().expect("create a database");
    let store = PgStore::connect(
        &url,
        PgOptions {
            op_timeout: OP_TIMEOUT,
            connect_timeout: Duration::from_secs(1),
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect");
    let q = queue_path();
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
    let before: Vec<Task> = (0..20)
        .map(|i| task(&q, &format!("before-{i:02}")))
        .collect();
    for r in store
        .create_tasks(&q, before, T0, W)
        .await
        .expect("create_tasks")
    {
        r.expect("task created");
    }

    tokio::task::block_in_place(|| server.stop()).expect("stop PostgreSQL");

    // Down: every kind of call answers Unavailable, and within the operation timeout.
    let started = Instant::now();
    let create = store
        .create_tasks(&q, vec![task(&q, "while-down")], T0, W)
        .await;
    assert!(
        matches!(create, Err(StoreError::Unavailable(_))),
        "create while down: {create:?}"
    );
    let get = store.get_queue(&q).await;
    assert!(
        matches!(get, Err(StoreError::Unavailable(_))),
        "get while down: {get:?}"
    );
    let list = store.list_tasks(&q, None, 10).await;
    assert!(
        matches!(list, Err(StoreError::Unavailable(_))),
        "list while down: {list:?}"
    );
    assert!(
        started.elapsed() < 3 * OP_TIMEOUT + Duration::from_millis(500),
        "three calls took {:?}",
        started.elapsed()
    );

    tokio::task::block_in_place(|| server.start_again()).expect("start PostgreSQL again");

    // Up again: the same instance works once its pool has replaced the dead connections.
    let mut listed = None;
    for _ in 0..50 {
        match store.list_tasks(&q, None, 100).await {
            Ok(page) => {
                listed = Some(page);
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("list after restart: {e:?}"),
        }
    }
    let page = listed.expect("the store answers again after the restart");
    let ids: Vec<String> = page
        .tasks
        .iter()
        .map(|t| t.name.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    for i in 0..20 {
        let id = format!("before-{i:02}");
        assert!(ids.contains(&id), "acknowledged task {id} lost: {ids:?}");
    }
    let mut created = None;
    for _ in 0..50 {
        match store.create_tasks(&q, vec![task(&q, "after")], T0, W).await {
            Ok(mut out) => {
                created = out.pop();
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("create after restart: {e:?}"),
        }
    }
    let created = created.expect("create after restart");
    assert!(created.is_ok(), "create after restart: {created:?}");
    assert_eq!(store.get_queue(&q).await.map(|q| q.name), Ok(q.to_string()));
}

/// A TCP proxy to PostgreSQL that can stop forwarding (a server that hangs, not one that is
/// gone: connections stay open, answers never come).
struct Proxy {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, watch.clone()));
                tokio::spawn(pipe(sr, cw, watch.clone()));
            }
        });
        Proxy { port, frozen }
    }

    fn freeze(&self, on: bool) {
        self.frozen.send_replace(on);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_hanging_server_time_out() {
    let server = PgServer::start().expect("start PostgreSQL");
    let url = server.fresh_database().expect("create a database");
    let port = server.port().expect("a server of ours");
    let proxy = Proxy::start(port).await;
    let url = url.replace(&format!(":{port}/"), &format!(":{}/", proxy.port));
    let op_timeout = Duration::from_millis(800);
    let store = PgStore::connect(
        &url,
        PgOptions {
            op_timeout,
            connect_timeout: Duration::from_millis(500),
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect through the proxy");
    let q = queue_path();
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
    let acked = store
        .create_tasks(&q, vec![task(&q, "acked")], T0, W)
        .await
        .expect("create_tasks");
    assert!(acked[0].is_ok());

    proxy.freeze(true);
    for what in ["create", "get"] {
        let started = Instant::now();
        let r = match what {
            "create" => store
                .create_tasks(&q, vec![task(&q, "frozen")], T0, W)
                .await
                .map(|_| ()),
            _ => store.get_queue(&q).await.map(|_| ()),
        };
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "{what} while the server hangs: {r:?}"
        );
        let took = started.elapsed();
        // Within the operation timeout (sooner when the pool's connect timeout ends it).
        assert!(
            took < op_timeout + Duration::from_millis(500),
            "{what} answered after {took:?}"
        );
    }

    proxy.freeze(false);
    let mut page = None;
    for _ in 0..50 {
        match store.list_tasks(&q, None, 10).await {
            Ok(p) => {
                page = Some(p);
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("list after thawing: {e:?}"),
        }
    }
    let page = page.expect("the store answers again");
    assert!(
        page.tasks
            .iter()
            .any(|t| t.name == q.task("acked").to_string()),
        "the acknowledged task is kept"
    );
    let mut created = false;
    for _ in 0..50 {
        match store
            .create_tasks(&q, vec![task(&q, "thawed")], T0, W)
            .await
        {
            Ok(out) => {
                created = out[0].is_ok();
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("create after thawing: {e:?}"),
        }
    }
    assert!(created, "creates work again");
}
