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
//!
//! **Cluster mode** ([`Engine::start_cluster`]): the engine dispatches only the queues this node
//! holds the lease of ([`ClusterEvent::Owned`]), and passes each lease's epoch with its attempts
//! as the fencing token. A queue it loses is stopped, its attempts in flight are awaited
//! (bounded by the shutdown grace) and only then is the lease handed back, so two nodes never
//! dispatch one queue at once. Tasks created or deleted and queues changed through other nodes
//! arrive as cluster events; every `safety_scan` each owned queue rescans the store anyway, so a
//! lost event delays a task, never loses it. RunTask works on any node: for a queue another node
//! owns, the attempt runs here, unfenced, like a RunTask always bypasses the queue's limits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stratus_store::cluster::{Cluster, ClusterEvent};
use stratus_store::dispatch::{DueTask, mark_dispatched};
use stratus_store::hook::DispatchHook;
use stratus_store::{Store, StoreError};
use stratus_types::proto::tasks::{Queue, Task};
use stratus_types::time::SECOND;
use stratus_types::{Micros, QueuePath, Status, TaskPath, messages};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::actor::{Controls, Msg, QueueActor, Shared};
use crate::attempt::AttemptContext;
use crate::auth::TokenSource;
use crate::origin::OriginRules;
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
    /// Cluster mode: how often every owned queue rescans the store, the safety net under
    /// the notifications of other nodes.
    pub safety_scan: Duration,
    /// Where tasks may be sent (docs/outbound.md): every connection, redirect hop and resolved
    /// address is checked; a refused attempt fails without a response and is retried like
    /// any failed attempt. Default: the built-in policy (link-local, metadata and unspecified
    /// ranges denied, no allow-lists).
    pub targets: Arc<stratus_types::target::TargetPolicy>,
    /// Proof-of-origin rules: which queues' attempts carry a shared-secret header and an HMAC
    /// signature for their receivers to check. Default: no rules (OIDC/OAuth tokens only).
    pub origin: Arc<OriginRules>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lookahead: 30 * SECOND,
            batch: 2_000,
            channel_capacity: 4_096,
            shutdown_grace: Duration::from_secs(10),
            store_retry_delay: SECOND,
            safety_scan: Duration::from_secs(10),
            targets: Default::default(),
            origin: Arc::new(OriginRules::default()),
        }
    }
}

/// A queue's actor as the engine holds it.
struct QueueRef {
    tx: mpsc::Sender<Msg>,
    rescan: Arc<AtomicBool>,
    wake: Arc<Notify>,
    /// The lease epoch it dispatches under (cluster mode).
    epoch: Option<i64>,
    /// Its attempts in flight.
    attempts: Arc<AtomicUsize>,
    /// Stops it from starting attempts (handed to another node).
    halt: Arc<AtomicBool>,
}

/// The dispatch engine. Cheap to clone; all clones drive the same actors.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    queues: Mutex<HashMap<String, QueueRef>>,
    cluster: Option<Arc<dyn Cluster>>,
}

impl Engine {
    /// Starts the engine over `store`: loads every live queue and starts its actor.
    pub async fn start(
        store: Arc<dyn Store>,
        timer: Arc<dyn Timer>,
        tokens: Arc<TokenSource>,
        cfg: EngineConfig,
    ) -> Result<Engine, StoreError> {
        let engine = Engine::new(store.clone(), timer, tokens, cfg, None)?;
        for q in store.list_all_queues().await? {
            engine.ensure_queue(&q, None);
        }
        Ok(engine)
    }

    /// Starts the engine in cluster mode: it dispatches the queues `cluster` hands it (see the
    /// module docs). Fails when the cluster's events were already taken.
    pub fn start_cluster(
        store: Arc<dyn Store>,
        timer: Arc<dyn Timer>,
        tokens: Arc<TokenSource>,
        cfg: EngineConfig,
        cluster: Arc<dyn Cluster>,
    ) -> Result<Engine, StoreError> {
        let events = cluster
            .take_events()
            .ok_or_else(|| StoreError::Internal("the cluster's events are taken".into()))?;
        let engine = Engine::new(store, timer, tokens, cfg, Some(cluster))?;
        tokio::spawn(engine.clone().cluster_events(events));
        Ok(engine)
    }

