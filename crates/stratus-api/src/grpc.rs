//! gRPC transport: `google.cloud.tasks.v2.CloudTasks` with the `google.cloud.location.Locations`
//! and `google.longrunning.Operations` mixins, on the same port as REST.
//!
//! The REST router hands every request whose `content-type` is `application/grpc` (or
//! `application/grpc+proto`) to [`serve`]; HTTP/2 without TLS ("h2c", prior knowledge) is
//! what the official clients speak on an insecure channel. Each method is unary: the request is
//! decoded with prost, passed to the same [`Service`] method REST calls, and the answer encoded
//! back. Errors carry the canonical code, the message, and `grpc-status-details-bin` (a binary
//! `google.rpc.Status` with the `google.rpc.Help` details the real service sends), all made by
//! [`stratus_types::Status::to_proto`] like the REST error body. A `grpc-timeout` header bounds
//! the call: a call already past its deadline when decoded is not started, and one still running
//! when it passes is answered DEADLINE_EXCEEDED (a write may still complete, as with any gRPC
//! deadline).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use stratus_types::proto::google::cloud::location::{GetLocationRequest, ListLocationsRequest};
use stratus_types::proto::google::iam::v1::{
    GetIamPolicyRequest, SetIamPolicyRequest, TestIamPermissionsRequest,
};
use stratus_types::proto::google::longrunning::GetOperationRequest;
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::{
    BatchCreateTasksRequest, BatchDeleteTasksRequest, CreateQueueRequest, CreateTaskRequest,
    DeleteQueueRequest, DeleteTaskRequest, GetCmekConfigRequest, GetQueueRequest, GetTaskRequest,
    ListQueuesRequest, ListTasksRequest, PauseQueueRequest, PurgeQueueRequest, ResumeQueueRequest,
    RunTaskRequest, UpdateCmekConfigRequest, UpdateQueueRequest,
};
use stratus_types::proto::wkt::Empty;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::Grpc;

use crate::Service;
use crate::auth::{Caller, Guarded, retain_held};

/// The gRPC service names served, for reflection-free discovery in logs and docs.
pub const SERVICES: [&str; 3] = [
    "google.cloud.tasks.v2.CloudTasks",
    "google.cloud.location.Locations",
    "google.longrunning.Operations",
];

/// True when `headers` announce a gRPC call (`application/grpc`, `application/grpc+proto`,
/// `application/grpc;…`). gRPC-Web (`application/grpc-web…`) is not served.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ct = ct.trim();
    match ct.strip_prefix("application/grpc") {
        Some(rest) => rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'),
        None => false,
    }
}

/// Parses a `grpc-timeout` header value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`). Anything else is ignored, as gRPC servers do.
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status of a service error: code, message and `grpc-status-details-bin`.
pub fn to_tonic(status: &stratus_types::Status) -> tonic::Status {
    let details = status.to_proto().encode_to_vec();
    tonic::Status::with_details(
        tonic::Code::from_i32(status.code.grpc()),
        status.message.clone(),
        details.into(),
    )
}

/// Answers one gRPC call (the router has checked [`is_grpc`]) and counts it in the metrics
/// by the code of its answer: `grpc-status` in the response headers (a trailers-only answer,
/// how every error is sent), else OK.
pub async fn serve(svc: Arc<Service>, req: Request) -> Response {
    let rpc = crate::metrics::grpc_rpc(req.uri().path());
    let resp = call(svc, req).await;
    let code = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(stratus_types::Code::Ok, stratus_types::Code::from_i32);
    crate::metrics::count_request("grpc", rpc, code);
    resp
}

