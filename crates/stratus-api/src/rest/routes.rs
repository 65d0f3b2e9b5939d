//! Method + path → RPC. Paths follow the `google.api.http` bindings of the v2 protos;
//! names keep their slashes and custom verbs follow the last segment (`…/queues/q:pause`).
//! Stratus' own calls (task status, failed tasks, retry, see `service::retention`; queue
//! statistics, see `service::stats`) live under `/stratus/v1/`, apart from every Cloud Tasks
//! path.
//!
//! Two steps: [`resolve`] reads the method and path once into a [`Target`] (the RPC and the
//! resource name the path carries), which also names the call in the metrics; [`call`] runs
//! it over the service with the decoded body.

use axum::http::Method;
use serde_json::{Value, json};
use stratus_types::proto::google::cloud::location::{GetLocationRequest, ListLocationsRequest};
use stratus_types::proto::google::iam::v1::{
    GetIamPolicyRequest, SetIamPolicyRequest, TestIamPermissionsRequest,
};
use stratus_types::proto::google::longrunning::GetOperationRequest;
use stratus_types::proto::tasks::{
    BatchCreateTasksRequest, BatchDeleteTasksRequest, CmekConfig, CreateQueueRequest,
    CreateTaskRequest, DeleteQueueRequest, DeleteTaskRequest, GetCmekConfigRequest,
    GetQueueRequest, GetTaskRequest, ListQueuesRequest, ListTasksRequest, PauseQueueRequest,
    PurgeQueueRequest, Queue, ResumeQueueRequest, RunTaskRequest, UpdateCmekConfigRequest,
    UpdateQueueRequest,
};
use stratus_types::proto::wkt::FieldMask;
use stratus_types::{Code, Status};

use super::json::{Query, decode, encode, operation_json};
use crate::Service;
use crate::auth::{Caller, Permission, retain_held};

fn not_found(method: &Method, path: &str) -> Status {
    Status::new(
        Code::NotFound,
        format!("No RPC is bound to {method} {path}; see the Cloud Tasks v2 REST reference."),
    )
}

fn mask(q: &Query) -> Option<FieldMask> {
    q.get("updateMask", "update_mask").map(|m| FieldMask {
        paths: m
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
    })
}

/// Where Stratus' own API (beyond Cloud Tasks) lives; nothing under it collides with `/v2/`.
const STRATUS_PREFIX: &str = "/stratus/v1/";

/// Percent-decodes each segment of a path (after its API prefix) and splits a custom verb off
/// the last one: `queues/q:pause` → (`["queues", "q"]`, `"pause"`).
fn split_path(rest: &str) -> (Vec<String>, String) {
    let mut segs: Vec<String> = rest
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let mut verb = String::new();
    if let Some(last) = segs.last_mut()
        && let Some((name, v)) = last.rsplit_once(':')
    {
        verb = v.to_string();
        *last = name.to_string();
    }
    (segs, verb)
}

/// Every RPC the REST transport serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    ListLocations,
    GetLocation,
    GetCmekConfig,
    UpdateCmekConfig,
    GetOperation,
    ListQueues,
    CreateQueue,
    GetQueue,
    DeleteQueue,
    UpdateQueue,
    PurgeQueue,
    PauseQueue,
    ResumeQueue,
    GetIamPolicy,
    SetIamPolicy,
    TestIamPermissions,
    ListTasks,
    CreateTask,
    BatchCreateTasks,
    BatchDeleteTasks,
    GetTask,
    DeleteTask,
    RunTask,
    ListFailedTasks,
    GetTaskHistory,
    RetryTask,
    ListQueueStats,
}

impl Rpc {
    /// The RPC's name, as the metrics label it.
    pub(crate) fn name(self) -> &'static str {
        use Rpc::*;
        match self {
            ListLocations => "ListLocations",
            GetLocation => "GetLocation",
            GetCmekConfig => "GetCmekConfig",
            UpdateCmekConfig => "UpdateCmekConfig",
            GetOperation => "GetOperation",
            ListQueues => "ListQueues",
            CreateQueue => "CreateQueue",
            GetQueue => "GetQueue",
            DeleteQueue => "DeleteQueue",
            UpdateQueue => "UpdateQueue",
            PurgeQueue => "PurgeQueue",
            PauseQueue => "PauseQueue",
            ResumeQueue => "ResumeQueue",
            GetIamPolicy => "GetIamPolicy",
            SetIamPolicy => "SetIamPolicy",
            TestIamPermissions => "TestIamPermissions",
            ListTasks => "ListTasks",
            CreateTask => "CreateTask",
            BatchCreateTasks => "BatchCreateTasks",
            BatchDeleteTasks => "BatchDeleteTasks",
            GetTask => "GetTask",
            DeleteTask => "DeleteTask",
            RunTask => "RunTask",
            ListFailedTasks => "ListFailedTasks",
            GetTaskHistory => "GetTaskHistory",
            RetryTask => "RetryTask",
            ListQueueStats => "ListQueueStats",
        }
    }
}

