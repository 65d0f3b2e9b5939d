//! API tokens and tenancy over real sockets, on both transports: every RPC is called with
//! no token, an unknown token, a token of another project, and each role, and must be refused
//! or let through exactly as the table below (written independently of the code's own role
//! mapping) says. Refused calls must leave the other tenant's resources untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use stratus_api::auth::{self, Auth, Role, Scope, TokenSpec};
use stratus_api::{Service, ServiceConfig};
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::proto::google::cloud::location::{GetLocationRequest, ListLocationsRequest};
use stratus_types::proto::google::iam::v1::{
    GetIamPolicyRequest, SetIamPolicyRequest, TestIamPermissionsRequest,
};
use stratus_types::proto::google::longrunning::GetOperationRequest;
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::{
    BatchCreateTasksRequest, BatchDeleteTasksRequest, CmekConfig, CreateQueueRequest,
    CreateTaskRequest, DeleteQueueRequest, DeleteTaskRequest, GetCmekConfigRequest,
    GetQueueRequest, GetTaskRequest, HttpRequest, ListQueuesRequest, ListTasksRequest,
    PauseQueueRequest, PurgeQueueRequest, Queue, ResumeQueueRequest, RunTaskRequest, Task,
    UpdateCmekConfigRequest, UpdateQueueRequest,
};
use stratus_types::time::SystemClock;
use tonic::transport::Channel;

const ROOT: &str = "root-token";
const A_ADMIN: &str = "a-admin-token";
const A_ENQ: &str = "a-enqueuer-token";
const A_VIEW: &str = "a-viewer-token";