async fn call(svc: Arc<Service>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let deadline = req
        .headers()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_timeout)
        .map(|d| tokio::time::Instant::now() + d);
    let limit = svc.config().max_request_bytes;
    // Authenticated before the message is read, like REST.
    let caller = match svc.auth().authenticate(req.headers()) {
        Ok(c) => c,
        Err(status) => return to_tonic(&status).into_http::<Body>(),
    };
    let call = Call {
        svc,
        caller,
        deadline,
        limit,
        req,
    };
    const T: &str = "google.cloud.tasks.v2.CloudTasks";
    const L: &str = "google.cloud.location.Locations";
    const O: &str = "google.longrunning.Operations";
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return unimplemented(&path);
    };
    match (service, method) {
        (T, "ListQueues") => {
            call.unary(|s, r: ListQueuesRequest| async move { s.list_queues(r).await })
                .await
        }
        (T, "GetQueue") => {
            call.unary(|s, r: GetQueueRequest| async move { s.get_queue(r).await })
                .await
        }
        (T, "CreateQueue") => {
            call.unary(|s, r: CreateQueueRequest| async move { s.create_queue(r).await })
                .await
        }
        (T, "UpdateQueue") => {
            call.unary(|s, r: UpdateQueueRequest| async move { s.update_queue(r).await })
                .await
        }
        (T, "DeleteQueue") => {
            call.unary(|s, r: DeleteQueueRequest| async move {
                s.delete_queue(r).await.map(|()| Empty {})
            })
            .await
        }
        (T, "PurgeQueue") => {
            call.unary(|s, r: PurgeQueueRequest| async move { s.purge_queue(r).await })
                .await
        }
        (T, "PauseQueue") => {
            call.unary(|s, r: PauseQueueRequest| async move { s.pause_queue(r).await })
                .await
        }
        (T, "ResumeQueue") => {
            call.unary(|s, r: ResumeQueueRequest| async move { s.resume_queue(r).await })
                .await
        }
        (T, "GetIamPolicy") => {
            call.unary(|s, r: GetIamPolicyRequest| async move { s.get_iam_policy(r).await })
                .await
        }
        (T, "SetIamPolicy") => {
            call.unary(|s, r: SetIamPolicyRequest| async move { s.set_iam_policy(r).await })
                .await
        }
        (T, "TestIamPermissions") => {
            let caller = call.caller.clone();
            call.unary(move |s, r: TestIamPermissionsRequest| {
                let caller = caller.clone();
                async move {
                    let resource = r.resource.clone();
                    let mut out = s.test_iam_permissions(r).await?;
                    retain_held(&caller, &resource, &mut out.permissions);
                    Ok(out)
                }
            })
            .await
        }
        (T, "ListTasks") => {
            call.unary(|s, r: ListTasksRequest| async move { s.list_tasks(r).await })
                .await
        }
        (T, "GetTask") => {
            call.unary(|s, r: GetTaskRequest| async move { s.get_task(r).await })
                .await
        }
        (T, "CreateTask") => {
            call.unary(|s, r: CreateTaskRequest| async move { s.create_task(r).await })
                .await
        }
        (T, "DeleteTask") => {
            call.unary(|s, r: DeleteTaskRequest| async move {
                s.delete_task(r).await.map(|()| Empty {})
            })
            .await
        }
        (T, "RunTask") => {
            call.unary(|s, r: RunTaskRequest| async move { s.run_task(r).await })
                .await
        }
        (T, "BatchCreateTasks") => {
            call.unary(|s, r: BatchCreateTasksRequest| async move { s.batch_create_tasks(r).await })
                .await
        }
        (T, "BatchDeleteTasks") => {
            call.unary(|s, r: BatchDeleteTasksRequest| async move { s.batch_delete_tasks(r).await })
                .await
        }
        (T, "GetCmekConfig") => {
            call.unary(|s, r: GetCmekConfigRequest| async move { s.get_cmek_config(r).await })
                .await
        }
        (T, "UpdateCmekConfig") => {
            call.unary(|s, r: UpdateCmekConfigRequest| async move { s.update_cmek_config(r).await })
                .await
        }
        (L, "ListLocations") => {
            call.unary(|s, r: ListLocationsRequest| async move { s.list_locations(r).await })
                .await
        }
        (L, "GetLocation") => {
            call.unary(|s, r: GetLocationRequest| async move { s.get_location(r).await })
                .await
        }
        (O, "GetOperation") => {
            call.unary(|s, r: GetOperationRequest| async move { s.get_operation(r).await })
                .await
        }
        _ => unimplemented(&path),
    }
}

/// UNIMPLEMENTED for a path no method is bound to (as gRPC servers answer).
fn unimplemented(path: &str) -> Response {
    let status = tonic::Status::unimplemented(format!(
        "Method {path} is not served by Stratus; it serves {}.",
        SERVICES.join(", ")
    ));
    status.into_http::<Body>()
}

