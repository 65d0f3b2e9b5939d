//! The official Rust client `google-cloud-tasks-v2` (REST, anonymous credentials, `http://`
//! endpoint) against a real `stratus serve` process: create a queue, create/get/list/delete
//! tasks, update a queue with a field mask, and read errors by their canonical code.

mod support;

use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::paginator::ItemPaginator as _;
use google_cloud_tasks_v2::model::{HttpRequest, Queue, RateLimits, RetryConfig, Task, task::View};
use support::Server;

const LOC: &str = "projects/rust-client/locations/local";

#[tokio::test(flavor = "multi_thread")]
async fn official_rust_client_drives_queues_and_tasks() {
    let dir = tempfile::tempdir().unwrap();
    // The tasks here target 127.0.0.1:9 (nothing): without --no-dispatch their failed
    // attempts would move them in the (schedule time, id) order while the test pages through it.
    let server = Server::start(dir.path(), &["--no-dispatch"]);
    let client = server.official_client().await;
    let qname = format!("{LOC}/queues/rust");

    let q = client
        .create_queue()
        .set_parent(LOC)
        .set_queue(Queue::new().set_name(&qname))
        .send()
        .await
        .unwrap();
    assert_eq!(q.name, qname);
    assert_eq!(
        q.rate_limits.as_ref().unwrap().max_dispatches_per_second,
        500.0
    );
    assert_eq!(q.rate_limits.as_ref().unwrap().max_burst_size, 100);
    assert_eq!(q.retry_config.as_ref().unwrap().max_attempts, 100);

    // ALREADY_EXISTS comes back as its canonical code (the client reads error.status).
    let err = client
        .create_queue()
        .set_parent(LOC)
        .set_queue(Queue::new().set_name(&qname))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.status().map(|s| s.code),
        Some(Code::AlreadyExists),
        "{err:?}"
    );
    assert_eq!(
        err.status().map(|s| s.message.as_str()),
        Some("Queue already exists")
    );

    // UpdateQueue with a mask: only the named field changes.
    let mask =
        google_cloud_wkt::FieldMask::default().set_paths(["rate_limits.max_dispatches_per_second"]);
    let q = client
        .update_queue()
        .set_queue(
            Queue::new()
                .set_name(&qname)
                .set_rate_limits(RateLimits::new().set_max_dispatches_per_second(7.0))
                .set_retry_config(RetryConfig::new().set_max_attempts(3)),
        )
        .set_update_mask(mask)
        .send()
        .await
        .unwrap();
    assert_eq!(
        q.rate_limits.as_ref().unwrap().max_dispatches_per_second,
        7.0
    );
    assert_eq!(q.rate_limits.as_ref().unwrap().max_burst_size, 2);
    assert_eq!(q.retry_config.as_ref().unwrap().max_attempts, 100);

    // Tasks: create (named and unnamed), get (BASIC/FULL), list, delete.
    let named = format!("{qname}/tasks/first");
    let t = client
        .create_task()
        .set_parent(&qname)
        .set_task(
            Task::new().set_name(&named).set_http_request(
                HttpRequest::new()
                    .set_url("http://127.0.0.1:9/hook")
                    .set_body(bytes::Bytes::from_static(b"hello")),
            ),
        )
        .set_response_view(View::Full)
        .send()
        .await
        .unwrap();
    assert_eq!(t.name, named);
    assert_eq!(t.http_request().unwrap().body.as_ref(), b"hello");
    assert_eq!(
        t.http_request()
            .unwrap()
            .headers
            .get("User-Agent")
            .map(String::as_str),
        Some("Google-Cloud-Tasks")
    );
    let unnamed = client
        .create_task()
        .set_parent(&qname)
        .set_task(
            Task::new().set_http_request(HttpRequest::new().set_url("http://127.0.0.1:9/hook")),
        )
        .send()
        .await
        .unwrap();
    assert!(unnamed.name.starts_with(&format!("{qname}/tasks/")));

    let basic = client.get_task().set_name(&named).send().await.unwrap();
    assert_eq!(basic.view, View::Basic);
    assert!(basic.http_request().unwrap().body.is_empty());

    let mut names = Vec::new();
    let mut items = client
        .list_tasks()
        .set_parent(&qname)
        .set_page_size(1)
        .by_item();
    while let Some(t) = items.next().await.transpose().unwrap() {
        names.push(t.name);
    }
    names.sort();
    let mut want = vec![named.clone(), unnamed.name.clone()];
    want.sort();
    assert_eq!(names, want);

    client.delete_task().set_name(&named).send().await.unwrap();
    let err = client.get_task().set_name(&named).send().await.unwrap_err();
    assert_eq!(
        err.status().map(|s| s.code),
        Some(Code::NotFound),
        "{err:?}"
    );

    // Queue list sees the queue; GetQueue on a missing one is NOT_FOUND.
    let mut queues = client.list_queues().set_parent(LOC).by_item();
    let first = queues.next().await.transpose().unwrap().unwrap();
    assert_eq!(first.name, qname);
    let err = client
        .get_queue()
        .set_name(format!("{LOC}/queues/missing"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.code), Some(Code::NotFound));
}
