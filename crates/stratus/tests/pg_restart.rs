//! PostgreSQL going away (or freezing) and coming back under load, black-box: real `stratus
//! serve --store postgres://…` nodes on a real PostgreSQL (from `stratus-testpg`), a stream of
//! named creates, deliveries to a receiver on 127.0.0.1.
//!
//! `postgres_restart_mid_load_loses_nothing`: two nodes, creates through both.
//!
//! Mid-stream PostgreSQL is stopped (fast shutdown: every connection is cut) for about two
//! seconds while the stream and extra probes (CreateTask, GetQueue, ListTasks on each node)
//! keep calling, then started again on the same port. Proves:
//!
//! - while the database is away, every failing API call is an HTTP 503 with the Cloud Tasks
//!   error body (`error.code` 503, `error.status` "UNAVAILABLE"): none is a 500 or any other
//!   status, none is a refused or cut connection, and none takes longer than 12 s (the store
//!   timeout is 10 s);
//! - the outage was real: at least one create was refused with 503;
//! - afterwards the API recovers by itself (the time is printed), the same server processes
//!   keep serving (no restart), and every acknowledged task (200, or 409 ALREADY_EXISTS for a
//!   create retried after an error) is delivered at least once.
//!
//! `frozen_postgres_answers_503_within_the_store_timeout`: the database does not go away but
//! stops answering (SIGSTOP to every PostgreSQL process for 12 s: connections are accepted by
//! the kernel, queries never return). Proves that every call still answers, with 503
//! UNAVAILABLE, within 12 s (the 10 s store timeout bounds it), and that after SIGCONT the API
//! recovers, the node takes its queue lease again (it gave it up: the freeze outlasts the lease
//! timeout) and tasks acknowledged then are delivered.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stratus_testpg::PgServer;
use support::cluster::{
    Creates, Frozen, NewTask, Node, PgLogOnPanic, Receiver, Targets, client, create_queue,
    create_stream, healthz, leases, owner, wait,
};

/// How long API calls go on against the stopped database.
const OUTAGE: Duration = Duration::from_secs(2);
/// No call may take longer (the store gives up after 10 s).
const CALL_BOUND: Duration = Duration::from_secs(12);

/// One API call made while the database was away (or being stopped or started).
#[derive(Debug)]
struct Call {
    node: String,
    what: &'static str,
    took: Duration,
    status: Option<u16>,
    body: String,
}

/// Why `status`/`body` is not an acceptable failure: `None` when it is a success, 409, or a
/// 503 with the Cloud Tasks error body.
fn wrong_failure(status: Option<u16>, body: &str) -> Option<String> {
    match status {
        None => Some(format!("transport error: {body}")),
        Some(200 | 409) => None,
        Some(503) => {
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let e = &v["error"];
            let ok = e["code"] == json!(503)
                && e["status"] == json!("UNAVAILABLE")
                && e["message"].as_str().is_some_and(|m| !m.is_empty());
            (!ok).then(|| format!("503 without the Cloud Tasks error body: {body}"))
        }
        Some(s) => Some(format!("HTTP {s}: {body}")),
    }
}

async fn call(node: &Node, what: &'static str, req: reqwest::RequestBuilder) -> Call {
    let began = Instant::now();
    let (status, body) = match req.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (Some(s), r.text().await.unwrap_or_default())
        }
        Err(e) => (None, format!("{e:?}")),
    };
    Call {
        node: node.id.clone(),
        what,
        took: began.elapsed(),
        status,
        body: body.chars().take(400).collect(),
    }
}

