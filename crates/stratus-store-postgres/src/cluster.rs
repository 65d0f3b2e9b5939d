//! Cluster mode: node registry, queue leases with epoch fencing, LISTEN/NOTIFY.
//!
//! Several `stratus serve` processes on one database form a cluster. Each runs a
//! [`PgCluster`], which does two things:
//!
//! **The lease manager** (one Tokio task, a round every [`ClusterOptions::tick`]):
//! 1. heartbeat: `nodes.heartbeat_at = now()` for this node;
//! 2. keep one `leases` row per live queue;
//! 3. renew the leases this node holds (`expires_at = now() + lease_timeout`, only where
//!    `node_id` and `epoch` are still ours — a lease taken over is lost, and reported so);
//! 4. balance: with `Q` queues and `N` live nodes (heartbeat younger than the lease timeout),
//!    every node aims at `ceil(Q / N)`. A node under that takes free or expired leases
//!    (`FOR UPDATE SKIP LOCKED`, `epoch + 1`); a node over it sheds the excess; and while some
//!    node holds fewer than `floor(Q / N)`, the fullest node sheds one queue per round, so a
//!    node that joins gets its share.
//!
//! A queue shed is first taken out of [`ClusterEvent::Owned`]; the dispatcher stops it and waits
//! for its attempts in flight, then hands the lease back ([`Cluster::released`]). The lease is
//! renewed until then, so two nodes never dispatch one queue at the same time.
//!
//! Every time in a lease is PostgreSQL's clock (`now()`), so node clocks may disagree. A node
//! that cannot renew (database unreachable) gives up all its queues once the lease timeout,
//! less one round, has passed since its last successful renewal *started* — before any other
//! node can see them expired — and takes leases again (with new epochs) when it can.
//!
//! **The listener** (one dedicated connection, `LISTEN <schema>_events`): the store sends a
//! notification inside every transaction that creates or deletes tasks or changes a queue
//! (see [`crate::notify`]); the listener turns those of other nodes into [`ClusterEvent`]s. After
//! (re)connecting it sends [`ClusterEvent::Resync`], since notifications sent while it was away
//! are lost; queue changes also wake the lease manager so a new queue gets an owner at once.
//!
//! Takeover: a node killed stops renewing; its leases expire at most `lease_timeout` after
//! its last renewal, and other nodes take them within one more round: at most
//! `lease_timeout + tick` after the kill (default 8 s + 1 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use stratus_store::cluster::{Cluster, ClusterEvent};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::PgStore;

/// Settings of cluster mode.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How long a lease (and a node's heartbeat) stays valid without renewal: the longest a
    /// dead node's queues wait for a new owner (plus one `tick`).
    pub lease_timeout: Duration,
    /// How often leases are renewed and balanced (default: an eighth of the lease timeout,
    /// at most 1 s).
    pub tick: Duration,
}

impl ClusterOptions {
    /// Options for `lease_timeout`, with the default tick.
    pub fn with_lease_timeout(lease_timeout: Duration) -> ClusterOptions {
        let tick = (lease_timeout / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
        ClusterOptions {
            lease_timeout,
            tick,
        }
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions::with_lease_timeout(DEFAULT_LEASE_TIMEOUT)
    }
}

/// The default lease timeout.
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(8);

/// Registers this node or renews its heartbeat.
const HEARTBEAT: &str = "INSERT INTO nodes (id) VALUES ($1)
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()";

/// A lease this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    name: String,
    epoch: i64,
    /// Shed: no longer offered to the dispatcher, renewed until it is released.
    draining: bool,
}

/// A node's membership in a PostgreSQL cluster (see the module docs).
pub struct PgCluster {
    store: PgStore,
    opts: ClusterOptions,
    events_tx: mpsc::Sender<ClusterEvent>,
    events_rx: Mutex<Option<mpsc::Receiver<ClusterEvent>>>,
    held: tokio::sync::Mutex<HashMap<i64, Held>>,
    wake: Notify,
    stop: Notify,
    /// The lease manager's own connection (not the pool's): its statements are bounded by
    /// `statement_timeout` and `lock_timeout`, and it is dropped when a round times out, so a
    /// stuck statement never outlives its round holding lease locks.
    conn: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    conn_config: tokio_postgres::Config,
    /// Set by [`Cluster::leave`]: no more rounds, no more events.
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("node", &self.store.node_id())
            .field("opts", &self.opts)
            .finish()
    }
}

