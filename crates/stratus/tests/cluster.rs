//! Cluster mode, black-box: several real `stratus serve --store postgres://…` processes on one
//! PostgreSQL database (a real server from `stratus-testpg`), delivering to a receiver on
//! 127.0.0.1.
//!
//! - `three_nodes_survive_losing_the_busiest_owner`: three nodes, six queues with different
//!   concurrency limits, 20,000 named tasks created through random nodes while the owner of
//!   the busiest queue is SIGKILLed mid-stream. Proves: every acknowledged task is delivered
//!   at least once; no queue ever has more requests in flight at the receiver than its
//!   `maxConcurrentDispatches`, counted across the whole cluster (one owner per queue, also
//!   during the takeover); the busiest queue is dispatched again within lease timeout + 2 s of
//!   the kill, by another node with a higher lease epoch. Prints the takeover time and the
//!   number of duplicate deliveries.
//! - `queues_spread_across_nodes_and_rebalance`: six queues on one node; two more nodes join
//!   and each ends up owning two; one node stopped with SIGTERM hands its queues over at once
//!   (well before its leases could expire), the two others own three each, and tasks created
//!   afterwards are delivered.
//!
//! Lease ownership is read from the `stratus.leases` table with `psql`. Each node's log goes to
//! a file, whose tail is printed when a test fails. The tests of this file run one at a time.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stratus_testpg::PgServer;
use support::cluster::{
    Creates, NewTask, Node, PgLogOnPanic, Receiver, Targets, client, create_queue, create_stream,
    held_by_node, leases, mix, owner, wait,
};

/// The lease timeout the nodes run with in the failover test (the default).
const LEASE_TIMEOUT: Duration = Duration::from_secs(8);

/// The tests start several servers each: one at a time on this 2-core machine.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn start_nodes(db: &str, ids: &[&str], extra: &[&str]) -> Vec<Node> {
    tokio::task::block_in_place(|| ids.iter().map(|id| Node::start(db, id, extra)).collect())
}

/// A queue of the failover test: ID, `maxConcurrentDispatches`, tasks.
struct Spec {
    id: &'static str,
    concurrent: u32,
    tasks: usize,
}

/// `busy` gets the most tasks; the limits differ so a limit broken anywhere shows.
const SPECS: [Spec; 6] = [
    Spec {
        id: "busy",
        concurrent: 20,
        tasks: 7_000,
    },
    Spec {
        id: "five-a",
        concurrent: 5,
        tasks: 2_500,
    },
    Spec {
        id: "ten-a",
        concurrent: 10,
        tasks: 3_000,
    },
    Spec {
        id: "twenty",
        concurrent: 20,
        tasks: 3_000,
    },
    Spec {
        id: "ten-b",
        concurrent: 10,
        tasks: 2_500,
    },
    Spec {
        id: "five-b",
        concurrent: 5,
        tasks: 2_000,
    },
];