/// One incoming call with what its method needs.
struct Call {
    svc: Arc<Service>,
    /// Who is calling; checked against the decoded request's resource.
    caller: Caller,
    /// When the caller stops waiting (from `grpc-timeout`, taken at arrival).
    deadline: Option<tokio::time::Instant>,
    limit: usize,
    req: Request,
}

impl Call {
    /// Decodes a `Req`, runs `f` over the service (bounded by `grpc-timeout`), encodes the
    /// answer or the error.
    async fn unary<Req, Resp, F, Fut>(self, f: F) -> Response
    where
        Req: Message + Default + Guarded + Send + 'static,
        Resp: Message + Send + 'static,
        F: Fn(Arc<Service>, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, stratus_types::Status>> + Send + 'static,
    {
        let Call {
            svc,
            caller,
            deadline,
            limit,
            req,
        } = self;
        let f = Arc::new(f);
        let handler = tower::service_fn(move |r: tonic::Request<Req>| {
            let f = f.clone();
            let svc = svc.clone();
            let allowed = svc.auth().allow(&caller, r.get_ref());
            async move {
                allowed.map_err(|e| to_tonic(&e))?;
                let exceeded = || {
                    tonic::Status::deadline_exceeded(
                        "Deadline Exceeded: the call's grpc-timeout passed.",
                    )
                };
                let out = match deadline {
                    // Past its deadline once decoded, the call is not started at all.
                    Some(at) if tokio::time::Instant::now() >= at => return Err(exceeded()),
                    Some(at) => match tokio::time::timeout_at(at, f(svc, r.into_inner())).await {
                        Ok(out) => out,
                        Err(_) => return Err(exceeded()),
                    },
                    None => f(svc, r.into_inner()).await,
                };
                out.map(tonic::Response::new).map_err(|e| to_tonic(&e))
            }
        });
        // Requests may come gzip-compressed (a client option); answers go uncompressed, as
        // the official clients advertise gzip on every call and loopback gains nothing from it.
        let mut grpc = Grpc::new(ProtoCodec::<Resp, Req>::default())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX);
        grpc.unary(handler, req).await.map(Body::new)
    }
}

/// A prost codec whose decode errors are INVALID_ARGUMENT (the client sent a malformed
/// message), not INTERNAL.
struct ProtoCodec<E, D>(PhantomData<fn() -> (E, D)>);

impl<E, D> Default for ProtoCodec<E, D> {
    fn default() -> Self {
        ProtoCodec(PhantomData)
    }
}

impl<E, D> Codec for ProtoCodec<E, D>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = ProtoEncoder<E>;
    type Decoder = ProtoDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        ProtoEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(PhantomData)
    }
}

/// Encodes a response message.
struct ProtoEncoder<E>(PhantomData<fn() -> E>);

impl<E: Message> Encoder for ProtoEncoder<E> {
    type Item = E;
    type Error = tonic::Status;

    fn encode(&mut self, item: E, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(buf)
            .map_err(|e| tonic::Status::internal(format!("encoding the response failed: {e}")))
    }
}

/// Decodes a request message.
struct ProtoDecoder<D>(PhantomData<fn() -> D>);

impl<D: Message + Default> Decoder for ProtoDecoder<D> {
    type Item = D;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D>, tonic::Status> {
        D::decode(buf).map(Some).map_err(|e| {
            tonic::Status::invalid_argument(format!("The request message is not valid: {e}."))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_like_grpc() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse_timeout("123456789S"), None);
        assert_eq!(parse_timeout("S"), None);
        assert_eq!(parse_timeout("5x"), None);
        assert_eq!(parse_timeout(""), None);
    }

    #[test]
    fn grpc_content_types() {
        let h = |ct: &str| {
            let mut m = HeaderMap::new();
            m.insert("content-type", ct.parse().unwrap());
            m
        };
        assert!(is_grpc(&h("application/grpc")));
        assert!(is_grpc(&h("application/grpc+proto")));
        assert!(is_grpc(&h("application/grpc; charset=utf-8")));
        assert!(!is_grpc(&h("application/grpc-web")));
        assert!(!is_grpc(&h("application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