/// A routed call: the RPC and the resource name its path carries (parent or name).
#[derive(Debug)]
pub(crate) struct Target {
    /// The RPC the method and path are bound to.
    pub(crate) rpc: Rpc,
    /// The resource name from the path, percent-decoded.
    pub(crate) name: String,
    /// True when a segment in a name position was empty (`/v2/projects//locations`): the
    /// service refuses the name, and the metrics do not count it as the RPC.
    pub(crate) empty_segment: bool,
}

/// Reads the method and path into a [`Target`], or the NOT_FOUND of a path no RPC is bound to.
pub(crate) fn resolve(method: &Method, path: &str) -> Result<Target, Status> {
    use Rpc::*;
    let (stratus, rest) = match path.strip_prefix(STRATUS_PREFIX) {
        Some(rest) => (true, rest),
        None => match path.strip_prefix("/v2/") {
            Some(rest) => (false, rest),
            None => return Err(not_found(method, path)),
        },
    };
    let (segs, verb) = split_path(rest);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method;
    let found = if stratus {
        match (s.as_slice(), verb.as_str()) {
            (["projects", _, "locations", _, "queueStats"], "") if m == Method::GET => {
                Some((ListQueueStats, 4))
            }
            (["projects", _, "locations", _, "queues", _, "failedTasks"], "")
                if m == Method::GET =>
            {
                Some((ListFailedTasks, 6))
            }
            (["projects", _, "locations", _, "queues", _, "tasks", _], "") if m == Method::GET => {
                Some((GetTaskHistory, 8))
            }
            (["projects", _, "locations", _, "queues", _, "tasks", _], "retry")
                if m == Method::POST =>
            {
                Some((RetryTask, 8))
            }
            _ => None,
        }
    } else {
        match (s.as_slice(), verb.as_str()) {
            (["projects", _, "locations"], "") if m == Method::GET => Some((ListLocations, 2)),
            (["projects", _, "locations", _], "") if m == Method::GET => Some((GetLocation, 4)),
            (["projects", _, "locations", _, "cmekConfig"], "") => match *m {
                Method::GET => Some((GetCmekConfig, 5)),
                Method::PATCH => Some((UpdateCmekConfig, 5)),
                _ => None,
            },
            (["projects", _, "locations", _, "operations", _], "") if m == Method::GET => {
                Some((GetOperation, 6))
            }
            (["projects", _, "locations", _, "queues"], "") => match *m {
                Method::GET => Some((ListQueues, 4)),
                Method::POST => Some((CreateQueue, 4)),
                _ => None,
            },
            (["projects", _, "locations", _, "queues", _], v) => match (v, m.clone()) {
                ("", Method::GET) => Some((GetQueue, 6)),
                ("", Method::DELETE) => Some((DeleteQueue, 6)),
                ("", Method::PATCH) => Some((UpdateQueue, 6)),
                ("purge", Method::POST) => Some((PurgeQueue, 6)),
                ("pause", Method::POST) => Some((PauseQueue, 6)),
                ("resume", Method::POST) => Some((ResumeQueue, 6)),
                ("getIamPolicy", Method::POST) => Some((GetIamPolicy, 6)),
                ("setIamPolicy", Method::POST) => Some((SetIamPolicy, 6)),
                ("testIamPermissions", Method::POST) => Some((TestIamPermissions, 6)),
                _ => None,
            },
            (["projects", _, "locations", _, "queues", _, "tasks"], v) => match (v, m.clone()) {
                ("", Method::GET) => Some((ListTasks, 6)),
                ("", Method::POST) => Some((CreateTask, 6)),
                ("batchCreate", Method::POST) => Some((BatchCreateTasks, 6)),
                ("batchDelete", Method::POST) => Some((BatchDeleteTasks, 6)),
                _ => None,
            },
            (["projects", _, "locations", _, "queues", _, "tasks", _], v) => match (v, m.clone()) {
                ("", Method::GET) => Some((GetTask, 8)),
                ("", Method::DELETE) => Some((DeleteTask, 8)),
                ("run", Method::POST) => Some((RunTask, 8)),
                _ => None,
            },
            _ => None,
        }
    };
    match found {
        Some((rpc, n)) => Ok(Target {
            rpc,
            name: s[..n].join("/"),
            empty_segment: s.iter().any(|seg| seg.is_empty()),
        }),
        None if stratus => Err(stratus_not_found(method, path)),
        None => Err(not_found(method, path)),
    }
}