#[test]
fn three_nodes_survive_losing_the_busiest_owner() {
    /// Creates started per second at most: keeps the stream going well past the kill.
    const CREATE_RATE: f64 = 1_000.0;
    /// Creates in flight at most.
    const IN_FLIGHT: usize = 48;
    /// The receiver's answer time: long enough that the concurrency limits, not the 500/s
    /// rate, bound the queues (5 concurrent × 20 ms = 250/s).
    const ANSWER_AFTER: Duration = Duration::from_millis(20);
    /// Requests the killed node wrote just before it died may still arrive this long after
    /// the kill; the takeover is the first delivery after that.
    const STRAGGLERS: Duration = Duration::from_millis(250);

    let _serial = serial();
    let pg = PgServer::start().expect("PostgreSQL for the test");
    let _pg_log = PgLogOnPanic(&pg);
    let db = pg.fresh_database().unwrap();
    let total: usize = SPECS.iter().map(|s| s.tasks).sum();
    let lease = format!("{}s", LEASE_TIMEOUT.as_secs());
    runtime().block_on(async {
        let recv = Receiver::start(ANSWER_AFTER).await;
        let mut nodes = start_nodes(&db, &["n1", "n2", "n3"], &["--lease-timeout", &lease]);
        let http = client();

        let mut queues = Vec::new();
        for (i, s) in SPECS.iter().enumerate() {
            queues.push(create_queue(&http, &nodes[i % 3].url(), s.id, s.concurrent).await);
        }
        let busy = queues[0].clone();
        let took = wait(
            "a live lease on every queue",
            Duration::from_secs(30),
            async || {
                let l = leases(&db).await;
                queues.iter().all(|q| l.iter().any(|l| &l.queue == q))
            },
        )
        .await;
        // The spread is the other test's subject; here it only makes the kill typical.
        let spread = Instant::now();
        while spread.elapsed() < Duration::from_secs(15) {
            let held = held_by_node(&leases(&db).await, &queues);
            if held.len() == 3 && held.values().all(|&n| n == 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "every queue leased after {:.1} s; spread {:?}",
            took.as_secs_f64(),
            held_by_node(&leases(&db).await, &queues)
        );

        // The tasks, queues interleaved at random so every queue is fed all along.
        let mut tasks: Vec<NewTask> = Vec::with_capacity(total);
        for (q, s) in SPECS.iter().enumerate() {
            for _ in 0..s.tasks {
                tasks.push(NewTask {
                    queue: queues[q].clone(),
                    id: String::new(),
                });
            }
        }
        // Fisher-Yates with a fixed sequence: the same order every run.
        for i in (1..tasks.len()).rev() {
            let j = (mix(i as u64) % (i as u64 + 1)) as usize;
            tasks.swap(i, j);
        }
        for (i, t) in tasks.iter_mut().enumerate() {
            t.id = format!("t{i}");
        }
        let ids_of_busy: HashSet<String> = tasks
            .iter()
            .filter(|t| t.queue == busy)
            .map(|t| t.id.clone())
            .collect();

        let targets = Targets::new(nodes.iter().map(Node::url).collect());
        let creates = Arc::new(Creates::default());
        let started = Instant::now();
        let stream = create_stream(
            http.clone(),
            targets.clone(),
            tasks,
            IN_FLIGHT,
            CREATE_RATE,
            recv.url.clone(),
            Duration::from_secs(60),
            creates.clone(),
        );

        wait(
            "a third of the tasks delivered",
            Duration::from_secs(90),
            async || recv.total() >= total / 3,
        )
        .await;
        let acked_at_kill = creates.acked();
        assert!(
            acked_at_kill < total,
            "every create was acknowledged before a third was delivered: the kill would not be \
             mid-stream"
        );
        let victim = owner(&db, &busy)
            .await
            .expect("the busiest queue has a live owner");
        let held_by_victim: Vec<String> = leases(&db)
            .await
            .into_iter()
            .filter(|l| l.node == victim.node)
            .map(|l| l.queue)
            .collect();
        let v = nodes
            .iter()
            .position(|n| n.id == victim.node)
            .unwrap_or_else(|| panic!("unknown owner {:?}", victim.node));
        targets.mark_down(v);
        let kill_at = Instant::now();
        nodes[v].kill();
        eprintln!(
            "SIGKILL {} (owner of {busy} at epoch {}, holding {held_by_victim:?}) {:.1} s into \
             the stream: {} delivered, {acked_at_kill} of {total} creates acknowledged",
            victim.node,
            victim.epoch,
            started.elapsed().as_secs_f64(),
            recv.total()
        );

        tokio::time::timeout(Duration::from_secs(120), stream)
            .await
            .expect("the creates did not finish within 120 s")
            .unwrap();
        let creates_took = started.elapsed();
        let abandoned = creates.abandoned.lock().unwrap().clone();
        let failures = creates.failures();
        // Calls to the killed node fail (connection refused or cut); anything else is a
        // server error.
        let bad: Vec<_> = failures
            .iter()
            .filter(|f| !(f.node == v && f.status.is_none()))
            .collect();
        eprintln!(
            "creates: {} acknowledged in {:.1} s; {} failed calls ({} to the killed node); \
             slowest call {:.2} s",
            creates.acked(),
            creates_took.as_secs_f64(),
            failures.len(),
            failures.len() - bad.len(),
            creates.slowest.lock().unwrap().as_secs_f64()
        );
        assert!(
            bad.is_empty(),
            "{} create calls to live nodes failed; first ones: {:#?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        assert!(
            abandoned.is_empty(),
            "{} creates never acknowledged, e.g. {:?}",
            abandoned.len(),
            &abandoned[..abandoned.len().min(5)]
        );
        let acked = creates.acked.lock().unwrap().clone();
        assert_eq!(acked.len(), total, "acknowledged creates");

        let waited = Instant::now();
        let mut missing = acked.len();
        while waited.elapsed() < Duration::from_secs(120) {
            let counts = recv.counts();
            missing = acked.iter().filter(|id| !counts.contains_key(*id)).count();
            if missing == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let counts = recv.counts();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .collect();
        let lost_busy = lost.iter().filter(|id| ids_of_busy.contains(**id)).count();
        assert!(
            lost.is_empty(),
            "{missing} acknowledged tasks not delivered within 120 s of the last create \
             ({lost_busy} of them in {busy}), e.g. {:?}; leases now: {:?}",
            &lost[..lost.len().min(10)],
            leases(&db).await
        );
        let all_delivered = started.elapsed();
        // Late duplicates, if any, before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let counts = recv.counts();
        let duplicates: u32 = counts.values().map(|n| n - 1).sum();

        // Concurrency, per queue, across the cluster.
        eprintln!(
            "{:>8} {:>6} {:>6} {:>10} {:>9}",
            "queue", "limit", "tasks", "deliveries", "max seen"
        );
        let mut over = Vec::new();
        for s in &SPECS {
            let max = recv.max_concurrent(s.id);
            eprintln!(
                "{:>8} {:>6} {:>6} {:>10} {:>9}",
                s.id,
                s.concurrent,
                s.tasks,
                recv.arrivals(s.id).len(),
                max
            );
            if max > s.concurrent as usize {
                over.push(format!("{}: {max} > {}", s.id, s.concurrent));
            }
        }

        // Takeover: the first delivery of each of the victim's queues after the kill.
        let first_after = |queue_id: &str| {
            recv.arrivals(queue_id)
                .into_iter()
                .filter(|t| *t > kill_at + STRAGGLERS)
                .min()
                .map(|t| t - kill_at)
        };
        for q in &held_by_victim {
            let id = q.rsplit('/').next().unwrap();
            eprintln!(
                "  {id}: first delivery {} after the kill",
                first_after(id).map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64()))
            );
        }
        let takeover =
            first_after("busy").expect("no delivery of the busiest queue after the kill");
        eprintln!(
            "takeover after kill: {:.1} s (lease timeout {} s)",
            takeover.as_secs_f64(),
            LEASE_TIMEOUT.as_secs()
        );
        eprintln!(
            "deliveries: {} for {total} tasks, {duplicates} duplicate deliveries; everything \
             delivered {:.1} s after the first create",
            recv.total(),
            all_delivered.as_secs_f64()
        );
        let now_owner = owner(&db, &busy)
            .await
            .expect("the busiest queue has an owner");
        assert_ne!(
            now_owner.node, victim.node,
            "the killed node still holds {busy}"
        );
        assert!(
            now_owner.epoch > victim.epoch,
            "{busy} changed owner without a higher epoch: {victim:?} → {now_owner:?}"
        );
        assert!(
            over.is_empty(),
            "maxConcurrentDispatches exceeded across the cluster: {over:?}"
        );
        assert!(
            takeover <= LEASE_TIMEOUT + Duration::from_secs(2),
            "the busiest queue was dispatched again only {:.1} s after its owner was killed \
             (lease timeout {} s)",
            takeover.as_secs_f64(),
            LEASE_TIMEOUT.as_secs()
        );
        for n in nodes.iter_mut().filter(|n| n.id != victim.node) {
            assert!(n.is_running(), "node {} exited", n.id);
        }
    });
}

