//! The engine: one actor per queue (see [`crate::actor`]) behind a handle that the service
//! layer talks to through [`DispatchHook`].
//!
//! - Start: every live queue is read from the store and gets an actor, which scans the store
//!   for its due-soon tasks. Nothing is assumed from before a restart: tasks that were in
//!   flight when the process died are live in the store and are dispatched again.
//! - Creates, deletes, queue changes: the service layer's notifications go to the queue's
//!   actor through a bounded channel. When the channel is full the notification is dropped
//!   and the actor is told to rescan the store instead (the store is the truth), so a burst
//!   never grows memory.
//! - Shutdown: actors stop starting attempts; attempts in flight get a grace period to finish
//!   and record their outcomes; whatever is still running then is abandoned and will be
//!   dispatched again after the restart (at least once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stratus_store::dispatch::{DueTask, mark_dispatched};
use stratus_store::hook::DispatchHook;
use stratus_store::{Store, StoreError};
use stratus_types::proto::tasks::{Queue, Task};
use stratus_types::time::SECOND;
use stratus_types::{Micros, QueuePath, Status, TaskPath, messages};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::actor::{Msg, QueueActor, Shared};
use crate::attempt::AttemptContext;
use crate::auth::TokenSource;
use crate::timer::Timer;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How far ahead of now a queue's actor loads due tasks from the store.
    pub lookahead: Micros,
    /// Tasks loaded per store scan; an actor holds at most `4 × batch` tasks in memory.
    pub batch: usize,
    /// Pending notifications per queue before they are dropped for a rescan.
    pub channel_capacity: usize,
    /// How long shutdown waits for attempts in flight.
    pub shutdown_grace: Duration,
    /// How long a store failure while recording an outcome delays the task's next try.
    pub store_retry_delay: Micros,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lookahead: 30 * SECOND,
            batch: 2_000,
            channel_capacity: 4_096,
            shutdown_grace: Duration::from_secs(10),
            store_retry_delay: SECOND,
        }
    }
}

/// A queue's actor as the engine holds it.
struct QueueRef {
    tx: mpsc::Sender<Msg>,
    rescan: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

/// The dispatch engine. Cheap to clone; all clones drive the same actors.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    queues: Mutex<HashMap<String, QueueRef>>,
}