/// Lease counts of the cluster as one node sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Balance {
    queues: i64,
    nodes: i64,
    /// Fewest leases held by a live node.
    min_held: i64,
    /// Whether this node is the one (first by ID among the fullest) that sheds for the others.
    fullest: bool,
}

impl PgCluster {
    /// Joins the cluster: registers this node, starts the lease manager and the listener on
    /// `url` (the store's database). The first [`ClusterEvent::Owned`] follows within a round.
    pub async fn start(
        store: PgStore,
        url: &str,
        opts: ClusterOptions,
    ) -> Result<Arc<PgCluster>, stratus_store::StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            stratus_store::StoreError::Internal(format!("invalid PostgreSQL URL: {e}"))
        })?;
        let (events_tx, events_rx) = mpsc::channel(4_096);
        let mut conn_config = config.clone();
        let bound = (opts.lease_timeout / 4).as_millis().max(100);
        let extra = format!(
            "-c search_path={} -c statement_timeout={bound} -c lock_timeout={bound}",
            store.schema()
        );
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {extra}"),
            _ => extra,
        };
        conn_config
            .options(&options)
            .connect_timeout(Duration::from_secs(5));
        let cluster = Arc::new(PgCluster {
            store,
            opts,
            events_tx,
            events_rx: Mutex::new(Some(events_rx)),
            held: tokio::sync::Mutex::new(HashMap::new()),
            wake: Notify::new(),
            stop: Notify::new(),
            conn: tokio::sync::Mutex::new(None),
            conn_config,
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        cluster.heartbeat().await?;
        tokio::spawn(cluster.clone().manage());
        tokio::spawn(cluster.clone().listen(config));
        Ok(cluster)
    }

    /// The settings in force.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// The lease manager's connection, made (again) when missing or closed.
    async fn client(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, tokio_postgres::Client>, String> {
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) = self
                .conn_config
                .connect(NoTls)
                .await
                .map_err(|e| crate::error::pg(e).to_string())?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            *guard = Some(client);
        }
        tokio::sync::MutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| "no database connection".to_string())
    }

    async fn heartbeat(&self) -> Result<(), stratus_store::StoreError> {
        let c = self
            .client()
            .await
            .map_err(stratus_store::StoreError::Unavailable)?;
        c.execute(HEARTBEAT, &[&self.store.node_id()])
            .await
            .map_err(crate::error::pg)?;
        Ok(())
    }

    /// Publishes this node's last minute per queue (`nodes.stats`), read by the other nodes'
    /// queue statistics ([`stratus_store::Store::peer_stats`]).
    async fn publish_stats(&self) -> Result<(), String> {
        let text = stratus_metrics::window::encode(&stratus_metrics::global().windows(""));
        let c = self.client().await?;
        c.execute(
            "UPDATE nodes SET stats = $2, stats_at = now() WHERE id = $1",
            &[&self.store.node_id(), &text],
        )
        .await
        .map_err(|e| crate::error::pg(e).to_string())?;
        Ok(())
    }

    async fn manage(self: Arc<Self>) {
        let mut last_ok = Instant::now();
        let mut offered: Option<HashMap<String, i64>> = None;
        let mut published: Option<Instant> = None;
        loop {
            if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            let started = Instant::now();
            let publish = published.is_none_or(|at| {
                started.duration_since(at) >= stratus_metrics::window::SAMPLE_EVERY
            });
            let round = async {
                self.round().await?;
                if publish {
                    // Statistics only: a failure here costs no lease.
                    match self.publish_stats().await {
                        Ok(()) => published = Some(started),
                        Err(e) => tracing::debug!(error = %e, "publishing queue statistics failed"),
                    }
                }
                Ok::<(), String>(())
            };
            match tokio::time::timeout(self.opts.lease_timeout / 2, round).await {
                Ok(Ok(())) => last_ok = started,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cluster round failed; leases kept until they would expire")
                }
                Err(_) => {
                    tracing::warn!("cluster round timed out");
                    // Its statement may still run: drop the connection rather than reuse it.
                    *self.conn.lock().await = None;
                }
            }
            let mut held = self.held.lock().await;
            if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            if started.duration_since(last_ok) + self.opts.tick >= self.opts.lease_timeout
                && !held.is_empty()
            {
                tracing::warn!(
                    queues = held.len(),
                    "cannot renew queue leases; giving up every queue until the database answers"
                );
                held.clear();
            }
            let owned: HashMap<String, i64> = held
                .values()
                .filter(|h| !h.draining)
                .map(|h| (h.name.clone(), h.epoch))
                .collect();
            drop(held);
            if offered.as_ref() != Some(&owned) {
                if self
                    .events_tx
                    .send(ClusterEvent::Owned(owned.clone()))
                    .await
                    .is_err()
                {
                    return;
                }
                offered = Some(owned);
            }
            tokio::select! {
                () = tokio::time::sleep(self.opts.tick) => {}
                () = self.wake.notified() => {}
                () = self.stop.notified() => return,
            }
        }
    }

    /// One round of the lease manager (see the module docs).
    async fn round(&self) -> Result<(), String> {
        let c = self.client().await?;
        let me = self.store.node_id();
        let ttl = self.opts.lease_timeout.as_secs_f64();
        let db = |e: tokio_postgres::Error| crate::error::pg(e).to_string();
        c.execute(HEARTBEAT, &[&me]).await.map_err(db)?;
        c.batch_execute(
            "INSERT INTO leases (queue_id)
                 SELECT id FROM queues WHERE deleted_at IS NULL
             ON CONFLICT DO NOTHING;
             DELETE FROM leases l WHERE NOT EXISTS
                 (SELECT 1 FROM queues q WHERE q.id = l.queue_id AND q.deleted_at IS NULL);",
        )
        .await
        .map_err(db)?;

        let mut held = self.held.lock().await;
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        // Renew.
        let (ids, epochs): (Vec<i64>, Vec<i64>) = held.iter().map(|(q, h)| (*q, h.epoch)).unzip();
        if !ids.is_empty() {
            let rows = c
                .query(
                    // Rows are locked in queue_id order, the order the writer's fenced
                    // outcomes lock them in (`FOR SHARE`), so the two never deadlock.
                    "UPDATE leases l SET expires_at = now() + make_interval(secs => $2)
                     FROM (SELECT m.queue_id FROM leases m
                           JOIN unnest($3::bigint[], $4::bigint[]) AS h(q, e)
                             ON m.queue_id = h.q AND m.epoch = h.e
                           WHERE m.node_id = $1
                           ORDER BY m.queue_id FOR UPDATE OF m) f
                     WHERE l.queue_id = f.queue_id
                     RETURNING l.queue_id",
                    &[&me, &ttl, &ids, &epochs],
                )
                .await
                .map_err(db)?;
            let kept: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
            held.retain(|q, h| {
                let keep = kept.contains(q);
                if !keep {
                    tracing::warn!(queue = %h.name, epoch = h.epoch, "queue lease lost");
                }
                keep
            });
        }

        // Balance.
        let b = c
            .query_one(
                "WITH live AS (
                     SELECT id FROM nodes
                     WHERE heartbeat_at > now() - make_interval(secs => $2) OR id = $1
                 ), counts AS (
                     SELECT n.id, count(l.queue_id) AS held
                     FROM live n LEFT JOIN leases l
                       ON l.node_id = n.id AND l.expires_at > now()
                     GROUP BY n.id
                 )
                 SELECT (SELECT count(*) FROM leases),
                        (SELECT count(*) FROM live),
                        (SELECT COALESCE(min(held), 0) FROM counts),
                        (SELECT id FROM counts ORDER BY held DESC, id LIMIT 1)",
                &[&me, &ttl],
            )
            .await
            .map_err(db)?;
        let fullest: Option<String> = b.get(3);
        let balance = Balance {
            queues: b.get(0),
            nodes: b.get::<_, i64>(1).max(1),
            min_held: b.get(2),
            fullest: fullest.as_deref() == Some(me),
        };
        let active = held.values().filter(|h| !h.draining).count() as i64;
        let (want, mut shed) = plan(balance, active);
        if held.values().any(|h| h.draining) {
            // One hand-over at a time: the counts above still include the queue being handed over.
            shed = 0;
        }
        if want > 0 {
            let rows = c
                .query(
                    "UPDATE leases l
                     SET node_id = $1, epoch = l.epoch + 1,
                         expires_at = now() + make_interval(secs => $2)
                     FROM (SELECT queue_id FROM leases
                           WHERE node_id IS NULL OR expires_at < now()
                           ORDER BY queue_id LIMIT $3 FOR UPDATE SKIP LOCKED) f,
                          queues q
                     WHERE l.queue_id = f.queue_id AND q.id = l.queue_id
                     RETURNING l.queue_id, l.epoch, q.name",
                    &[&me, &ttl, &want],
                )
                .await
                .map_err(db)?;
            for r in rows {
                let h = Held {
                    name: r.get(2),
                    epoch: r.get(1),
                    draining: false,
                };
                tracing::info!(queue = %h.name, epoch = h.epoch, "queue lease taken");
                held.insert(r.get(0), h);
            }
        }
        if shed > 0 {
            let mut mine: Vec<(i64, &mut Held)> = held
                .iter_mut()
                .filter(|(_, h)| !h.draining)
                .map(|(q, h)| (*q, h))
                .collect();
            mine.sort_by_key(|(q, _)| std::cmp::Reverse(*q));
            for (_, h) in mine.into_iter().take(shed as usize) {
                tracing::info!(queue = %h.name, epoch = h.epoch, "handing queue over to balance the cluster");
                h.draining = true;
            }
        }
        Ok(())
    }

    async fn listen(self: Arc<Self>, config: tokio_postgres::Config) {
        let channel = crate::notify::channel(self.store.schema());
        let mut backoff = Duration::from_millis(100);
        loop {
            let connected = tokio::time::timeout(Duration::from_secs(5), config.connect(NoTls));
            let (client, mut conn) = match connected.await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cluster listener cannot connect; retrying");
                    if self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(_) => {
                    if self.pause(backoff).await {
                        return;
                    }
                    continue;
                }
            };
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            let listen_sql = format!("LISTEN \"{channel}\"");
            let ok = {
                // The connection must be polled for LISTEN to complete.
                let listen = client.batch_execute(&listen_sql);
                let mut listen = std::pin::pin!(listen);
                loop {
                    tokio::select! {
                        r = &mut listen => break r.is_ok(),
                        m = messages.next() => if matches!(m, None | Some(Err(_))) { break false },
                    }
                }
            };
            if !ok {
                if self.pause(backoff).await {
                    return;
                }
                continue;
            }
            backoff = Duration::from_millis(100);
            tracing::debug!(%channel, "cluster listener connected");
            if self.events_tx.send(ClusterEvent::Resync).await.is_err() {
                return;
            }
            loop {
                let m = tokio::select! {
                    m = messages.next() => m,
                    () = self.stop.notified() => return,
                };
                match m {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let Some((node, event)) = crate::notify::parse(n.payload()) else {
                            tracing::warn!(
                                payload = n.payload(),
                                "unreadable cluster notification"
                            );
                            continue;
                        };
                        if matches!(
                            event,
                            ClusterEvent::QueueChanged { .. } | ClusterEvent::QueueDeleted { .. }
                        ) {
                            self.wake.notify_one();
                        }
                        if node == self.store.node_id() {
                            continue;
                        }
                        if self.events_tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "cluster listener lost its connection; reconnecting");
                        break;
                    }
                    None => break,
                }
            }
            drop(client);
        }
    }

    /// Sleeps `d`; true when the cluster is stopping.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => false,
            () = self.stop.notified() => true,
        }
    }
}

