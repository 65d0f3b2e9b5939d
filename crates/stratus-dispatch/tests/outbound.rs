//! Outbound safety end to end (docs/outbound.md): the engine on a virtual clock with real
//! receivers on 127.0.0.1 and 127.0.0.2. Refused attempts fail without a response, carry the
//! reason, are retried per the queue's retry config, and never reach the network; allowed
//! targets are still delivered, redirects included.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stratus_dispatch::engine::EngineConfig;
use stratus_store::TaskState;
use stratus_store::hook::DispatchHook;
use stratus_types::proto::tasks::task::MessageType;
use stratus_types::proto::tasks::{
    CreateQueueRequest, CreateTaskRequest, HttpRequest, Queue, RetryConfig, Task,
};
use stratus_types::target::TargetPolicy;
use stratus_types::time::{SECOND, micros_to_duration, micros_to_ts};
use stratus_types::{QueuePath, TaskPath};
use support::*;

/// A receiver bound to `ip` that counts requests and answers each with `302 Location:
/// redirect` when given, else 200.
struct Target {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl Target {
    async fn start(ip: &str, redirect: Option<String>) -> Target {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let h = h.clone();
            let redirect = redirect.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                match redirect {
                    Some(to) => axum::response::Response::builder()
                        .status(302)
                        .header("location", to)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                    None => axum::response::Response::new(axum::body::Body::empty()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Target {
            url: format!("http://{addr}"),
            hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn policy(deny: &[&str], allow: &[(&str, &[&str])]) -> Arc<TargetPolicy> {
    let deny: Vec<String> = deny.iter().map(|s| s.to_string()).collect();
    let allow: BTreeMap<String, Vec<String>> = allow
        .iter()
        .map(|(p, e)| (p.to_string(), e.iter().map(|s| s.to_string()).collect()))
        .collect();
    Arc::new(TargetPolicy::new(&deny, &allow).unwrap())
}

async fn harness(targets: Arc<TargetPolicy>) -> Harness {
    Harness::with_config(EngineConfig {
        targets,
        ..EngineConfig::default()
    })
    .await
}

/// Two attempts, 1 s apart.
fn two_attempts() -> Queue {
    Queue {
        retry_config: Some(RetryConfig {
            max_attempts: 2,
            max_retry_duration: Some(micros_to_duration(0)),
            min_backoff: Some(micros_to_duration(SECOND)),
            max_backoff: Some(micros_to_duration(SECOND)),
            max_doublings: 0,
        }),
        ..Default::default()
    }
}

async fn queue_in(h: &Harness, queue: &str) {
    let parent = queue.rsplit_once("/queues/").unwrap().0.to_string();
    h.svc
        .create_queue(CreateQueueRequest {
            parent,
            queue: Some(Queue {
                name: queue.to_string(),
                ..two_attempts()
            }),
        })
        .await
        .unwrap();
}

fn task(queue: &str, id: &str, url: &str) -> Task {
    Task {
        name: format!("{queue}/tasks/{id}"),
        message_type: Some(MessageType::HttpRequest(HttpRequest {
            url: url.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Creates through the service (which checks literal hosts against its own, default policy).
async fn create(h: &Harness, queue: &str, id: &str, url: &str) {
    h.svc
        .create_task(CreateTaskRequest {
            parent: queue.to_string(),
            task: Some(task(queue, id, url)),
            response_view: 0,
        })
        .await
        .unwrap();
}

/// Stores a task as a stored-before-the-policy-changed task would be: straight into the store,
/// past the create-time checks, then tells the engine.
async fn store_directly(h: &Harness, queue: &str, id: &str, url: &str) {
    let path = QueuePath::parse(queue).unwrap();
    let mut t = task(queue, id, url);
    let now = h.now();
    t.create_time = Some(micros_to_ts(now));
    t.schedule_time = Some(micros_to_ts(now));
    t.dispatch_deadline = Some(micros_to_duration(600 * SECOND));
    let due = h
        .store
        .create_tasks(&path, vec![t], now, h.svc.config().windows)
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    h.engine.tasks_created(&path, &[due]);
}

/// Every attempt's error (`None` for an attempt that got a response).
async fn errors(h: &Harness, queue: &str, id: &str) -> Vec<Option<String>> {
    let name = TaskPath::parse(&format!("{queue}/tasks/{id}")).unwrap();
    let rec = h.store.task_record(&name).await.unwrap();
    rec.attempts.iter().map(|a| a.error.clone()).collect()
}

async fn state(h: &Harness, queue: &str, id: &str) -> TaskState {
    let name = TaskPath::parse(&format!("{queue}/tasks/{id}")).unwrap();
    h.store.task_record(&name).await.unwrap().state
}

const Q: &str = "projects/p/locations/l/queues/q";

#[tokio::test]
async fn metadata_address_is_refused_without_connecting() {
    let h = harness(Arc::new(TargetPolicy::default())).await;
    queue_in(&h, Q).await;
    let started = Instant::now();
    store_directly(&h, Q, "md", "http://169.254.169.254/computeMetadata/v1/").await;
    store_directly(&h, Q, "mapped", "http://[::ffff:169.254.169.254]/").await;
    store_directly(&h, Q, "decimal", "http://2852039166/latest/meta-data/").await;
    store_directly(&h, Q, "v6", "http://[fd00:ec2::254]/").await;
    h.run_for(60 * SECOND).await;
    // Nothing waited on a connect timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let want = "target refused: 169.254.169.254 is in the denied range 169.254.0.0/16 \
                (link-local and cloud metadata)";
    for id in ["md", "decimal"] {
        // Retried per the queue's retry config, then failed.
        assert_eq!(
            errors(&h, Q, id).await,
            vec![Some(want.to_string()); 2],
            "{id}"
        );
        assert_eq!(state(&h, Q, id).await, TaskState::Failed, "{id}");
    }
    assert_eq!(
        errors(&h, Q, "mapped").await[0].as_deref(),
        Some(
            "target refused: ::ffff:169.254.169.254 is in the denied range 169.254.0.0/16 \
             (link-local and cloud metadata)"
        )
    );
    assert_eq!(
        errors(&h, Q, "v6").await[0].as_deref(),
        Some(
            "target refused: fd00:ec2::254 is in the denied range fd00:ec2::254/128 \
             (AWS IPv6 metadata)"
        )
    );
}

#[tokio::test]
async fn loopback_denied_by_config_is_refused_and_other_targets_still_work() {
    let h = harness(policy(&["127.0.0.1/32"], &[])).await;
    let other = Target::start("127.0.0.2", None).await;
    queue_in(&h, Q).await;
    create(&h, Q, "denied", &format!("{}/x", h.recv.url)).await;
    create(&h, Q, "allowed", &format!("{}/x", other.url)).await;
    h.run_for(60 * SECOND).await;
    assert_eq!(h.recv.count(), 0, "a denied target was reached");
    let want = "target refused: 127.0.0.1 is in the denied range 127.0.0.1/32 (outbound.deny)";
    assert_eq!(
        errors(&h, Q, "denied").await,
        vec![Some(want.to_string()); 2]
    );
    assert_eq!(state(&h, Q, "denied").await, TaskState::Failed);
    assert_eq!(other.hits(), 1);
    assert_eq!(errors(&h, Q, "allowed").await, vec![None]);
    assert_eq!(state(&h, Q, "allowed").await, TaskState::Succeeded);
}

/// While a refused task waits for its retry, GetTask shows the reason in its last attempt.
#[tokio::test]
async fn refusal_shows_in_the_last_attempt_while_retrying() {
    let h = harness(policy(&["127.0.0.1/32"], &[])).await;
    h.queue(
        "q",
        Queue {
            retry_config: Some(RetryConfig {
                max_attempts: 5,
                min_backoff: Some(micros_to_duration(3600 * SECOND)),
                max_backoff: Some(micros_to_duration(3600 * SECOND)),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    h.create("q", h.http_task("q", "t", "/", 0)).await;
    h.settle().await;
    let t = h.get("q", "t").await.unwrap();
    assert_eq!(t.dispatch_count, 1);
    assert_eq!(t.response_count, 0);
    let status = t.last_attempt.unwrap().response_status.unwrap();
    assert_eq!(
        status.message,
        "target refused: 127.0.0.1 is in the denied range 127.0.0.1/32 (outbound.deny)"
    );
    assert_eq!(h.recv.count(), 0);
}

#[tokio::test]
async fn host_names_are_checked_on_their_resolved_addresses() {
    // localhost resolves to 127.0.0.1 (and ::1 where configured): both denied.
    let h = harness(policy(&["127.0.0.0/8", "::1"], &[])).await;
    let port = h.recv.url.rsplit(':').next().unwrap().to_string();
    queue_in(&h, Q).await;
    create(&h, Q, "name", &format!("http://localhost:{port}/")).await;
    h.run_for(60 * SECOND).await;
    assert_eq!(h.recv.count(), 0, "a denied target was reached");
    let errs = errors(&h, Q, "name").await;
    assert_eq!(errs.len(), 2);
    let e = errs[0].as_deref().unwrap();
    assert!(
        e.starts_with("target refused (localhost resolves only to refused addresses): ")
            && e.contains("is in the denied range")
            && e.contains("(outbound.deny)"),
        "{e}"
    );
}

#[tokio::test]
async fn redirects_into_denied_ranges_are_refused() {
    let h = harness(policy(&["127.0.0.2/32"], &[])).await;
    let victim = Target::start("127.0.0.2", None).await;
    let to_victim = Target::start("127.0.0.1", Some(format!("{}/secret", victim.url))).await;
    let to_metadata = Target::start(
        "127.0.0.1",
        Some("http://169.254.169.254/computeMetadata/v1/".into()),
    )
    .await;
    let to_allowed = Target::start("127.0.0.1", Some(format!("{}/ok", h.recv.url))).await;
    queue_in(&h, Q).await;
    create(&h, Q, "victim", &format!("{}/", to_victim.url)).await;
    create(&h, Q, "metadata", &format!("{}/", to_metadata.url)).await;
    create(&h, Q, "allowed", &format!("{}/", to_allowed.url)).await;
    let started = Instant::now();
    h.run_for(60 * SECOND).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    assert_eq!(victim.hits(), 0, "the denied receiver was reached");
    assert_eq!(
        to_victim.hits(),
        2,
        "each attempt reached the allowed receiver"
    );
    assert_eq!(
        errors(&h, Q, "victim").await,
        vec![
            Some(
                "target refused (redirect): 127.0.0.2 is in the denied range 127.0.0.2/32 \
                 (outbound.deny)"
                    .to_string()
            );
            2
        ]
    );
    assert_eq!(to_metadata.hits(), 2);
    assert_eq!(
        errors(&h, Q, "metadata").await[0].as_deref(),
        Some(
            "target refused (redirect): 169.254.169.254 is in the denied range 169.254.0.0/16 \
             (link-local and cloud metadata)"
        )
    );
    // A redirect to an allowed target is still followed.
    assert_eq!(to_allowed.hits(), 1);
    assert_eq!(h.recv.count(), 1);
    assert_eq!(h.recv.seen()[0].path, "/ok");
    assert_eq!(state(&h, Q, "allowed").await, TaskState::Succeeded);
}

#[tokio::test]
async fn redirect_to_a_name_resolving_into_a_denied_range_is_refused() {
    // localhost → 127.0.0.1 and maybe ::1; the redirecting receiver is on 127.0.0.2.
    let h = harness(policy(&["127.0.0.1/32", "::1"], &[])).await;
    let to_name = Target::start(
        "127.0.0.2",
        Some(format!(
            "http://localhost:{}/",
            h.recv.url.rsplit(':').next().unwrap()
        )),
    )
    .await;
    queue_in(&h, Q).await;
    create(&h, Q, "t", &format!("{}/", to_name.url)).await;
    h.run_for(60 * SECOND).await;
    assert_eq!(to_name.hits(), 2);
    assert_eq!(h.recv.count(), 0, "the denied receiver was reached");
    let e = errors(&h, Q, "t").await[0].clone().unwrap();
    assert!(
        e.starts_with("target refused (localhost resolves only to refused addresses): "),
        "{e}"
    );
}

#[tokio::test]
async fn allow_lists_apply_per_project() {
    let h = harness(policy(&[], &[("p", &["localhost", "127.0.0.2"])])).await;
    let other_target = Target::start("127.0.0.2", None).await;
    let redirect_out = Target::start("127.0.0.2", Some(format!("{}/", h.recv.url))).await;
    let port = h.recv.url.rsplit(':').next().unwrap().to_string();
    queue_in(&h, Q).await;
    create(
        &h,
        Q,
        "by-name",
        &format!("http://localhost:{port}/by-name"),
    )
    .await;
    create(&h, Q, "by-ip", &format!("{}/by-ip", other_target.url)).await;
    create(&h, Q, "not-listed", &format!("{}/not-listed", h.recv.url)).await;
    create(&h, Q, "redirect-out", &format!("{}/", redirect_out.url)).await;
    // A project without an allow-list.
    let oq = "projects/other/locations/l/queues/q";
    queue_in(&h, oq).await;
    create(&h, oq, "free", &format!("{}/free", h.recv.url)).await;
    h.run_for(60 * SECOND).await;

    let mut paths: Vec<String> = h.recv.seen().iter().map(|s| s.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/by-name", "/free"]);
    assert_eq!(other_target.hits(), 1);
    assert_eq!(state(&h, Q, "by-ip").await, TaskState::Succeeded);
    assert_eq!(
        errors(&h, Q, "not-listed").await,
        vec![
            Some(
                "target refused: 127.0.0.1 is not in the outbound allow-list of project \"p\" \
                 (outbound.allow.p)"
                    .to_string()
            );
            2
        ]
    );
    assert_eq!(redirect_out.hits(), 2);
    assert_eq!(
        errors(&h, Q, "redirect-out").await[0].as_deref(),
        Some(
            "target refused (redirect): 127.0.0.1 is not in the outbound allow-list of project \
             \"p\" (outbound.allow.p)"
        )
    );
}

#[tokio::test]
async fn signed_requests_do_not_follow_redirects_to_another_origin() {
    const SIGNED: &str = "projects/p/locations/l/queues/signed";
    let rules = stratus_dispatch::origin::OriginRules::new(vec![
        stratus_dispatch::origin::OriginRule::new(
            SIGNED,
            Some("X-Queue-Secret"),
            Some("queue-secret-0123456789"),
            &["hmac-key-0123456789abcdef".to_string()],
        )
        .unwrap(),
    ])
    .unwrap();
    let h = Harness::with_config(EngineConfig {
        origin: Arc::new(rules),
        ..EngineConfig::default()
    })
    .await;
    let elsewhere = Target::start("127.0.0.2", None).await;
    let away = Target::start("127.0.0.1", Some(format!("{}/x", elsewhere.url))).await;
    queue_in(&h, SIGNED).await;
    queue_in(&h, Q).await;
    create(&h, SIGNED, "signed-away", &format!("{}/", away.url)).await;
    h.run_for(60 * SECOND).await;
    assert_eq!(elsewhere.hits(), 0, "the secret went to another origin");
    assert_eq!(away.hits(), 2);
    let e = errors(&h, SIGNED, "signed-away").await;
    assert!(
        e[0].as_deref()
            .is_some_and(|m| m.contains("redirect to another origin")),
        "{e:?}"
    );
    // Without receiver_auth the same redirect is followed.
    create(&h, Q, "plain-away", &format!("{}/", away.url)).await;
    h.run_for(60 * SECOND).await;
    assert_eq!(elsewhere.hits(), 1);
}