impl Engine {
    /// Starts the engine over `store`: loads every live queue and starts its actor.
    pub async fn start(
        store: Arc<dyn Store>,
        timer: Arc<dyn Timer>,
        tokens: Arc<TokenSource>,
        cfg: EngineConfig,
    ) -> Result<Engine, StoreError> {
        let client = crate::attempt::http_client()
            .map_err(|e| StoreError::Internal(format!("cannot build the HTTP client: {e}")))?;
        let shared = Arc::new(Shared {
            store: store.clone(),
            ctx: AttemptContext {
                client,
                tokens,
                timer,
            },
            cfg,
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            drained: Notify::new(),
        });
        let engine = Engine {
            inner: Arc::new(Inner {
                shared,
                queues: Mutex::new(HashMap::new()),
            }),
        };
        for q in store.list_all_queues().await? {
            engine.ensure_queue(&q);
        }
        Ok(engine)
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueueRef>> {
        self.inner.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the actor of `queue` unless it runs; returns whether it was new.
    fn ensure_queue(&self, queue: &Queue) -> bool {
        let Some(path) = QueuePath::try_parse(&queue.name) else {
            tracing::error!(queue = %queue.name, "stored queue has an invalid name; not dispatched");
            return false;
        };
        let mut queues = self.queues();
        if queues.contains_key(&queue.name) {
            return false;
        }
        let (tx, rx) = mpsc::channel(self.inner.shared.cfg.channel_capacity.max(16));
        let rescan = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let actor = QueueActor::new(
            path,
            queue.clone(),
            self.inner.shared.clone(),
            rx,
            rescan.clone(),
            wake.clone(),
        );
        tokio::spawn(actor.run());
        queues.insert(queue.name.clone(), QueueRef { tx, rescan, wake });
        true
    }

    /// Delivers `msg` to the queue's actor; when its channel is full, asks for a rescan.
    fn tell(&self, queue: &str, msg: Msg) {
        let queues = self.queues();
        let Some(q) = queues.get(queue) else {
            return;
        };
        match q.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                q.rescan.store(true, Ordering::Release);
                q.wake.notify_one();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Attempts in flight across all queues.
    pub fn in_flight(&self) -> usize {
        self.inner.shared.in_flight.load(Ordering::Acquire)
    }

    /// Waits until no attempt is in flight and every actor has handled what was sent to it
    /// and gone back to sleep (bounded by `limit`). Tests on a virtual clock call this before
    /// moving time, so each step starts from a quiet engine. Returns whether it got quiet.
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.in_flight() == 0 {
                // Two rounds: the second answer comes from the loop iteration after the first,
                // which has re-armed its timer.
                for _ in 0..2 {
                    let senders: Vec<_> = self.queues().values().map(|q| q.tx.clone()).collect();
                    for tx in senders {
                        let (reply, rx) = oneshot::channel();
                        if tx.send(Msg::Ping(reply)).await.is_ok() {
                            let _ = rx.await;
                        }
                    }
                }
                if self.in_flight() == 0 {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Stops dispatching: no new attempts start; attempts in flight get
    /// `EngineConfig::shutdown_grace` to finish and record their outcomes. Returns how many
    /// were still running when the grace period ended (they will run again after a restart).
    pub async fn shutdown(&self) -> usize {
        let shared = &self.inner.shared;
        shared.stopping.store(true, Ordering::Release);
        let senders: Vec<_> = self.queues().drain().map(|(_, q)| q.tx).collect();
        for tx in senders {
            let _ = tx.send(Msg::Stop).await;
        }
        let wait = async {
            loop {
                let drained = shared.drained.notified();
                if shared.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                drained.await;
            }
        };
        let _ = tokio::time::timeout(shared.cfg.shutdown_grace, wait).await;
        shared.in_flight.load(Ordering::Acquire)
    }
}

#[async_trait]
impl DispatchHook for Engine {
    fn tasks_created(&self, queue: &QueuePath, tasks: &[DueTask]) {
        if !tasks.is_empty() {
            self.tell(&queue.to_string(), Msg::Created(tasks.to_vec()));
        }
    }

    fn tasks_deleted(&self, queue: &QueuePath, ids: &[String]) {
        if !ids.is_empty() {
            self.tell(&queue.to_string(), Msg::Deleted(ids.to_vec()));
        }
    }

    fn queue_changed(&self, queue: &Queue) {
        if !self.ensure_queue(queue) {
            self.tell(&queue.name, Msg::Config(Box::new(queue.clone())));
        }
    }

    fn queue_deleted(&self, queue: &QueuePath) {
        if let Some(q) = self.queues().remove(&queue.to_string()) {
            let _ = q.tx.try_send(Msg::Stop);
        }
    }

    async fn run_task(&self, name: &TaskPath) -> Result<Task, Status> {
        let shared = &self.inner.shared;
        if shared.stopping.load(Ordering::Acquire) {
            return Err(Status::unavailable("The server is shutting down."));
        }
        let due = shared.store.get_due_task(name).await.map_err(|e| match e {
            StoreError::TaskNotFound | StoreError::QueueNotFound => {
                Status::not_found(messages::ENTITY_NOT_FOUND)
            }
            other => Status::unavailable(format!("The task store failed: {other}")),
        })?;
        let call_time = shared.ctx.timer.now();
        let tx = self
            .queues()
            .get(&name.queue.to_string())
            .map(|q| q.tx.clone());
        let Some(tx) = tx else {
            return Err(Status::not_found(messages::ENTITY_NOT_FOUND));
        };
        let mut shown = due.task.clone();
        mark_dispatched(&mut shown, call_time);
        tx.send(Msg::Run {
            task: Box::new(due),
            call_time,
        })
        .await
        .map_err(|_| Status::not_found(messages::ENTITY_NOT_FOUND))?;
        Ok(shown)
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("queues", &self.queues().len())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}
