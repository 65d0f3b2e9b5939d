//! gRPC on the REST port, over a real socket (h2c prior knowledge), with a plain tonic client:
//!
//! - every recorded real-service error (testdata/conformance/realcloud-errors.json, except
//!   invalid-parent) is reproduced over gRPC: canonical code, message, and the `google.rpc.Help`
//!   details in `grpc-status-details-bin`;
//! - REST and gRPC answer the same for the same state (queues, tasks, lists, errors);
//! - `grpc-timeout`, gzip-compressed requests, unknown methods and malformed messages.

use std::sync::Arc;

use serde_json::Value;
use stratus_api::{Service, ServiceConfig};
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::proto::google::cloud::location::ListLocationsRequest;
use stratus_types::proto::google::rpc;
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::{
    CreateQueueRequest, CreateTaskRequest, DeleteQueueRequest, DeleteTaskRequest, GetQueueRequest,
    GetTaskRequest, HttpRequest, ListQueuesRequest, ListTasksRequest, PauseQueueRequest,
    PurgeQueueRequest, Queue, ResumeQueueRequest, RunTaskRequest, Task,
};
use stratus_types::time::SystemClock;
use tonic::transport::Channel;

const ERRORS: &str = include_str!("../../../testdata/conformance/realcloud-errors.json");
const LOC: &str = "projects/p/locations/l";
const Q: &str = "projects/p/locations/l/queues/q";
const T1: &str = "projects/p/locations/l/queues/q/tasks/t1";

