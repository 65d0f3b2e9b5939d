//! The engine in cluster mode, with the lease manager played by the test: it dispatches only
//! the queues it is told it owns, hands a queue back only once its attempts in flight are done,
//! and loads tasks other nodes created. (Fencing itself is checked against PostgreSQL.)

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stratus_api::{Service, ServiceConfig};
use stratus_store::cluster::{Cluster, ClusterEvent};
use stratus_types::QueuePath;
use stratus_types::proto::tasks::{CreateTaskRequest, Queue, RateLimits};
use support::*;
use tokio::sync::mpsc;

/// The lease manager, scripted: events are sent by the test; releases are recorded.
struct FakeCluster {
    rx: Mutex<Option<mpsc::Receiver<ClusterEvent>>>,
    released: Mutex<Vec<(String, i64)>>,
}

#[async_trait]
impl Cluster for FakeCluster {
    fn node_id(&self) -> &str {
        "n1"
    }
    fn take_events(&self) -> Option<mpsc::Receiver<ClusterEvent>> {
        self.rx.lock().unwrap().take()
    }
    async fn released(&self, queue: &str, epoch: i64) {
        self.released
            .lock()
            .unwrap()
            .push((queue.to_string(), epoch));
    }
    async fn leave(&self) {}
}

fn qname(id: &str) -> String {
    format!("{LOC}/queues/{id}")
}

fn owned(pairs: &[(&str, i64)]) -> ClusterEvent {
    ClusterEvent::Owned(pairs.iter().map(|(q, e)| (qname(q), *e)).collect())
}

/// Waits (real time, bounded) until `cond` holds. (Not `settle`: attempts may be held.)
async fn wait_for(what: &str, _h: &Harness, cond: impl Fn() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn seen_in(h: &Harness, queue: &str) -> usize {
    h.recv
        .seen()
        .iter()
        .filter(|s| s.header("x-cloudtasks-queuename") == Some(queue))
        .count()
}

#[tokio::test]
async fn dispatches_owned_queues_only_and_hands_them_back_after_the_drain() {
    let (tx, rx) = mpsc::channel(16);
    let cluster = Arc::new(FakeCluster {
        rx: Mutex::new(Some(rx)),
        released: Mutex::new(Vec::new()),
    });
    let h = Harness::with_cluster(cluster.clone()).await;
    let one_at_a_time = Queue {
        rate_limits: Some(RateLimits {
            max_concurrent_dispatches: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    h.queue("a", one_at_a_time.clone()).await;
    h.queue("b", one_at_a_time).await;
    h.create("a", h.http_task("a", "a1", "/a", 0)).await;
    h.create("b", h.http_task("b", "b1", "/b", 0)).await;
    // Nothing is owned yet: nothing goes out.
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.settle().await;
    assert_eq!(h.recv.count(), 0, "dispatched a queue it does not own");

    tx.send(owned(&[("a", 7)])).await.unwrap();
    wait_for("a1", &h, || seen_in(&h, "a") == 1).await;
    assert_eq!(seen_in(&h, "b"), 0, "dispatched b without its lease");

    // b becomes ours and a goes: a is handed back at once (nothing in flight).
    h.recv.script([Reply {
        hold: true,
        ..Reply::status(200)
    }]);
    h.create("b", h.http_task("b", "b2", "/b", 0)).await;
    tx.send(owned(&[("b", 3)])).await.unwrap();
    wait_for("b1 held", &h, || h.recv.in_flight() == 1).await;
    wait_for("a released", &h, || {
        cluster.released.lock().unwrap().as_slice() == [(qname("a"), 7)]
    })
    .await;

    // b goes while its attempt is held: no release before the attempt ends.
    tx.send(owned(&[])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        cluster.released.lock().unwrap().len(),
        1,
        "released b with an attempt in flight"
    );
    h.recv.release();
    wait_for("b released", &h, || {
        cluster.released.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(cluster.released.lock().unwrap()[1], (qname("b"), 3));
    // b2 was not started after the hand-over began.
    assert_eq!(seen_in(&h, "b"), 1);
}

#[tokio::test]
async fn tasks_other_nodes_created_are_loaded_by_row() {
    let (tx, rx) = mpsc::channel(16);
    let cluster = Arc::new(FakeCluster {
        rx: Mutex::new(Some(rx)),
        released: Mutex::new(Vec::new()),
    });
    let h = Harness::with_cluster(cluster).await;
    h.queue("q", Queue::default()).await;
    tx.send(owned(&[("q", 42)])).await.unwrap();
    h.create("q", h.http_task("q", "mine", "/q", 0)).await;
    wait_for("mine", &h, || seen_in(&h, "q") == 1).await;
    let rec = h
        .store
        .task_record(&QueuePath::parse(&qname("q")).unwrap().task("mine"))
        .await
        .unwrap();
    assert_eq!(rec.attempts.len(), 1, "the attempt was recorded");

    // Another node's create: stored without telling this engine, then announced by row.
    let other = Service::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        ServiceConfig::default(),
    );
    let mut t = h.http_task("q", "theirs", "/q", 0);
    t.schedule_time = None;
    other
        .create_task(CreateTaskRequest {
            parent: qname("q"),
            task: Some(t),
            response_view: 0,
        })
        .await
        .unwrap();
    let due = h
        .store
        .get_due_task(&QueuePath::parse(&qname("q")).unwrap().task("theirs"))
        .await
        .unwrap();
    // The engine loaded everything due when it took the queue and the virtual clock stands
    // still, so only the event brings this one in (the safety scan comes after 10 s of real
    // time, beyond this wait).
    tx.send(ClusterEvent::TasksCreated {
        queue: qname("q"),
        rows: vec![due.row],
    })
    .await
    .unwrap();
    wait_for("theirs", &h, || seen_in(&h, "q") == 2).await;
}