struct Server {
    addr: std::net::SocketAddr,
    channel: Channel,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

type Grpc = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

/// One RPC: how to call it over REST and gRPC on project `p`, and the least role it needs.
struct Rpc {
    name: &'static str,
    least: Role,
    rest: (&'static str, String, Option<String>),
    grpc: Box<dyn Fn(Channel, Option<&'static str>) -> Grpc + Send + Sync>,
}

fn token(name: &str, project: &str, role: Role, secret: &str, rate: f64) -> TokenSpec {
    TokenSpec {
        name: name.into(),
        scope: Scope::parse(project).unwrap(),
        role,
        sha256: auth::digest(secret),
        rate_limit: rate,
    }
}

impl Server {
    async fn start(tokens: Vec<TokenSpec>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let clock = Arc::new(SystemClock);
        let auth = Arc::new(Auth::with_tokens(tokens, clock.clone()).unwrap());
        let svc = Arc::new(
            Service::new(Arc::new(store), clock, ServiceConfig::default()).with_auth(auth),
        );
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

    async fn rest(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method.parse().unwrap(),
                format!("http://{}{path}", self.addr),
            )
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }
}

async fn grpc_call<Req, Resp>(
    channel: Channel,
    token: Option<&'static str>,
    path: &'static str,
    req: Req,
) -> Result<Resp, tonic::Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut req = tonic::Request::new(req);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    client
        .unary(req, http::uri::PathAndQuery::from_static(path), codec)
        .await
        .map(tonic::Response::into_inner)
}

macro_rules! grpc {
    ($method:literal, $resp:ty, $req:expr) => {{
        let req = $req;
        Box::new(move |ch: Channel, tok: Option<&'static str>| -> Grpc {
            let req = req.clone();
            Box::pin(async move {
                grpc_call::<_, $resp>(ch, tok, concat!("/", $method), req)
                    .await
                    .map(|_| ())
            })
        })
    }};
}

fn http_task(url: &str) -> Task {
    Task {
        message_type: Some(stratus_types::proto::tasks::task::MessageType::HttpRequest(
            HttpRequest {
                url: url.into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Every RPC against project `p`'s queue `q`, task `t` and operation `op`.
fn rpcs(p: &str, op: &str) -> Vec<Rpc> {
    let loc = format!("projects/{p}/locations/l");
    let q = format!("{loc}/queues/q");
    let t = format!("{q}/tasks/t");
    let fresh_q = format!("{loc}/queues/fresh");
    let cmek = format!("{loc}/cmekConfig");
    let opn = format!("{loc}/operations/{op}");
    use Role::*;
    vec![
        Rpc {
            name: "ListQueues",
            least: Viewer,
            rest: ("GET", format!("/v2/{loc}/queues"), None),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/ListQueues",
                stratus_types::proto::tasks::ListQueuesResponse,
                ListQueuesRequest {
                    parent: loc.clone(),
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "GetQueue",
            least: Viewer,
            rest: ("GET", format!("/v2/{q}"), None),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/GetQueue",
                Queue,
                GetQueueRequest { name: q.clone() }
            ),
        },
        Rpc {
            name: "CreateQueue",
            least: Admin,
            rest: (
                "POST",
                format!("/v2/{loc}/queues"),
                Some(format!(r#"{{"name":"{fresh_q}-rest"}}"#)),
            ),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/CreateQueue",
                Queue,
                CreateQueueRequest {
                    parent: loc.clone(),
                    queue: Some(Queue {
                        name: format!("{fresh_q}-grpc"),
                        ..Default::default()
                    }),
                }
            ),
        },
        Rpc {
            name: "UpdateQueue",
            least: Admin,
            rest: (
                "PATCH",
                format!("/v2/{q}?updateMask=rateLimits.maxConcurrentDispatches"),
                Some(r#"{"rateLimits":{"maxConcurrentDispatches":7}}"#.into()),
            ),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/UpdateQueue",
                Queue,
                UpdateQueueRequest {
                    queue: Some(Queue {
                        name: q.clone(),
                        rate_limits: Some(stratus_types::proto::tasks::RateLimits {
                            max_concurrent_dispatches: 7,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    update_mask: Some(stratus_types::proto::wkt::FieldMask {
                        paths: vec!["rate_limits.max_concurrent_dispatches".into()],
                    }),
                }
            ),
        },
        Rpc {
            name: "PauseQueue",
            least: Admin,
            rest: ("POST", format!("/v2/{q}:pause"), Some("{}".into())),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/PauseQueue",
                Queue,
                PauseQueueRequest { name: q.clone() }
            ),
        },
        Rpc {
            name: "ResumeQueue",
            least: Admin,
            rest: ("POST", format!("/v2/{q}:resume"), Some("{}".into())),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/ResumeQueue",
                Queue,
                ResumeQueueRequest { name: q.clone() }
            ),
        },
        Rpc {
            name: "GetIamPolicy",
            least: Viewer,
            rest: ("POST", format!("/v2/{q}:getIamPolicy"), Some("{}".into())),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/GetIamPolicy",
                stratus_types::proto::google::iam::v1::Policy,
                GetIamPolicyRequest {
                    resource: q.clone(),
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "SetIamPolicy",
            least: Admin,
            rest: (
                "POST",
                format!("/v2/{q}:setIamPolicy"),
                Some(r#"{"policy":{}}"#.into()),
            ),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/SetIamPolicy",
                stratus_types::proto::google::iam::v1::Policy,
                SetIamPolicyRequest {
                    resource: q.clone(),
                    policy: Some(Default::default()),
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "TestIamPermissions",
            least: Viewer,
            rest: (
                "POST",
                format!("/v2/{q}:testIamPermissions"),
                Some(r#"{"permissions":["cloudtasks.tasks.create"]}"#.into()),
            ),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/TestIamPermissions",
                stratus_types::proto::google::iam::v1::TestIamPermissionsResponse,
                TestIamPermissionsRequest {
                    resource: q.clone(),
                    permissions: vec!["cloudtasks.tasks.create".into()],
                }
            ),
        },
        Rpc {
            name: "ListTasks",
            least: Viewer,
            rest: ("GET", format!("/v2/{q}/tasks"), None),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/ListTasks",
                stratus_types::proto::tasks::ListTasksResponse,
                ListTasksRequest {
                    parent: q.clone(),
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "GetTask",
            least: Viewer,
            rest: ("GET", format!("/v2/{t}"), None),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/GetTask",
                Task,
                GetTaskRequest {
                    name: t.clone(),
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "CreateTask",
            least: Enqueuer,
            rest: (
                "POST",
                format!("/v2/{q}/tasks"),
                Some(r#"{"task":{"httpRequest":{"url":"http://127.0.0.1:9/x"}}}"#.into()),
            ),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/CreateTask",
                Task,
                CreateTaskRequest {
                    parent: q.clone(),
                    task: Some(http_task("http://127.0.0.1:9/x")),
                    response_view: 0,
                }
            ),
        },
        Rpc {
            name: "RunTask",
            least: Enqueuer,
            rest: ("POST", format!("/v2/{t}:run"), Some("{}".into())),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/RunTask",
                Task,
                RunTaskRequest {
                    name: t.clone(),
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "BatchCreateTasks",
            least: Enqueuer,
            rest: (
                "POST",
                format!("/v2/{q}/tasks:batchCreate"),
                Some(
                    r#"{"requests":[{"task":{"httpRequest":{"url":"http://127.0.0.1:9/x"}}}]}"#
                        .into(),
                ),
            ),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/BatchCreateTasks",
                stratus_types::proto::google::longrunning::Operation,
                BatchCreateTasksRequest {
                    parent: q.clone(),
                    requests: vec![CreateTaskRequest {
                        task: Some(http_task("http://127.0.0.1:9/x")),
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "GetOperation",
            least: Viewer,
            rest: ("GET", format!("/v2/{opn}"), None),
            grpc: grpc!(
                "google.longrunning.Operations/GetOperation",
                stratus_types::proto::google::longrunning::Operation,
                GetOperationRequest { name: opn.clone() }
            ),
        },
        Rpc {
            name: "GetCmekConfig",
            least: Viewer,
            rest: ("GET", format!("/v2/{cmek}"), None),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/GetCmekConfig",
                CmekConfig,
                GetCmekConfigRequest { name: cmek.clone() }
            ),
        },
        Rpc {
            name: "UpdateCmekConfig",
            least: Admin,
            rest: ("PATCH", format!("/v2/{cmek}"), Some("{}".into())),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/UpdateCmekConfig",
                CmekConfig,
                UpdateCmekConfigRequest {
                    cmek_config: Some(CmekConfig {
                        name: cmek.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "ListLocations",
            least: Viewer,
            rest: ("GET", format!("/v2/projects/{p}/locations"), None),
            grpc: grpc!(
                "google.cloud.location.Locations/ListLocations",
                stratus_types::proto::google::cloud::location::ListLocationsResponse,
                ListLocationsRequest {
                    name: format!("projects/{p}"),
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "GetLocation",
            least: Viewer,
            rest: ("GET", format!("/v2/{loc}"), None),
            grpc: grpc!(
                "google.cloud.location.Locations/GetLocation",
                stratus_types::proto::google::cloud::location::Location,
                GetLocationRequest { name: loc.clone() }
            ),
        },
        // Destructive ones last, so the calls above still find the resources.
        Rpc {
            name: "BatchDeleteTasks",
            least: Enqueuer,
            rest: (
                "POST",
                format!("/v2/{q}/tasks:batchDelete"),
                Some(format!(r#"{{"names":["{t}"]}}"#)),
            ),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/BatchDeleteTasks",
                stratus_types::proto::google::longrunning::Operation,
                BatchDeleteTasksRequest {
                    parent: q.clone(),
                    names: vec![t.clone()],
                    ..Default::default()
                }
            ),
        },
        Rpc {
            name: "DeleteTask",
            least: Enqueuer,
            rest: ("DELETE", format!("/v2/{t}"), None),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/DeleteTask",
                stratus_types::proto::wkt::Empty,
                DeleteTaskRequest { name: t.clone() }
            ),
        },
        Rpc {
            name: "PurgeQueue",
            least: Admin,
            rest: ("POST", format!("/v2/{q}:purge"), Some("{}".into())),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/PurgeQueue",
                Queue,
                PurgeQueueRequest { name: q.clone() }
            ),
        },
        Rpc {
            name: "DeleteQueue",
            least: Admin,
            rest: ("DELETE", format!("/v2/{q}"), None),
            grpc: grpc!(
                "google.cloud.tasks.v2.CloudTasks/DeleteQueue",
                stratus_types::proto::wkt::Empty,
                DeleteQueueRequest { name: q.clone() }
            ),
        },
    ]
}

/// Stratus' own calls (REST only): (name, least role, method, path).
fn stratus_calls(p: &str) -> Vec<(&'static str, Role, &'static str, String)> {
    let q = format!("projects/{p}/locations/l/queues/q");
    vec![
        (
            "ListQueueStats",
            Role::Viewer,
            "GET",
            format!("/stratus/v1/projects/{p}/locations/l/queueStats"),
        ),
        (
            "ListFailedTasks",
            Role::Viewer,
            "GET",
            format!("/stratus/v1/{q}/failedTasks"),
        ),
        (
            "TaskStatus",
            Role::Viewer,
            "GET",
            format!("/stratus/v1/{q}/tasks/t"),
        ),
        (
            "RetryTask",
            Role::Enqueuer,
            "POST",
            format!("/stratus/v1/{q}/tasks/t:retry"),
        ),
    ]
}

fn grpc_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        _ => "OTHER",
    }
}

fn rest_name(status: u16, body: &Value) -> String {
    match status {
        200 => "OK".into(),
        _ => body["error"]["status"].as_str().unwrap_or("?").to_string(),
    }
}

/// Creates project `p`'s queue `q` and task `t` (with the every-project token) and returns an
/// operation ID of a batch call there.
async fn seed(s: &Server, p: &str) -> String {
    let loc = format!("projects/{p}/locations/l");
    let (st, _) = s
        .rest(
            Some(ROOT),
            "POST",
            &format!("/v2/{loc}/queues"),
            Some(&format!(r#"{{"name":"{loc}/queues/q"}}"#)),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .rest(
            Some(ROOT),
            "POST",
            &format!("/v2/{loc}/queues/q/tasks"),
            Some(&format!(
                r#"{{"task":{{"name":"{loc}/queues/q/tasks/t","httpRequest":{{"url":"http://127.0.0.1:9/x"}}}}}}"#
            )),
        )
        .await;
    assert_eq!(st, 200);
    let (st, op) = s
        .rest(
            Some(ROOT),
            "POST",
            &format!("/v2/{loc}/queues/q/tasks:batchCreate"),
            Some(r#"{"requests":[{"task":{"httpRequest":{"url":"http://127.0.0.1:9/x"}}}]}"#),
        )
        .await;
    assert_eq!(st, 200, "{op}");
    op["name"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// Project B's queue and task are still there, unpaused and unchanged.
async fn b_untouched(s: &Server) {
    let (st, q) = s
        .rest(
            Some(ROOT),
            "GET",
            "/v2/projects/b/locations/l/queues/q",
            None,
        )
        .await;
    assert_eq!(st, 200, "{q}");
    assert_eq!(q["state"], "RUNNING");
    assert_ne!(q["rateLimits"]["maxConcurrentDispatches"], 7);
    let (st, t) = s
        .rest(
            Some(ROOT),
            "GET",
            "/v2/projects/b/locations/l/queues/q/tasks/t",
            None,
        )
        .await;
    assert_eq!(st, 200, "{t}");
}

fn tokens() -> Vec<TokenSpec> {
    vec![
        token("root", "*", Role::Admin, ROOT, 0.0),
        token("a-admin", "a", Role::Admin, A_ADMIN, 0.0),
        token("a-enqueuer", "a", Role::Enqueuer, A_ENQ, 0.0),
        token("a-viewer", "a", Role::Viewer, A_VIEW, 0.0),
    ]
}

#[tokio::test]
async fn other_tenants_and_missing_tokens_are_refused_on_every_rpc() {
    let s = Server::start(tokens()).await;
    let op_b = seed(&s, "b").await;
    let mut checked = 0;
    for rpc in rpcs("b", &op_b) {
        let (method, path, body) = &rpc.rest;
        for (token, want) in [
            (None, "UNAUTHENTICATED"),
            (Some("not-a-token"), "UNAUTHENTICATED"),
            (Some(A_ADMIN), "PERMISSION_DENIED"),
            (Some(A_VIEW), "PERMISSION_DENIED"),
        ] {
            let (st, b) = s.rest(token, method, path, body.as_deref()).await;
            assert_eq!(
                rest_name(st, &b),
                want,
                "REST {} with {token:?}: {st} {b}",
                rpc.name
            );
            let expected_http = if want == "UNAUTHENTICATED" { 401 } else { 403 };
            assert_eq!(st, expected_http, "REST {}", rpc.name);
            if want == "PERMISSION_DENIED" {
                let msg = b["error"]["message"].as_str().unwrap();
                assert!(msg.contains("lacks IAM permission"), "{msg}");
            }
            let got = (rpc.grpc)(s.channel.clone(), token).await;
            let code = got.map_err(|e| e.code()).err();
            assert_eq!(
                code.map(grpc_name),
                Some(want),
                "gRPC {} with {token:?}",
                rpc.name
            );
            checked += 2;
        }
    }
    for (name, _, method, path) in stratus_calls("b") {
        for (token, want) in [(None, 401), (Some(A_ADMIN), 403)] {
            let (st, b) = s.rest(token, method, &path, Some("{}")).await;
            assert_eq!(st, want, "{name} with {token:?}: {b}");
            checked += 1;
        }
    }
    // A resource of project B that does not exist is refused the same way: the answer does
    // not tell whether it exists.
    let (st, b) = s
        .rest(
            Some(A_ADMIN),
            "GET",
            "/v2/projects/b/locations/l/queues/nope",
            None,
        )
        .await;
    assert_eq!((st, rest_name(st, &b)), (403, "PERMISSION_DENIED".into()));
    // A project whose name starts like A's is another project.
    let (st, _) = s
        .rest(
            Some(A_ADMIN),
            "GET",
            "/v2/projects/ab/locations/l/queues",
            None,
        )
        .await;
    assert_eq!(st, 403);
    b_untouched(&s).await;
    assert!(checked > 180, "{checked} checks");
}

/// Calls every RPC on project A with `secret` and checks each is refused exactly when its
/// least role is above `role`.
async fn role_matrix(s: &Server, role: Role, secret: &'static str) {
    let op_a = seed(s, "a").await;
    for rpc in rpcs("a", &op_a) {
        let (method, path, body) = &rpc.rest;
        let allowed = role >= rpc.least;
        let (st, b) = s.rest(Some(secret), method, path, body.as_deref()).await;
        let refused = matches!(st, 401 | 403);
        assert_eq!(refused, !allowed, "REST {} as {role}: {st} {b}", rpc.name);
        if !allowed {
            assert_eq!(rest_name(st, &b), "PERMISSION_DENIED");
        }
        let got = (rpc.grpc)(s.channel.clone(), Some(secret)).await;
        let refused = matches!(
            got.as_ref().map_err(|e| e.code()),
            Err(tonic::Code::PermissionDenied | tonic::Code::Unauthenticated)
        );
        assert_eq!(refused, !allowed, "gRPC {} as {role}: {got:?}", rpc.name);
    }
    for (name, least, method, path) in stratus_calls("a") {
        let (st, b) = s.rest(Some(secret), method, &path, Some("{}")).await;
        assert_eq!(
            matches!(st, 401 | 403),
            role < least,
            "{name} as {role}: {st} {b}"
        );
    }
}

#[tokio::test]
async fn viewer_reads_only() {
    let s = Server::start(tokens()).await;
    role_matrix(&s, Role::Viewer, A_VIEW).await;
    // Spelled out: a viewer cannot create a task.
    let (st, b) = s
        .rest(
            Some(A_VIEW),
            "POST",
            "/v2/projects/a/locations/l/queues/q/tasks",
            Some(r#"{"task":{"httpRequest":{"url":"http://127.0.0.1:9/"}}}"#),
        )
        .await;
    assert_eq!(st, 403, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cloudtasks.tasks.create")
    );
}

#[tokio::test]
async fn enqueuer_manages_tasks_but_not_queues() {
    let s = Server::start(tokens()).await;
    role_matrix(&s, Role::Enqueuer, A_ENQ).await;
    let (st, b) = s
        .rest(
            Some(A_ENQ),
            "DELETE",
            "/v2/projects/a/locations/l/queues/q",
            None,
        )
        .await;
    assert_eq!(st, 403, "{b}");
    let (st, _) = s
        .rest(
            Some(ROOT),
            "GET",
            "/v2/projects/a/locations/l/queues/q",
            None,
        )
        .await;
    assert_eq!(st, 200, "the queue survived");
}

#[tokio::test]
async fn admin_may_do_everything_in_its_project() {
    let s = Server::start(tokens()).await;
    role_matrix(&s, Role::Admin, A_ADMIN).await;
}

#[tokio::test]
async fn test_iam_permissions_answers_what_the_token_holds() {
    let s = Server::start(tokens()).await;
    seed(&s, "a").await;
    let body = r#"{"permissions":["cloudtasks.tasks.create","cloudtasks.queues.delete","cloudtasks.tasks.get","made.up"]}"#;
    let path = "/v2/projects/a/locations/l/queues/q:testIamPermissions";
    let held = |v: Value| -> Vec<String> {
        v["permissions"]
            .as_array()
            .map(|a| a.iter().map(|p| p.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let (_, v) = s.rest(Some(A_VIEW), "POST", path, Some(body)).await;
    assert_eq!(held(v), ["cloudtasks.tasks.get"]);
    let (_, v) = s.rest(Some(A_ENQ), "POST", path, Some(body)).await;
    assert_eq!(held(v), ["cloudtasks.tasks.create", "cloudtasks.tasks.get"]);
    let (_, v) = s.rest(Some(A_ADMIN), "POST", path, Some(body)).await;
    assert_eq!(
        held(v),
        [
            "cloudtasks.tasks.create",
            "cloudtasks.queues.delete",
            "cloudtasks.tasks.get"
        ]
    );
}

#[tokio::test]
async fn a_token_past_its_budget_gets_resource_exhausted() {
    let mut t = tokens();
    t.push(token("slow", "a", Role::Viewer, "slow-token", 1.0));
    let s = Server::start(t).await;
    let path = "/v2/projects/a/locations/l/queues";
    let mut codes = Vec::new();
    for _ in 0..4 {
        let (st, b) = s.rest(Some("slow-token"), "GET", path, None).await;
        codes.push((st, rest_name(st, &b)));
    }
    // A burst of 2 (twice the rate), then refused until the bucket refills.
    assert_eq!(codes[0].0, 200);
    assert_eq!(codes[1].0, 200);
    assert_eq!(codes[3], (429, "RESOURCE_EXHAUSTED".into()), "{codes:?}");
    let got = grpc_call::<_, stratus_types::proto::tasks::ListQueuesResponse>(
        s.channel.clone(),
        Some("slow-token"),
        "/google.cloud.tasks.v2.CloudTasks/ListQueues",
        ListQueuesRequest {
            parent: "projects/a/locations/l".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(got.unwrap_err().code(), tonic::Code::ResourceExhausted);
    // Other tokens have their own budgets.
    let (st, _) = s.rest(Some(A_VIEW), "GET", path, None).await;
    assert_eq!(st, 200);
}