#[test]
fn postgres_restart_mid_load_loses_nothing() {
    const TOTAL: usize = 6_000;
    const CREATE_RATE: f64 = 600.0;
    const IN_FLIGHT: usize = 32;

    let mut pg = PgServer::start().expect("PostgreSQL for the test");
    let db = pg.fresh_database().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let recv = Receiver::start(Duration::from_millis(5)).await;
        let mut nodes: Vec<Node> = tokio::task::block_in_place(|| {
            ["n1", "n2"]
                .iter()
                .map(|id| Node::start(&db, id, &[]))
                .collect()
        });
        let pids: Vec<Option<u32>> = nodes.iter().map(Node::pid).collect();
        let http = client();
        let queues = [
            create_queue(&http, &nodes[0].url(), "r0", 20).await,
            create_queue(&http, &nodes[1].url(), "r1", 20).await,
        ];
        wait("a live lease on both queues", Duration::from_secs(30), async || {
            let l = leases(&db).await;
            queues.iter().all(|q| l.iter().any(|l| &l.queue == q))
        })
        .await;

        let tasks: Vec<NewTask> = (0..TOTAL)
            .map(|i| NewTask {
                queue: queues[i % 2].clone(),
                id: format!("t{i}"),
            })
            .collect();
        let targets = Targets::new(nodes.iter().map(Node::url).collect());
        let creates = Arc::new(Creates::default());
        let stream = create_stream(
            http.clone(),
            targets,
            tasks,
            IN_FLIGHT,
            CREATE_RATE,
            recv.url.clone(),
            // Longer than the outage and the recovery: a create fails only if the API does
            // not come back.
            Duration::from_secs(90),
            creates.clone(),
        );
        wait(
            "a third of the creates acknowledged",
            Duration::from_secs(60),
            async || creates.acked() >= TOTAL / 3,
        )
        .await;

        // The outage.
        let stop_began = Instant::now();
        tokio::task::block_in_place(|| pg.stop())
            .expect("stopping PostgreSQL (the test needs its own server: unset STRATUS_TEST_PG_URL)");
        let stopped_at = Instant::now();
        let (acked_at_stop, delivered_at_stop) = (creates.acked(), recv.total());
        eprintln!(
            "PostgreSQL stopped (pg_ctl took {:.2} s) with {acked_at_stop} of {TOTAL} creates \
             acknowledged and {delivered_at_stop} delivered",
            (stopped_at - stop_began).as_secs_f64()
        );
        // Probes on every node while it is away, each in its own task so a hang shows as a
        // long call instead of fewer calls.
        let mut probes = tokio::task::JoinSet::new();
        let mut k = 0;
        while stopped_at.elapsed() < OUTAGE {
            for (n, node) in nodes.iter().enumerate() {
                let q = &queues[n % 2];
                let base = node.url();
                let reqs: [(&'static str, reqwest::RequestBuilder); 3] = [
                    (
                        "CreateTask",
                        http.post(format!("{base}/v2/{q}/tasks")).json(&json!({"task": {
                            "name": format!("{q}/tasks/probe-{k}"),
                            "httpRequest": {"url": format!("{}/probe", recv.url)},
                        }})),
                    ),
                    ("GetQueue", http.get(format!("{base}/v2/{q}"))),
                    ("ListTasks", http.get(format!("{base}/v2/{q}/tasks?pageSize=5"))),
                ];
                for (what, req) in reqs {
                    let node_id = node.id.clone();
                    probes.spawn(async move {
                        let began = Instant::now();
                        let (status, body) = match req.send().await {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                (Some(s), r.text().await.unwrap_or_default())
                            }
                            Err(e) => (None, format!("{e:?}")),
                        };
                        (
                            format!("probe-{k}"),
                            Call {
                                node: node_id,
                                what,
                                took: began.elapsed(),
                                status,
                                body: body.chars().take(400).collect(),
                            },
                        )
                    });
                }
                k += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let start_began = Instant::now();
        tokio::task::block_in_place(|| pg.start_again()).expect("starting PostgreSQL again");
        let restarted_at = Instant::now();
        eprintln!(
            "PostgreSQL started again after {:.2} s away (pg_ctl start took {:.2} s)",
            (restarted_at - stopped_at).as_secs_f64(),
            (restarted_at - start_began).as_secs_f64()
        );

        // Recovery: the first CreateTask answered 200 on each node (polled every 50 ms; the
        // calls before it are judged like the probes).
        let mut calls = Vec::new();
        let mut acked_extra = Vec::new();
        let mut recovered: Vec<Option<Duration>> = vec![None; nodes.len()];
        let mut n = 0;
        while recovered.iter().any(Option::is_none) {
            assert!(
                restarted_at.elapsed() < Duration::from_secs(60),
                "the API did not recover within 60 s of PostgreSQL's restart: {recovered:?}"
            );
            for (i, node) in nodes.iter().enumerate() {
                if recovered[i].is_some() {
                    continue;
                }
                n += 1;
                let q = &queues[0];
                let id = format!("recovery-{n}");
                let c = call(
                    node,
                    "CreateTask",
                    http.post(format!("{}/v2/{q}/tasks", node.url()))
                        .json(&json!({"task": {
                            "name": format!("{q}/tasks/{id}"),
                            "httpRequest": {"url": format!("{}/recovery", recv.url)},
                        }})),
                )
                .await;
                if matches!(c.status, Some(200 | 409)) {
                    acked_extra.push(id);
                }
                if c.status == Some(200) {
                    recovered[i] = Some(restarted_at.elapsed());
                }
                calls.push(c);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let recovered: Vec<String> = nodes
            .iter()
            .zip(&recovered)
            .map(|(n, d)| format!("{} {:.2} s", n.id, d.unwrap_or_default().as_secs_f64()))
            .collect();
        eprintln!(
            "API recovered: the first CreateTask answered 200 after PostgreSQL was started again \
             on {} ({:.2} s after it was stopped)",
            recovered.join(", "),
            stopped_at.elapsed().as_secs_f64()
        );

        let mut probe_acked = Vec::new();
        while let Some(r) = probes.join_next().await {
            let (id, c) = r.unwrap();
            if c.what == "CreateTask" && matches!(c.status, Some(200 | 409)) {
                probe_acked.push(id);
            }
            calls.push(c);
        }

        tokio::time::timeout(Duration::from_secs(150), stream)
            .await
            .expect("the creates did not finish within 150 s")
            .unwrap();

        // Every failure: probes and the stream's own calls.
        let failures = creates.failures();
        let mut wrong: Vec<String> = calls
            .iter()
            .filter_map(|c| {
                wrong_failure(c.status, &c.body)
                    .map(|w| format!("{} {} after {:?}: {w}", c.node, c.what, c.took))
            })
            .collect();
        wrong.extend(failures.iter().filter_map(|f| {
            wrong_failure(f.status, &f.body)
                .map(|w| format!("n{} CreateTask (stream) after {:?}: {w}", f.node + 1, f.took))
        }));
        let slowest_probe = calls.iter().map(|c| c.took).max().unwrap_or_default();
        let slowest_create = *creates.slowest.lock().unwrap();
        let refused_503 = calls
            .iter()
            .filter(|c| c.what == "CreateTask" && c.status == Some(503))
            .count()
            + failures.iter().filter(|f| f.status == Some(503)).count();
        let by = |what: &str, s: Option<u16>| {
            calls
                .iter()
                .filter(|c| c.what == what && c.status == s)
                .count()
        };
        eprintln!(
            "during the outage and recovery: {} probe calls (CreateTask 503: {}, GetQueue 200/503: {}/{}, \
             ListTasks 200/503: {}/{}), slowest {:.2} s; the stream had {} failed calls, slowest \
             create {:.2} s",
            calls.len(),
            by("CreateTask", Some(503)),
            by("GetQueue", Some(200)),
            by("GetQueue", Some(503)),
            by("ListTasks", Some(200)),
            by("ListTasks", Some(503)),
            slowest_probe.as_secs_f64(),
            failures.len(),
            slowest_create.as_secs_f64()
        );
        assert!(
            wrong.is_empty(),
            "{} calls failed otherwise than with 503 UNAVAILABLE, e.g. {:#?}",
            wrong.len(),
            &wrong[..wrong.len().min(8)]
        );
        assert!(
            slowest_probe <= CALL_BOUND && slowest_create <= CALL_BOUND,
            "a call took {:.1} s (probes) / {:.1} s (creates), more than {CALL_BOUND:?}",
            slowest_probe.as_secs_f64(),
            slowest_create.as_secs_f64()
        );
        assert!(
            refused_503 > 0,
            "no create was refused while PostgreSQL was stopped: the outage was not exercised"
        );
        let abandoned = creates.abandoned.lock().unwrap().clone();
        assert!(
            abandoned.is_empty(),
            "{} creates never acknowledged, e.g. {:?}",
            abandoned.len(),
            &abandoned[..abandoned.len().min(5)]
        );

        // Everything acknowledged is delivered.
        let mut acked = creates.acked.lock().unwrap().clone();
        assert_eq!(acked.len(), TOTAL, "acknowledged creates of the stream");
        acked.extend(probe_acked);
        acked.extend(acked_extra);
        let took = {
            let start = Instant::now();
            let mut missing = Vec::new();
            while start.elapsed() < Duration::from_secs(90) {
                let counts = recv.counts();
                missing = acked
                    .iter()
                    .filter(|id| !counts.contains_key(*id))
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert!(
                missing.is_empty(),
                "{} acknowledged tasks not delivered within 90 s, e.g. {:?}; leases: {:?}",
                missing.len(),
                &missing[..missing.len().min(10)],
                leases(&db).await
            );
            start.elapsed()
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let counts = recv.counts();
        let duplicates: u32 = counts.values().map(|n| n - 1).sum();
        eprintln!(
            "all {} acknowledged tasks delivered ({:.1} s after the last create); {duplicates} \
             duplicate deliveries",
            acked.len(),
            took.as_secs_f64()
        );

        // The same processes, still serving.
        for (node, pid) in nodes.iter_mut().zip(&pids) {
            assert!(node.is_running(), "node {} exited", node.id);
            assert_eq!(node.pid(), *pid);
            assert!(healthz(node.port), "node {} /healthz", node.id);
        }
    });
}

#[test]
fn frozen_postgres_answers_503_within_the_store_timeout() {
    /// How long API calls go on against the frozen database: longer than the store timeout
    /// (10 s) and the lease timeout (8 s).
    const FROZEN_FOR: Duration = Duration::from_secs(12);

    let pg = PgServer::start().expect("PostgreSQL for the test");
    let _pg_log = PgLogOnPanic(&pg);
    let port = pg
        .port()
        .expect("the test freezes its own PostgreSQL: unset STRATUS_TEST_PG_URL");
    let db = pg.fresh_database().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let recv = Receiver::start(Duration::from_millis(2)).await;
        let mut node = tokio::task::block_in_place(|| Node::start(&db, "n1", &[]));
        let pid = node.pid();
        let http = client();
        let q = create_queue(&http, &node.url(), "fz", 10).await;
        wait(
            "a live lease on the queue",
            Duration::from_secs(30),
            async || owner(&db, &q).await.is_some(),
        )
        .await;
        let before = owner(&db, &q).await.unwrap();
        let create = |id: String| {
            http.post(format!("{}/v2/{q}/tasks", node.url()))
                .json(&json!({"task": {
                    "name": format!("{q}/tasks/{id}"),
                    "httpRequest": {"url": format!("{}/fz", recv.url)},
                }}))
        };
        for i in 0..20 {
            let c = call(&node, "CreateTask", create(format!("before-{i}"))).await;
            assert_eq!(c.status, Some(200), "{c:?}");
        }
        wait(
            "the first 20 tasks delivered",
            Duration::from_secs(30),
            async || (0..20).all(|i| recv.delivered(&format!("before-{i}"))),
        )
        .await;

        let frozen = Frozen::freeze(port);
        let frozen_at = Instant::now();
        let mut probes = tokio::task::JoinSet::new();
        let mut k = 0;
        while frozen_at.elapsed() < FROZEN_FOR {
            let reqs: [(&'static str, reqwest::RequestBuilder); 3] = [
                ("CreateTask", create(format!("frozen-{k}"))),
                ("GetQueue", http.get(format!("{}/v2/{q}", node.url()))),
                (
                    "ListTasks",
                    http.get(format!("{}/v2/{q}/tasks?pageSize=5", node.url())),
                ),
            ];
            for (what, req) in reqs {
                let id = format!("frozen-{k}");
                let node_id = node.id.clone();
                probes.spawn(async move {
                    let began = Instant::now();
                    let (status, body) = match req.send().await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            (Some(s), r.text().await.unwrap_or_default())
                        }
                        Err(e) => (None, format!("{e:?}")),
                    };
                    (
                        id,
                        Call {
                            node: node_id,
                            what,
                            took: began.elapsed(),
                            status,
                            body: body.chars().take(400).collect(),
                        },
                    )
                });
            }
            k += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Every probe answers while the database is still frozen (the client gives up after
        // 20 s, which shows as a transport error).
        let mut calls = Vec::new();
        let mut acked = Vec::new();
        while let Some(r) = probes.join_next().await {
            let (id, c) = r.unwrap();
            if c.what == "CreateTask" && matches!(c.status, Some(200 | 409)) {
                acked.push(id);
            }
            calls.push(c);
        }
        let frozen_secs = frozen_at.elapsed().as_secs_f64();
        frozen.thaw();
        let thawed_at = Instant::now();

        let by = |what: &str, s: Option<u16>| {
            calls
                .iter()
                .filter(|c| c.what == what && c.status == s)
                .count()
        };
        let slowest = calls.iter().map(|c| c.took).max().unwrap_or_default();
        let slowest_503 = calls
            .iter()
            .filter(|c| c.status == Some(503))
            .map(|c| c.took)
            .max()
            .unwrap_or_default();
        eprintln!(
            "PostgreSQL frozen (SIGSTOP) for {frozen_secs:.1} s: {} calls (CreateTask 503: {}, \
             GetQueue 200/503: {}/{}, ListTasks 200/503: {}/{}); slowest answer {:.2} s, \
             slowest 503 {:.2} s",
            calls.len(),
            by("CreateTask", Some(503)),
            by("GetQueue", Some(200)),
            by("GetQueue", Some(503)),
            by("ListTasks", Some(200)),
            by("ListTasks", Some(503)),
            slowest.as_secs_f64(),
            slowest_503.as_secs_f64()
        );
        let wrong: Vec<String> = calls
            .iter()
            .filter_map(|c| {
                wrong_failure(c.status, &c.body)
                    .map(|w| format!("{} after {:.2} s: {w}", c.what, c.took.as_secs_f64()))
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{} of {} calls to a node whose database is frozen failed otherwise than with 503 \
             UNAVAILABLE, e.g. {:#?}",
            wrong.len(),
            calls.len(),
            &wrong[..wrong.len().min(8)]
        );
        let slow: Vec<String> = calls
            .iter()
            .filter(|c| c.took > CALL_BOUND)
            .map(|c| format!("{} {:.1} s", c.what, c.took.as_secs_f64()))
            .collect();
        assert!(
            slow.is_empty(),
            "{} calls took longer than {CALL_BOUND:?}: {slow:?}",
            slow.len()
        );
        assert!(
            by("CreateTask", Some(503)) > 0,
            "no create was refused while PostgreSQL was frozen: the freeze was not exercised"
        );

        // Recovery, then new tasks are dispatched (the node gave its lease up while the
        // database was frozen longer than the lease timeout, and takes it again).
        let mut n = 0;
        let took = wait(
            "CreateTask answering 200 after the thaw",
            Duration::from_secs(60),
            async || {
                n += 1;
                let c = call(&node, "CreateTask", create(format!("after-{n}"))).await;
                if matches!(c.status, Some(200 | 409)) {
                    acked.push(format!("after-{n}"));
                }
                c.status == Some(200)
            },
        )
        .await;
        eprintln!(
            "API recovered {:.2} s after the thaw",
            (thawed_at.elapsed().min(took)).as_secs_f64()
        );
        for i in 0..20 {
            let c = call(&node, "CreateTask", create(format!("later-{i}"))).await;
            assert_eq!(c.status, Some(200), "{c:?}");
            acked.push(format!("later-{i}"));
        }
        let delivered = wait(
            "every task acknowledged during and after the freeze delivered",
            Duration::from_secs(60),
            async || acked.iter().all(|id| recv.delivered(id)),
        )
        .await;
        let after = owner(&db, &q).await.expect("the queue has an owner again");
        eprintln!(
            "{} acknowledged tasks delivered {:.1} s after the recovery; lease epoch {} before \
             the freeze, {} after",
            acked.len(),
            delivered.as_secs_f64(),
            before.epoch,
            after.epoch
        );
        assert!(node.is_running(), "the node exited");
        assert_eq!(node.pid(), pid);
        assert!(healthz(node.port), "/healthz");
    });
}