/// How many leases to take and how many to shed, for a node holding `active` (not draining).
fn plan(b: Balance, active: i64) -> (i64, i64) {
    let hi = (b.queues + b.nodes - 1) / b.nodes;
    let lo = b.queues / b.nodes;
    if active < hi {
        return (hi - active, 0);
    }
    if active > hi {
        return (0, active - hi);
    }
    if b.fullest && b.min_held < lo && active > lo {
        return (0, 1);
    }
    (0, 0)
}

#[async_trait]
impl Cluster for PgCluster {
    fn node_id(&self) -> &str {
        self.store.node_id()
    }

    fn take_events(&self) -> Option<mpsc::Receiver<ClusterEvent>> {
        self.events_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    async fn released(&self, queue: &str, epoch: i64) {
        let mut held = self.held.lock().await;
        let Some(id) = held
            .iter()
            .find(|(_, h)| h.name == queue && h.epoch == epoch)
            .map(|(q, _)| *q)
        else {
            return;
        };
        held.remove(&id);
        drop(held);
        let r = async {
            let c = self.client().await?;
            c.execute(
                "UPDATE leases SET node_id = NULL, expires_at = '-infinity'
                 WHERE queue_id = $1 AND node_id = $2 AND epoch = $3",
                &[&id, &self.store.node_id(), &epoch],
            )
            .await
            .map_err(|e| crate::error::pg(e).to_string())
        };
        match r.await {
            Ok(_) => tracing::info!(%queue, epoch, "queue lease released"),
            // It expires by itself then.
            Err(e) => tracing::warn!(%queue, error = %e, "releasing a queue lease failed"),
        }
    }

    async fn leave(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        self.stop.notify_waiters();
        // Taken after any round in progress: no round runs after this one.
        let mut held = self.held.lock().await;
        held.clear();
        drop(held);
        let db = |e: tokio_postgres::Error| crate::error::pg(e).to_string();
        let r = async {
            let c = self.client().await?;
            c.execute(
                "UPDATE leases SET node_id = NULL, expires_at = '-infinity'
                 WHERE queue_id IN (SELECT queue_id FROM leases WHERE node_id = $1
                                    ORDER BY queue_id FOR UPDATE)",
                &[&self.store.node_id()],
            )
            .await
            .map_err(db)?;
            c.execute("DELETE FROM nodes WHERE id = $1", &[&self.store.node_id()])
                .await
                .map_err(db)
        };
        match tokio::time::timeout(Duration::from_secs(5), r).await {
            Ok(Ok(_)) => tracing::info!("left the cluster; queue leases released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leaving the cluster failed; leases expire by themselves")
            }
            Err(_) => tracing::warn!("leaving the cluster timed out; leases expire by themselves"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(queues: i64, nodes: i64, min_held: i64, fullest: bool) -> Balance {
        Balance {
            queues,
            nodes,
            min_held,
            fullest,
        }
    }

    #[test]
    fn balance_plan_spreads_queues_evenly() {
        // Alone: take everything.
        assert_eq!(plan(b(5, 1, 0, true), 0), (5, 0));
        // A second node joins: the first sheds down to ceil(5/2) = 3, the newcomer takes 3.
        assert_eq!(plan(b(5, 2, 0, true), 5), (0, 2));
        assert_eq!(plan(b(5, 2, 0, false), 0), (3, 0));
        // 4 queues on 3 nodes held 2, 2, 0: the fullest sheds one until the third has 1.
        assert_eq!(plan(b(4, 3, 0, true), 2), (0, 1));
        assert_eq!(plan(b(4, 3, 0, false), 2), (0, 0));
        assert_eq!(plan(b(4, 3, 1, true), 2), (0, 0));
        // A node died: the survivors take up to the new share.
        assert_eq!(plan(b(6, 2, 3, false), 2), (1, 0));
        // No queues.
        assert_eq!(plan(b(0, 3, 0, true), 0), (0, 0));
    }
}