#[test]
fn queues_spread_across_nodes_and_rebalance() {
    /// Long enough that a lease expiring by itself is far slower than a hand-over.
    const LEASE: Duration = Duration::from_secs(20);
    /// A graceful stop hands the queues over well before its leases could expire.
    const HANDOVER_WITHIN: Duration = Duration::from_secs(10);

    let _serial = serial();
    let pg = PgServer::start().expect("PostgreSQL for the test");
    let _pg_log = PgLogOnPanic(&pg);
    let db = pg.fresh_database().unwrap();
    let lease = format!("{}s", LEASE.as_secs());
    let extra = ["--lease-timeout", lease.as_str()];
    runtime().block_on(async {
        let recv = Receiver::start(Duration::from_millis(2)).await;
        let http = client();
        let mut nodes = start_nodes(&db, &["n1"], &extra);
        let mut queues = Vec::new();
        for i in 0..6 {
            queues.push(create_queue(&http, &nodes[0].url(), &format!("rb{i}"), 10).await);
        }
        let alone = wait("n1 owning all 6 queues", Duration::from_secs(30), async || {
            held_by_node(&leases(&db).await, &queues).get("n1") == Some(&6)
        })
        .await;
        eprintln!("n1 owns the 6 queues after {:.1} s", alone.as_secs_f64());

        nodes.extend(start_nodes(&db, &["n2", "n3"], &extra));
        let joined = Instant::now();
        let spread = wait_for_spread(&db, &queues, &[("n1", 2), ("n2", 2), ("n3", 2)], 45).await;
        eprintln!(
            "2 queues per node {:.1} s after n2 and n3 started (waited {:.1} s)",
            joined.elapsed().as_secs_f64(),
            spread.as_secs_f64()
        );

        let stop_at = Instant::now();
        let n2 = nodes.iter_mut().find(|n| n.id == "n2").unwrap();
        let status = tokio::task::block_in_place(|| n2.terminate(Duration::from_secs(30)));
        let exited = stop_at.elapsed();
        let status = status.expect("n2 did not exit within 30 s of SIGTERM");
        assert!(status.success(), "n2 exited with {status} after SIGTERM");
        let mut handed_over = None;
        while stop_at.elapsed() < HANDOVER_WITHIN {
            let held = held_by_node(&leases(&db).await, &queues);
            if held.get("n1") == Some(&3) && held.get("n3") == Some(&3) && held.len() == 2 {
                handed_over = Some(stop_at.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let held = held_by_node(&leases(&db).await, &queues);
        let handed_over = handed_over.unwrap_or_else(|| {
            panic!(
                "{HANDOVER_WITHIN:?} after SIGTERM to n2 (exited after {exited:?}) the queues are \
                 held {held:?}, not 3 by n1 and 3 by n3 (lease timeout {LEASE:?})"
            )
        });
        eprintln!(
            "SIGTERM n2: exited after {:.2} s; n1 and n3 own 3 queues each {:.2} s after the signal \
             (lease timeout {} s)",
            exited.as_secs_f64(),
            handed_over.as_secs_f64(),
            LEASE.as_secs()
        );

        // Tasks created afterwards, through the two remaining nodes, are delivered.
        let live: Vec<String> = nodes
            .iter_mut()
            .filter(|n| n.id != "n2")
            .map(|n| n.url())
            .collect();
        let mut ids = Vec::new();
        for (i, q) in queues.iter().enumerate() {
            for k in 0..10 {
                let id = format!("after-{i}-{k}");
                let base = &live[(i + k) % live.len()];
                support::cluster::post(
                    &http,
                    base,
                    &format!("/v2/{q}/tasks"),
                    serde_json::json!({"task": {
                        "name": format!("{q}/tasks/{id}"),
                        "httpRequest": {"url": format!("{}/after", recv.url), "httpMethod": "POST"},
                    }}),
                )
                .await;
                ids.push(id);
            }
        }
        let took = wait(
            "the 60 tasks created after the stop delivered",
            Duration::from_secs(30),
            async || ids.iter().all(|id| recv.delivered(id)),
        )
        .await;
        eprintln!("60 tasks created after the stop delivered within {:.1} s", took.as_secs_f64());
        let per_queue: HashMap<String, usize> = queues
            .iter()
            .map(|q| {
                let id = q.rsplit('/').next().unwrap().to_string();
                (id.clone(), recv.arrivals(&id).len())
            })
            .collect();
        assert!(
            per_queue.values().all(|&n| n >= 10),
            "deliveries per queue: {per_queue:?}"
        );
        assert_eq!(
            held_by_node(&leases(&db).await, &queues),
            HashMap::from([("n1".to_string(), 3), ("n3".to_string(), 3)]),
            "the spread changed after the hand-over"
        );

        // The queue statistics add up the nodes: each queue's 10 creates went through n1 and
        // n3 by turns, so either node alone counted 5; both must answer 10, from 2 nodes,
        // once the other node's figures are published (every 5 s).
        let mut last = Vec::new();
        let published = wait(
            "both nodes' queue statistics to count every create",
            Duration::from_secs(20),
            async || {
                last.clear();
                for base in &live {
                    let url = format!("{base}/stratus/v1/{}/queueStats", support::cluster::LOC);
                    let v = support::get_json(&http, &url).await;
                    last.push(v);
                }
                last.iter().all(|v| {
                    queues.iter().all(|q| {
                        v["queueStats"].as_array().is_some_and(|list| {
                            list.iter().any(|s| {
                                s["queue"] == q.as_str()
                                    && s["creates"] == 10
                                    && s["nodes"] == 2
                                    && s["dispatches"].as_u64() >= Some(10)
                            })
                        })
                    })
                })
            },
        )
        .await;
        eprintln!(
            "queue statistics agree on both nodes after {:.1} s",
            published.as_secs_f64()
        );
    });
}

/// Waits until the live leases of `queues` are held exactly as `want` (node, count); bounded by
/// `secs`. Prints the spread every few seconds while waiting.
async fn wait_for_spread(
    db: &str,
    queues: &[String],
    want: &[(&str, usize)],
    secs: u64,
) -> Duration {
    let want: HashMap<String, usize> = want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    let start = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let held = held_by_node(&leases(db).await, queues);
        if held == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "after {secs} s the queues are held {held:?}, wanted {want:?}; leases: {:?}",
            leases(db).await
        );
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  … held {held:?} after {:.0} s",
                start.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