    fn new(
        store: Arc<dyn Store>,
        timer: Arc<dyn Timer>,
        tokens: Arc<TokenSource>,
        cfg: EngineConfig,
        cluster: Option<Arc<dyn Cluster>>,
    ) -> Result<Engine, StoreError> {
        let outbound = crate::outbound::Outbound::new(cfg.targets.clone())
            .map_err(|e| StoreError::Internal(format!("cannot build the HTTP clients: {e}")))?;
        let shared = Arc::new(Shared {
            store: store.clone(),
            ctx: AttemptContext {
                outbound,
                tokens,
                timer,
                origin: cfg.origin.clone(),
            },
            cfg,
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            drained: Notify::new(),
        });
        Ok(Engine {
            inner: Arc::new(Inner {
                shared,
                queues: Mutex::new(HashMap::new()),
                cluster,
            }),
        })
    }

    /// Cluster mode: follows the lease manager and the other nodes' changes.
    async fn cluster_events(self, mut events: mpsc::Receiver<ClusterEvent>) {
        let mut safety = tokio::time::interval(self.inner.shared.cfg.safety_scan);
        safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                e = events.recv() => match e {
                    Some(e) => e,
                    None => return,
                },
                _ = safety.tick() => ClusterEvent::Resync,
            };
            if self.inner.shared.stopping.load(Ordering::Acquire) {
                return;
            }
            match event {
                ClusterEvent::Owned(owned) => self.take_owned(owned).await,
                ClusterEvent::TasksCreated { queue, rows } => self.tell(&queue, Msg::Fetch(rows)),
                ClusterEvent::TasksDeleted { queue, ids } => self.tell(&queue, Msg::Deleted(ids)),
                ClusterEvent::QueueChanged { queue } => {
                    if !self.queues().contains_key(&queue) {
                        continue;
                    }
                    let Some(path) = QueuePath::try_parse(&queue) else {
                        continue;
                    };
                    match self.inner.shared.store.get_queue(&path).await {
                        Ok(q) => self.tell(&queue, Msg::Config(Box::new(q))),
                        Err(StoreError::QueueNotFound) => self.drop_queue(&queue),
                        Err(e) => {
                            tracing::warn!(%queue, error = %e, "cannot reload a changed queue; rescanning");
                            self.rescan(&queue);
                        }
                    }
                }
                ClusterEvent::QueueDeleted { queue } => self.drop_queue(&queue),
                ClusterEvent::Resync => {
                    let names: Vec<String> = self.queues().keys().cloned().collect();
                    for q in names {
                        self.rescan(&q);
                    }
                }
            }
        }
    }

    /// Starts the queues newly owned, stops those no longer owned and hands their leases back
    /// once their attempts in flight are done.
    async fn take_owned(&self, owned: HashMap<String, i64>) {
        let Some(cluster) = self.inner.cluster.clone() else {
            return;
        };
        let gone: Vec<(String, QueueRef)> = {
            let mut queues = self.queues();
            let names: Vec<String> = queues
                .iter()
                .filter(|(name, q)| owned.get(*name).copied() != q.epoch)
                .map(|(name, _)| name.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| queues.remove(&n).map(|q| (n, q)))
                .collect()
        };
        for (name, q) in gone {
            q.halt.store(true, Ordering::Release);
            q.wake.notify_one();
            let _ = q.tx.try_send(Msg::Stop);
            let grace = self.inner.shared.cfg.shutdown_grace;
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + grace;
                while q.attempts.load(Ordering::Acquire) > 0
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if let Some(epoch) = q.epoch {
                    cluster.released(&name, epoch).await;
                }
            });
        }
        for (name, epoch) in owned {
            if self.queues().contains_key(&name) {
                continue;
            }
            let Some(path) = QueuePath::try_parse(&name) else {
                continue;
            };
            match self.inner.shared.store.get_queue(&path).await {
                Ok(q) => {
                    tracing::info!(queue = %name, epoch, "dispatching queue");
                    self.ensure_queue(&q, Some(epoch));
                }
                Err(StoreError::QueueNotFound) => {}
                Err(e) => {
                    // Offered again with the next ownership change or round.
                    tracing::warn!(queue = %name, error = %e, "cannot load an owned queue");
                }
            }
        }
    }

    fn rescan(&self, queue: &str) {
        if let Some(q) = self.queues().get(queue) {
            q.rescan.store(true, Ordering::Release);
            q.wake.notify_one();
        }
    }

    fn drop_queue(&self, queue: &str) {
        if let Some(q) = self.queues().remove(queue) {
            q.halt.store(true, Ordering::Release);
            q.wake.notify_one();
            let _ = q.tx.try_send(Msg::Stop);
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueueRef>> {
        self.inner.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the actor of `queue` (dispatching under lease `epoch` in cluster mode) unless it
    /// runs; returns whether it was new.
    fn ensure_queue(&self, queue: &Queue, epoch: Option<i64>) -> bool {
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
        let attempts = Arc::new(AtomicUsize::new(0));
        let halt = Arc::new(AtomicBool::new(false));
        let controls = Controls {
            rescan: rescan.clone(),
            wake: wake.clone(),
            attempts: attempts.clone(),
            halt: halt.clone(),
        };
        let actor = QueueActor::new(
            path,
            queue.clone(),
            self.inner.shared.clone(),
            rx,
            &controls,
            epoch,
        );
        tokio::spawn(actor.run());
        queues.insert(
            queue.name.clone(),
            QueueRef {
                tx,
                rescan,
                wake,
                epoch,
                attempts,
                halt,
            },
        );
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

    /// Whether the engine dispatches: true from start until [`Engine::shutdown`] is called.
    pub fn is_running(&self) -> bool {
        !self.inner.shared.stopping.load(Ordering::Acquire)
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
    /// In cluster mode the node then leaves the cluster, handing its queues over.
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
        let left = shared.in_flight.load(Ordering::Acquire);
        if let Some(cluster) = &self.inner.cluster {
            // Dispatching has stopped: hand every queue over now rather than after the leases
            // expire. Attempts still running past the grace may then overlap the new owner's.
            cluster.leave().await;
        }
        left
    }
}

#[async_trait]
impl DispatchHook for Engine {
    fn tasks_created(&self, queue: &QueuePath, tasks: &[DueTask]) {
        for t in tasks {
            tracing::debug!(%queue, task = %t.task.name, schedule_time = t.schedule_time, "task created");
        }
        if !tasks.is_empty() {
            self.tell(&queue.to_string(), Msg::Created(tasks.to_vec()));
        }
    }

    fn tasks_deleted(&self, queue: &QueuePath, ids: &[String]) {
        for id in ids {
            tracing::debug!(%queue, task = %queue.task(id), "task deleted");
        }
        if !ids.is_empty() {
            self.tell(&queue.to_string(), Msg::Deleted(ids.to_vec()));
        }
    }

    fn queue_changed(&self, queue: &Queue) {
        // In cluster mode a new queue waits for its lease; an owned one is reconfigured.
        if self.inner.cluster.is_some() || !self.ensure_queue(queue, None) {
            self.tell(&queue.name, Msg::Config(Box::new(queue.clone())));
        }
    }

    fn queue_deleted(&self, queue: &QueuePath) {
        self.drop_queue(&queue.to_string());
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
        let mut shown = due.task.clone();
        mark_dispatched(&mut shown, call_time);
        let Some(tx) = tx else {
            if self.inner.cluster.is_none() {
                return Err(Status::not_found(messages::ENTITY_NOT_FOUND));
            }
            // Another node owns the queue: run the attempt here (RunTask ignores the queue's
            // limits anyway); that node's copy of the task gives way to the stored one.
            let queue = shared
                .store
                .get_queue(&name.queue)
                .await
                .map_err(|e| match e {
                    StoreError::QueueNotFound => Status::not_found(messages::ENTITY_NOT_FOUND),
                    other => Status::unavailable(format!("The task store failed: {other}")),
                })?;
            crate::actor::run_detached(shared.clone(), due, queue, call_time);
            return Ok(shown);
        };
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