/// Runs a resolved call over the service and returns the response JSON. Every call is
/// checked against the caller's token before the service sees it.
pub(super) async fn call(
    svc: &Service,
    caller: &Caller,
    target: Target,
    q: &Query,
    body: &[u8],
) -> Result<Value, Status> {
    use Rpc::*;
    let a = svc.auth();
    let name = target.name;
    match target.rpc {
        ListLocations => {
            let r = ListLocationsRequest {
                name,
                filter: q.get("filter", "filter").unwrap_or("").to_string(),
                page_size: q.int("pageSize", "page_size")?,
                page_token: q.get("pageToken", "page_token").unwrap_or("").to_string(),
            };
            a.allow(caller, &r)?;
            Ok(encode(&svc.list_locations(r).await?))
        }
        GetLocation => {
            let r = GetLocationRequest { name };
            a.allow(caller, &r)?;
            Ok(encode(&svc.get_location(r).await?))
        }
        GetCmekConfig => {
            let r = GetCmekConfigRequest { name };
            a.allow(caller, &r)?;
            Ok(encode(&svc.get_cmek_config(r).await?))
        }
        UpdateCmekConfig => {
            let mut cfg: CmekConfig = decode(body)?;
            cfg.name = name;
            let r = UpdateCmekConfigRequest {
                cmek_config: Some(cfg),
                update_mask: mask(q),
            };
            a.allow(caller, &r)?;
            Ok(encode(&svc.update_cmek_config(r).await?))
        }
        GetOperation => {
            let r = GetOperationRequest { name };
            a.allow(caller, &r)?;
            Ok(operation_json(&svc.get_operation(r).await?))
        }
        ListQueues => {
            let r = ListQueuesRequest {
                parent: name,
                filter: q.get("filter", "filter").unwrap_or("").to_string(),
                page_size: q.int("pageSize", "page_size")?,
                page_token: q.get("pageToken", "page_token").unwrap_or("").to_string(),
            };
            a.allow(caller, &r)?;
            Ok(encode(&svc.list_queues(r).await?))
        }
        CreateQueue => {
            a.check(caller, Permission::QueuesCreate, &name)?;
            let queue: Queue = decode(body)?;
            let r = CreateQueueRequest {
                parent: name,
                queue: Some(queue),
            };
            Ok(encode(&svc.create_queue(r).await?))
        }
        GetQueue => {
            let r = GetQueueRequest { name };
            a.allow(caller, &r)?;
            Ok(encode(&svc.get_queue(r).await?))
        }
        DeleteQueue => {
            let r = DeleteQueueRequest { name };
            a.allow(caller, &r)?;
            svc.delete_queue(r).await?;
            Ok(json!({}))
        }
        UpdateQueue => {
            a.check(caller, Permission::QueuesUpdate, &name)?;
            let mut queue: Queue = decode(body)?;
            if !queue.name.is_empty() && queue.name != name {
                return Err(Status::invalid(format!(
                    "queue.name \"{}\" does not match the name in the URL \"{name}\".",
                    queue.name
                )));
            }
            queue.name = name;
            let r = UpdateQueueRequest {
                queue: Some(queue),
                update_mask: mask(q),
            };
            a.allow(caller, &r)?;
            Ok(encode(&svc.update_queue(r).await?))
        }
        PurgeQueue => {
            let mut r: PurgeQueueRequest = decode(body)?;
            r.name = name;
            a.allow(caller, &r)?;
            Ok(encode(&svc.purge_queue(r).await?))
        }
        PauseQueue => {
            let mut r: PauseQueueRequest = decode(body)?;
            r.name = name;
            a.allow(caller, &r)?;
            Ok(encode(&svc.pause_queue(r).await?))
        }
        ResumeQueue => {
            let mut r: ResumeQueueRequest = decode(body)?;
            r.name = name;
            a.allow(caller, &r)?;
            Ok(encode(&svc.resume_queue(r).await?))
        }
        GetIamPolicy => {
            let mut r: GetIamPolicyRequest = decode(body)?;
            r.resource = name;
            a.allow(caller, &r)?;
            Ok(encode(&svc.get_iam_policy(r).await?))
        }
        SetIamPolicy => {
            let mut r: SetIamPolicyRequest = decode(body)?;
            r.resource = name;
            a.allow(caller, &r)?;
            Ok(encode(&svc.set_iam_policy(r).await?))
        }
        TestIamPermissions => {
            let mut r: TestIamPermissionsRequest = decode(body)?;
            r.resource = name.clone();
            a.allow(caller, &r)?;
            let mut out = svc.test_iam_permissions(r).await?;
            retain_held(caller, &name, &mut out.permissions);
            Ok(encode(&out))
        }
        ListTasks => {
            let r = ListTasksRequest {
                parent: name,
                response_view: q.view()?,
                page_size: q.int("pageSize", "page_size")?,
                page_token: q.get("pageToken", "page_token").unwrap_or("").to_string(),
            };
            a.allow(caller, &r)?;
            Ok(encode(&svc.list_tasks(r).await?))
        }
        CreateTask => {
            let mut r: CreateTaskRequest = decode(body)?;
            r.parent = name;
            a.allow(caller, &r)?;
            Ok(encode(&svc.create_task(r).await?))
        }
        BatchCreateTasks => {
            let mut r: BatchCreateTasksRequest = decode(body)?;
            r.parent = name;
            a.allow(caller, &r)?;
            Ok(operation_json(&svc.batch_create_tasks(r).await?))
        }
        BatchDeleteTasks => {
            let mut r: BatchDeleteTasksRequest = decode(body)?;
            r.parent = name;
            a.allow(caller, &r)?;
            Ok(operation_json(&svc.batch_delete_tasks(r).await?))
        }
        GetTask => {
            let r = GetTaskRequest {
                name,
                response_view: q.view()?,
            };
            a.allow(caller, &r)?;
            Ok(encode(&svc.get_task(r).await?))
        }
        DeleteTask => {
            let r = DeleteTaskRequest { name };
            a.allow(caller, &r)?;
            svc.delete_task(r).await?;
            Ok(json!({}))
        }
        RunTask => {
            let mut r: RunTaskRequest = decode(body)?;
            r.name = name;
            a.allow(caller, &r)?;
            Ok(encode(&svc.run_task(r).await?))
        }
        ListFailedTasks => {
            let page_size = match q.get("pageSize", "page_size") {
                None => 0,
                Some(v) => v.parse().map_err(|_| {
                    Status::invalid(format!(
                        "Invalid value at 'pageSize' (TYPE_INT32), \"{v}\"."
                    ))
                })?,
            };
            let token = q.get("pageToken", "page_token").unwrap_or("");
            a.check(caller, Permission::TasksList, &name)?;
            Ok(encode(
                &svc.list_failed_tasks(&name, page_size, token, q.view()?)
                    .await?,
            ))
        }
        GetTaskHistory => {
            a.check(caller, Permission::TasksGet, &name)?;
            Ok(encode(&svc.task_status(&name, q.view()?).await?))
        }
        RetryTask => {
            a.check(caller, Permission::TasksRetry, &name)?;
            // The call takes no fields; an empty body and `{}` are both fine.
            let fields: serde_json::Map<String, Value> = decode(body)?;
            if let Some(k) = fields.keys().next() {
                return Err(Status::invalid(format!(
                    "Invalid JSON payload received. Unknown name \"{k}\": the retry call takes \
                     no body fields (pass responseView as a query parameter)."
                )));
            }
            Ok(encode(&svc.retry_task(&name, q.view()?).await?))
        }
        ListQueueStats => {
            a.check(caller, Permission::QueuesList, &name)?;
            Ok(encode(&svc.queue_stats(&name).await?))
        }
    }
}

fn stratus_not_found(method: &Method, path: &str) -> Status {
    Status::new(
        Code::NotFound,
        format!(
            "No Stratus API call is bound to {method} {path}; see docs/retention.md and \
             docs/metrics.md for the /stratus/v1/ endpoints."
        ),
    )
}
