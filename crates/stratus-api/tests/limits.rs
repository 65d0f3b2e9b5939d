//! Request limits over real sockets: the request body cap on REST and gRPC, page size caps on
//! the list calls, and the batch size caps. Each answer is the Cloud Tasks error shape with a
//! message naming the limit.

use std::sync::Arc;

use serde_json::{Value, json};
use stratus_api::{Service, ServiceConfig};
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::{CreateQueueRequest, Queue};
use stratus_types::time::SystemClock;

const LOC: &str = "projects/p/locations/l";
const Q: &str = "projects/p/locations/l/queues/q";

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(cfg: ServiceConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let svc = Arc::new(Service::new(Arc::new(store), Arc::new(SystemClock), cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, stratus_api::rest::router(svc))
            .await
            .unwrap()
    });
    Server {
        base: format!("http://{addr}"),
        addr,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Server {
    async fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let st = resp.status().as_u16();
        (st, resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn request_bodies_over_the_cap_are_refused_on_both_transports() {
    let cfg = ServiceConfig {
        max_request_bytes: 64 * 1024,
        ..ServiceConfig::default()
    };
    let s = start(cfg).await;
    let (st, _) = s
        .call(
            "POST",
            &format!("/v2/{LOC}/queues"),
            Some(json!({ "name": Q }).to_string().into_bytes()),
        )
        .await;
    assert_eq!(st, 200);
    let big = json!({"task": {"httpRequest": {"url": "http://127.0.0.1:9/", "body": "A".repeat(100 * 1024)}}});
    let (st, b) = s
        .call(
            "POST",
            &format!("/v2/{Q}/tasks"),
            Some(big.to_string().into_bytes()),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    assert_eq!(b["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("65536"),
        "{b}"
    );

    // gRPC: a message over the cap is refused by the decoder, the service never sees it.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let req = CreateQueueRequest {
        parent: LOC.into(),
        queue: Some(Queue {
            name: format!("{LOC}/queues/{}", "x".repeat(100 * 1024)),
            ..Default::default()
        }),
    };
    assert!(req.encoded_len() > 64 * 1024);
    let got: Result<tonic::Response<Queue>, _> = client
        .unary(
            tonic::Request::new(req),
            http::uri::PathAndQuery::from_static("/google.cloud.tasks.v2.CloudTasks/CreateQueue"),
            tonic_prost::ProstCodec::<CreateQueueRequest, Queue>::default(),
        )
        .await;
    let err = got.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
}

#[tokio::test]
async fn list_pages_and_batches_are_capped() {
    let s = start(ServiceConfig::default()).await;
    let (st, _) = s
        .call(
            "POST",
            &format!("/v2/{LOC}/queues"),
            Some(json!({ "name": Q }).to_string().into_bytes()),
        )
        .await;
    assert_eq!(st, 200);
    // 1,050 tasks through batches of 100 (the batch cap).
    for _ in 0..11 {
        let requests: Vec<Value> = (0..100)
            .map(|_| json!({"task": {"httpRequest": {"url": "http://127.0.0.1:9/"}}}))
            .collect();
        let (st, b) = s
            .call(
                "POST",
                &format!("/v2/{Q}/tasks:batchCreate"),
                Some(json!({ "requests": requests }).to_string().into_bytes()),
            )
            .await;
        assert_eq!(st, 200, "{b}");
    }
    let requests: Vec<Value> = (0..101)
        .map(|_| json!({"task": {"httpRequest": {"url": "http://127.0.0.1:9/"}}}))
        .collect();
    let (st, b) = s
        .call(
            "POST",
            &format!("/v2/{Q}/tasks:batchCreate"),
            Some(json!({ "requests": requests }).to_string().into_bytes()),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("100"),
        "{b}"
    );

    // A page asked for 100,000 tasks holds at most 1,000, with a token for the rest.
    let (st, b) = s
        .call("GET", &format!("/v2/{Q}/tasks?pageSize=100000"), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(b["tasks"].as_array().unwrap().len(), 1000);
    assert!(b["nextPageToken"].as_str().is_some_and(|t| !t.is_empty()));
    let (st, b) = s
        .call("GET", &format!("/v2/{Q}/tasks?pageSize=-1"), None)
        .await;
    assert_eq!(st, 400, "{b}");
    // The same on the failed-task list (empty here, but the size is checked).
    let (st, _) = s
        .call(
            "GET",
            &format!("/stratus/v1/{Q}/failedTasks?pageSize=100000"),
            None,
        )
        .await;
    assert_eq!(st, 200);
}