/// A server on 127.0.0.1 (REST and gRPC on one port) and clients of both.
struct Server {
    addr: std::net::SocketAddr,
    channel: Channel,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let svc = Arc::new(Service::new(
            Arc::new(store),
            Arc::new(SystemClock),
            ServiceConfig::default(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, stratus_api::rest::router(svc))
                .await
                .unwrap()
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Server {
            addr,
            channel,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// One unary gRPC call to `path` (`/package.Service/Method`).
    async fn grpc<Req, Resp>(&self, path: &'static str, req: Req) -> Result<Resp, tonic::Status>
    where
        Req: Message + Send + Sync + 'static,
        Resp: Message + Default + Send + Sync + 'static,
    {
        self.grpc_with(path, tonic::Request::new(req)).await
    }

    async fn grpc_with<Req, Resp>(
        &self,
        path: &'static str,
        req: tonic::Request<Req>,
    ) -> Result<Resp, tonic::Status>
    where
        Req: Message + Send + Sync + 'static,
        Resp: Message + Default + Send + Sync + 'static,
    {
        let mut client = tonic::client::Grpc::new(self.channel.clone());
        client.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        client
            .unary(req, http::uri::PathAndQuery::from_static(path), codec)
            .await
            .map(tonic::Response::into_inner)
    }

    /// One REST call; returns the HTTP status and the JSON body.
    async fn rest(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let url = format!("http://{}{path}", self.addr);
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, json)
    }

    async fn create_queue(&self, name: &str) -> Queue {
        self.grpc(
            "/google.cloud.tasks.v2.CloudTasks/CreateQueue",
            CreateQueueRequest {
                parent: LOC.into(),
                queue: Some(Queue {
                    name: name.into(),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap()
    }

    async fn create_task(&self, parent: &str, name: &str) -> Result<Task, tonic::Status> {
        self.grpc(
            "/google.cloud.tasks.v2.CloudTasks/CreateTask",
            CreateTaskRequest {
                parent: parent.into(),
                task: Some(http_task(name)),
                response_view: 0,
            },
        )
        .await
    }

    async fn delete_queue(&self, name: &str) -> Result<(), tonic::Status> {
        self.grpc::<_, stratus_types::proto::wkt::Empty>(
            "/google.cloud.tasks.v2.CloudTasks/DeleteQueue",
            DeleteQueueRequest { name: name.into() },
        )
        .await
        .map(|_| ())
    }

    async fn delete_task(&self, name: &str) -> Result<(), tonic::Status> {
        self.grpc::<_, stratus_types::proto::wkt::Empty>(
            "/google.cloud.tasks.v2.CloudTasks/DeleteTask",
            DeleteTaskRequest { name: name.into() },
        )
        .await
        .map(|_| ())
    }

    async fn get_task(&self, name: &str) -> Result<Task, tonic::Status> {
        self.grpc(
            "/google.cloud.tasks.v2.CloudTasks/GetTask",
            GetTaskRequest {
                name: name.into(),
                response_view: 0,
            },
        )
        .await
    }
}

fn http_task(name: &str) -> Task {
    Task {
        name: name.into(),
        message_type: Some(stratus_types::proto::tasks::task::MessageType::HttpRequest(
            HttpRequest {
                url: "http://127.0.0.1:9/x".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn code_of(c: &str) -> tonic::Code {
    match c {
        "AlreadyExists" => tonic::Code::AlreadyExists,
        "InvalidArgument" => tonic::Code::InvalidArgument,
        "PermissionDenied" => tonic::Code::PermissionDenied,
        "FailedPrecondition" => tonic::Code::FailedPrecondition,
        "NotFound" => tonic::Code::NotFound,
        other => panic!("unmapped code {other}"),
    }
}

/// Drives the scenario that provokes the named error over gRPC and returns the error.
async fn provoke(s: &Server, name: &str) -> tonic::Status {
    macro_rules! queue_call {
        ($method:literal, $req:expr) => {
            s.grpc::<_, Queue>(concat!("/google.cloud.tasks.v2.CloudTasks/", $method), $req)
                .await
                .unwrap_err()
        };
    }
    match name {
        "queue/create/already-exists" => {
            s.create_queue(Q).await;
            queue_call!(
                "CreateQueue",
                CreateQueueRequest {
                    parent: LOC.into(),
                    queue: Some(Queue {
                        name: Q.into(),
                        ..Default::default()
                    }),
                }
            )
        }
        "queue/create/invalid-name" => queue_call!(
            "CreateQueue",
            CreateQueueRequest {
                parent: LOC.into(),
                queue: Some(Queue {
                    name: format!("{LOC}/queues/not a valid name"),
                    ..Default::default()
                }),
            }
        ),
        "queue/create/recently-deleted" => {
            s.create_queue(Q).await;
            s.delete_queue(Q).await.unwrap();
            queue_call!(
                "CreateQueue",
                CreateQueueRequest {
                    parent: LOC.into(),
                    queue: Some(Queue {
                        name: Q.into(),
                        ..Default::default()
                    }),
                }
            )
        }
        "queue/delete/not-found" => s.delete_queue(Q).await.unwrap_err(),
        "queue/get/not-found" => queue_call!("GetQueue", GetQueueRequest { name: Q.into() }),
        "queue/get/recently-deleted" => {
            s.create_queue(Q).await;
            s.delete_queue(Q).await.unwrap();
            queue_call!("GetQueue", GetQueueRequest { name: Q.into() })
        }
        "queue/pause/not-found" => {
            queue_call!("PauseQueue", PauseQueueRequest { name: Q.into() })
        }
        "queue/purge/not-found" => {
            queue_call!("PurgeQueue", PurgeQueueRequest { name: Q.into() })
        }
        "queue/resume/not-found" => {
            queue_call!("ResumeQueue", ResumeQueueRequest { name: Q.into() })
        }
        "task/create/already-exists" => {
            s.create_queue(Q).await;
            s.create_task(Q, T1).await.unwrap();
            s.create_task(Q, T1).await.unwrap_err()
        }
        "task/create/invalid-name" => {
            s.create_queue(Q).await;
            s.create_task(Q, &format!("{Q}/tasks/not a valid id"))
                .await
                .unwrap_err()
        }
        "task/create/queue-mismatch" => {
            s.create_queue(Q).await;
            s.create_task(Q, &format!("{Q}-other/tasks/t1"))
                .await
                .unwrap_err()
        }
        "task/create/queue-not-found" => s.create_task(Q, T1).await.unwrap_err(),
        "task/create/queue-recently-deleted" => {
            s.create_queue(Q).await;
            s.delete_queue(Q).await.unwrap();
            s.create_task(Q, T1).await.unwrap_err()
        }
        "task/create/recently-existed" => {
            s.create_queue(Q).await;
            s.create_task(Q, T1).await.unwrap();
            s.delete_task(T1).await.unwrap();
            s.create_task(Q, T1).await.unwrap_err()
        }
        "task/delete/not-found" => {
            s.create_queue(Q).await;
            s.delete_task(T1).await.unwrap_err()
        }
        "task/get/not-found" => {
            s.create_queue(Q).await;
            s.get_task(T1).await.unwrap_err()
        }
        "task/get/recently-deleted" => {
            s.create_queue(Q).await;
            s.create_task(Q, T1).await.unwrap();
            s.delete_task(T1).await.unwrap();
            s.get_task(T1).await.unwrap_err()
        }
        "task/run/not-found" => {
            s.create_queue(Q).await;
            s.grpc::<_, Task>(
                "/google.cloud.tasks.v2.CloudTasks/RunTask",
                RunTaskRequest {
                    name: T1.into(),
                    response_view: 0,
                },
            )
            .await
            .unwrap_err()
        }
        other => panic!("no scenario for {other}"),
    }
}

/// The Help links in an error's `grpc-status-details-bin`, after checking that its
/// `google.rpc.Status` repeats the code and message.
fn help_links(status: &tonic::Status) -> Vec<(String, String)> {
    let details = rpc::Status::decode(status.details()).expect("grpc-status-details-bin");
    assert_eq!(details.code, status.code() as i32);
    assert_eq!(details.message, status.message());
    let mut links = Vec::new();
    for any in &details.details {
        assert_eq!(any.type_url, "type.googleapis.com/google.rpc.Help");
        let help = rpc::Help::decode(any.value.as_ref()).unwrap();
        links.extend(help.links.into_iter().map(|l| (l.description, l.url)));
    }
    links
}

#[tokio::test]
async fn every_recorded_error_is_reproduced_over_grpc() {
    let cases: Vec<Value> = serde_json::from_str(ERRORS).unwrap();
    let mut checked = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        if name == "queue/create/invalid-parent" {
            continue; // the real service resolves parents through IAM; not applicable here
        }
        let s = Server::start().await;
        let err = provoke(&s, name).await;
        let message = case["template"]
            .as_str()
            .unwrap()
            .replace("{queue_path}", Q);
        assert_eq!(
            err.code(),
            code_of(case["code"].as_str().unwrap()),
            "{name}: {err:?}"
        );
        assert_eq!(err.message(), message, "{name}");
        let links = help_links(&err);
        let want: Vec<(String, String)> = case
            .get("details")
            .map(|d| {
                d[0]["links"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| {
                        (
                            l["description"].as_str().unwrap().to_string(),
                            l["url"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(links, want, "{name}");
        checked += 1;
    }
    assert_eq!(checked, cases.len() - 1);
}

/// Decodes REST JSON into the proto message, so both transports compare as messages.
fn from_rest<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn rest_and_grpc_answer_the_same() {
    let s = Server::start().await;
    let made = s.create_queue(Q).await;
    for i in 0..3 {
        s.create_task(Q, &format!("{Q}/tasks/t{i}")).await.unwrap();
    }

    // GetQueue.
    let g: Queue = s
        .grpc(
            "/google.cloud.tasks.v2.CloudTasks/GetQueue",
            GetQueueRequest { name: Q.into() },
        )
        .await
        .unwrap();
    let (code, r) = s.rest("GET", &format!("/v2/{Q}"), None).await;
    assert_eq!(code, 200);
    assert_eq!(g, made);
    assert_eq!(from_rest::<Queue>(r), g);

    // ListQueues.
    let g: stratus_types::proto::tasks::ListQueuesResponse = s
        .grpc(
            "/google.cloud.tasks.v2.CloudTasks/ListQueues",
            ListQueuesRequest {
                parent: LOC.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, r) = s.rest("GET", &format!("/v2/{LOC}/queues"), None).await;
    assert_eq!(
        from_rest::<stratus_types::proto::tasks::ListQueuesResponse>(r),
        g
    );

    // GetTask, FULL view.
    let g: Task = s
        .grpc(
            "/google.cloud.tasks.v2.CloudTasks/GetTask",
            GetTaskRequest {
                name: format!("{Q}/tasks/t1"),
                response_view: 2,
            },
        )
        .await
        .unwrap();
    let (_, r) = s
        .rest("GET", &format!("/v2/{Q}/tasks/t1?responseView=FULL"), None)
        .await;
    assert_eq!(from_rest::<Task>(r), g);

    // ListTasks, one page of 2 (the page tokens differ by design only if time moved; compare
    // the tasks and the presence of a token).
    let g: stratus_types::proto::tasks::ListTasksResponse = s
        .grpc(
            "/google.cloud.tasks.v2.CloudTasks/ListTasks",
            ListTasksRequest {
                parent: Q.into(),
                page_size: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, r) = s
        .rest("GET", &format!("/v2/{Q}/tasks?pageSize=2"), None)
        .await;
    let r: stratus_types::proto::tasks::ListTasksResponse = from_rest(r);
    assert_eq!(r.tasks, g.tasks);
    assert_eq!(g.tasks.len(), 2);
    assert!(!g.next_page_token.is_empty() && !r.next_page_token.is_empty());

    // ListLocations (mixin).
    let g: stratus_types::proto::google::cloud::location::ListLocationsResponse = s
        .grpc(
            "/google.cloud.location.Locations/ListLocations",
            ListLocationsRequest {
                name: "projects/p".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, r) = s.rest("GET", "/v2/projects/p/locations", None).await;
    assert_eq!(
        from_rest::<stratus_types::proto::google::cloud::location::ListLocationsResponse>(r),
        g
    );

    // The same error: code, message and details.
    let g = s
        .create_task(Q, &format!("{Q}/tasks/bad id"))
        .await
        .unwrap_err();
    let (code, r) = s
        .rest(
            "POST",
            &format!("/v2/{Q}/tasks"),
            Some(&format!(
                r#"{{"task":{{"name":"{Q}/tasks/bad id","httpRequest":{{"url":"http://127.0.0.1:9/x"}}}}}}"#
            )),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(g.code(), tonic::Code::InvalidArgument);
    assert_eq!(r["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(r["error"]["message"], g.message());
    let rest_links: Vec<(String, String)> = r["error"]["details"][0]["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["description"].as_str().unwrap().into(),
                l["url"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(!rest_links.is_empty());
    assert_eq!(help_links(&g), rest_links);
}

#[tokio::test]
async fn grpc_timeout_unknown_methods_and_bad_messages() {
    let s = Server::start().await;

    // A deadline that has passed before the store answers: DEADLINE_EXCEEDED from the server.
    // (tonic's client enforces grpc-timeout itself, so this call is framed by hand over h2c.)
    let msg = CreateQueueRequest {
        parent: LOC.into(),
        queue: Some(Queue {
            name: Q.into(),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2c
        .post(format!(
            "http://{}/google.cloud.tasks.v2.CloudTasks/CreateQueue",
            s.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "1n")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(
        resp.headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap()),
        Some("4"), // DEADLINE_EXCEEDED
        "{:?}",
        resp.headers()
    );

    // A generous deadline changes nothing.
    let mut req = tonic::Request::new(GetQueueRequest {
        name: format!("{LOC}/queues/none"),
    });
    req.set_timeout(std::time::Duration::from_secs(30));
    let err = s
        .grpc_with::<_, Queue>("/google.cloud.tasks.v2.CloudTasks/GetQueue", req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // A gzip-compressed request (a client option) is accepted.
    let mut client = tonic::client::Grpc::new(s.channel.clone())
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    client.ready().await.unwrap();
    let q: Queue = client
        .unary(
            tonic::Request::new(CreateQueueRequest {
                parent: LOC.into(),
                queue: Some(Queue {
                    name: format!("{LOC}/queues/gzipped"),
                    ..Default::default()
                }),
            }),
            http::uri::PathAndQuery::from_static("/google.cloud.tasks.v2.CloudTasks/CreateQueue"),
            tonic_prost::ProstCodec::<CreateQueueRequest, Queue>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.name, format!("{LOC}/queues/gzipped"));

    // A method nobody serves.
    let err = s
        .grpc::<_, Queue>(
            "/google.cloud.tasks.v2.CloudTasks/NoSuchMethod",
            GetQueueRequest { name: Q.into() },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(err.message().contains("NoSuchMethod"), "{err:?}");
    let err = s
        .grpc::<_, Queue>(
            "/google.cloud.tasks.v2beta3.CloudTasks/GetQueue",
            GetQueueRequest { name: Q.into() },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // Bytes that are not a GetQueueRequest (field 1 as a varint): INVALID_ARGUMENT.
    let err = s
        .grpc::<_, Queue>(
            "/google.cloud.tasks.v2.CloudTasks/GetQueue",
            RawBytes(vec![0x08, 0x96, 0x01, 0x0a, 0xff]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
}

/// A request body sent as is (to send a malformed message).
#[derive(Clone, PartialEq, Default, Debug)]
struct RawBytes(Vec<u8>);

impl Message for RawBytes {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        _tag: u32,
        _wire_type: stratus_types::proto::prost::encoding::WireType,
        _buf: &mut impl bytes::Buf,
        _ctx: stratus_types::proto::prost::encoding::DecodeContext,
    ) -> Result<(), stratus_types::proto::prost::DecodeError> {
        Ok(())
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}
