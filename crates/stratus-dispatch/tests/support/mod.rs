//! Harness of the engine tests: the real service layer and SQLite store, the engine on a
//! virtual clock, and a real HTTP receiver on 127.0.0.1 that records every request with the
//! virtual time it arrived at and answers from a script.

#![allow(dead_code, missing_docs)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use stratus_api::{Service, ServiceConfig};
use stratus_dispatch::auth::{AuthConfig, TokenSource};
use stratus_dispatch::engine::{Engine, EngineConfig};
use stratus_dispatch::oidc::SigningKey;
use stratus_dispatch::timer::ManualClock;
use stratus_store::Store;
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::Micros;
use stratus_types::proto::tasks::{
    CreateQueueRequest, CreateTaskRequest, GetTaskRequest, HttpRequest, Queue, Task,
    task::MessageType,
};
use stratus_types::time::{Clock, SECOND, micros_to_ts};
use tokio::sync::Notify;

/// The virtual start: 2030-03-17.
pub const T0: Micros = 1_900_000_000 * SECOND;
pub const LOC: &str = "projects/p/locations/l";

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Hold the request until [`Receiver::release`] (a target slower than the deadline).
    pub hold: bool,
    /// Hold the request this long in real time (to observe concurrency).
    pub delay_ms: u64,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            retry_after: None,
            hold: false,
            delay_ms: 0,
        }
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Micros,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct RecvState {
    clock: ManualClock,
    seen: Mutex<Vec<Seen>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    release: Notify,
}

/// A recording HTTP receiver.
#[derive(Clone)]
pub struct Receiver {
    state: Arc<RecvState>,
    pub url: String,
}

impl Receiver {
    pub async fn start(clock: ManualClock) -> Receiver {
        let state = Arc::new(RecvState {
            clock,
            seen: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::status(200)),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            release: Notify::new(),
        });
        let s = state.clone();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: HeaderMap,
                  body: Bytes| {
                let s = s.clone();
                async move { s.handle(method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            state,
            url: format!("http://{addr}"),
        }
    }

    /// Answers the next requests with these replies, then with the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn set_default(&self, r: Reply) {
        *self.state.default.lock().unwrap() = r;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Lets every held request answer.
    pub fn release(&self) {
        self.state.release.notify_waiters();
    }
}

impl RecvState {
    async fn handle(
        &self,
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(n, Ordering::SeqCst);
        let release = self.release.notified();
        self.seen.lock().unwrap().push(Seen {
            at: self.clock.now(),
            method: method.to_string(),
            path: uri.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.to_vec(),
        });
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().unwrap().clone());
        if reply.hold {
            release.await;
        }
        if reply.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(reply.delay_ms)).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut resp = StatusCode::from_u16(reply.status).unwrap().into_response();
        if let Some(ra) = reply.retry_after {
            resp.headers_mut()
                .insert("retry-after", ra.parse().unwrap());
        }
        resp
    }
}

pub struct Harness {
    pub clock: ManualClock,
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    pub svc: Arc<Service>,
    pub recv: Receiver,
    pub key: Arc<SigningKey>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::build(None, EngineConfig::default()).await
    }

    /// A single-node engine with these settings.
    pub async fn with_config(cfg: EngineConfig) -> Harness {
        Harness::build(None, cfg).await
    }

    /// An engine in cluster mode, driven by `cluster`.
    pub async fn with_cluster(cluster: Arc<dyn stratus_store::cluster::Cluster>) -> Harness {
        Harness::build(Some(cluster), EngineConfig::default()).await
    }

    async fn build(
        cluster: Option<Arc<dyn stratus_store::cluster::Cluster>>,
        cfg: EngineConfig,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let clock = ManualClock::new(T0);
        let key = Arc::new(SigningKey::generate().unwrap());
        let tokens = Arc::new(TokenSource::new(
            AuthConfig::new("http://stratus.test"),
            Some(key.clone()),
            Arc::new(clock.clone()),
        ));
        let engine = match cluster {
            None => Engine::start(store.clone(), Arc::new(clock.clone()), tokens, cfg)
                .await
                .unwrap(),
            Some(c) => {
                Engine::start_cluster(store.clone(), Arc::new(clock.clone()), tokens, cfg, c)
                    .unwrap()
            }
        };
        let svc = Arc::new(
            Service::new(
                store.clone(),
                Arc::new(clock.clone()),
                ServiceConfig::default(),
            )
            .with_dispatch(Arc::new(engine.clone())),
        );
        let recv = Receiver::start(clock.clone()).await;
        Harness {
            clock,
            store,
            engine,
            svc,
            recv,
            key,
            _dir: dir,
        }
    }

    pub fn now(&self) -> Micros {
        self.clock.now()
    }

    /// Creates queue `id` with the given config (name filled in).
    pub async fn queue(&self, id: &str, mut q: Queue) -> Queue {
        q.name = format!("{LOC}/queues/{id}");
        self.svc
            .create_queue(CreateQueueRequest {
                parent: LOC.into(),
                queue: Some(q),
            })
            .await
            .unwrap()
    }

    pub fn http_task(&self, queue: &str, id: &str, path: &str, delay: Micros) -> Task {
        Task {
            name: format!("{LOC}/queues/{queue}/tasks/{id}"),
            schedule_time: (delay > 0).then(|| micros_to_ts(self.now() + delay)),
            message_type: Some(MessageType::HttpRequest(HttpRequest {
                url: format!("{}{path}", self.recv.url),
                body: b"payload".to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    pub async fn create(&self, queue: &str, task: Task) -> Task {
        self.svc
            .create_task(CreateTaskRequest {
                parent: format!("{LOC}/queues/{queue}"),
                task: Some(task),
                response_view: 0,
            })
            .await
            .unwrap()
    }

    pub async fn get(&self, queue: &str, id: &str) -> Result<Task, stratus_types::Status> {
        self.svc
            .get_task(GetTaskRequest {
                name: format!("{LOC}/queues/{queue}/tasks/{id}"),
                response_view: 0,
            })
            .await
    }

    /// Lets the engine finish what it can do at the current instant.
    pub async fn settle(&self) {
        assert!(
            self.engine.settle(Duration::from_secs(10)).await,
            "engine did not settle"
        );
    }

    /// Settles, then moves time to the next instant anything waits for. Returns false when
    /// nothing waits.
    pub async fn step(&self) -> bool {
        self.settle().await;
        match self.clock.next_deadline() {
            Some(t) => {
                self.clock.advance_to(t);
                true
            }
            None => false,
        }
    }

    /// Steps until the receiver has seen `n` requests or `limit` virtual time has passed.
    pub async fn run_until_seen(&self, n: usize, limit: Micros) {
        let end = self.now() + limit;
        loop {
            self.settle().await;
            if self.recv.count() >= n || self.now() > end {
                break;
            }
            match self.clock.next_deadline() {
                Some(t) if t <= end => self.clock.advance_to(t),
                _ => break,
            }
        }
    }

    /// Steps until `limit` virtual time has passed.
    pub async fn run_for(&self, limit: Micros) {
        let end = self.now() + limit;
        while self.now() < end {
            self.settle().await;
            match self.clock.next_deadline() {
                Some(t) if t <= end => self.clock.advance_to(t),
                _ => {
                    self.clock.advance_to(end);
                    break;
                }
            }
        }
        self.settle().await;
    }
}
