//! Method + path → RPC. Paths follow the `google.api.http` bindings of the v2 protos;
//! names keep their slashes and custom verbs follow the last segment (`…/queues/q:pause`).
//! Stratus' own calls (task status, failed tasks, retry; see `service::retention`) live under
//! `/stratus/v1/`, apart from every Cloud Tasks path.

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

/// Routes one REST call and returns the response JSON.
pub(super) async fn route(
    svc: &Service,
    caller: &Caller,
    method: &Method,
    path: &str,
    q: &Query,
    body: &[u8],
) -> Result<Value, Status> {
    if let Some(rest) = path.strip_prefix(STRATUS_PREFIX) {
        return stratus_route(svc, caller, method, path, rest, q, body).await;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Err(not_found(method, path));
    };
    let a = svc.auth();
    let (segs, verb) = split_path(rest);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let join = |n: usize| s[..n].join("/");
    let m = method.clone();
    let v = verb.as_str();
    match (s.as_slice(), v) {
        (["projects", _, "locations"], "") if m == Method::GET => {
            let r = ListLocationsRequest {
                name: join(2),
                filter: q.get("filter", "filter").unwrap_or("").to_string(),
                page_size: q.int("pageSize", "page_size")?,
                page_token: q.get("pageToken", "page_token").unwrap_or("").to_string(),
            };
            a.allow(caller, &r)?;
            Ok(encode(&svc.list_locations(r).await?))
        }
        (["projects", _, "locations", _], "") if m == Method::GET => {
            let r = GetLocationRequest { name: join(4) };
            a.allow(caller, &r)?;
            Ok(encode(&svc.get_location(r).await?))
        }
        (["projects", _, "locations", _, "cmekConfig"], "") => {
            if m == Method::GET {
                let r = GetCmekConfigRequest { name: join(5) };
                a.allow(caller, &r)?;
                Ok(encode(&svc.get_cmek_config(r).await?))
            } else if m == Method::PATCH {
                let mut cfg: CmekConfig = decode(body)?;
                cfg.name = join(5);
                let r = UpdateCmekConfigRequest {
                    cmek_config: Some(cfg),
                    update_mask: mask(q),
                };
                a.allow(caller, &r)?;
                Ok(encode(&svc.update_cmek_config(r).await?))
            } else {
                Err(not_found(method, path))
            }
        }
        (["projects", _, "locations", _, "operations", _], "") if m == Method::GET => {
            let r = GetOperationRequest { name: join(6) };
            a.allow(caller, &r)?;
            Ok(operation_json(&svc.get_operation(r).await?))
        }
        (["projects", _, "locations", _, "queues"], "") => {
            let parent = join(4);
            if m == Method::GET {
                let r = ListQueuesRequest {
                    parent,
                    filter: q.get("filter", "filter").unwrap_or("").to_string(),
                    page_size: q.int("pageSize", "page_size")?,
                    page_token: q.get("pageToken", "page_token").unwrap_or("").to_string(),
                };
                a.allow(caller, &r)?;
                Ok(encode(&svc.list_queues(r).await?))
            } else if m == Method::POST {
                a.check(caller, Permission::QueuesCreate, &parent)?;
                let queue: Queue = decode(body)?;
                let r = CreateQueueRequest {
                    parent,
                    queue: Some(queue),
                };
                Ok(encode(&svc.create_queue(r).await?))
            } else {
                Err(not_found(method, path))
            }
        }
        (["projects", _, "locations", _, "queues", _], verb) => {
            let name = join(6);
            match (verb, m) {
                ("", Method::GET) => {
                    let r = GetQueueRequest { name };
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.get_queue(r).await?))
                }
                ("", Method::DELETE) => {
                    let r = DeleteQueueRequest { name };
                    a.allow(caller, &r)?;
                    svc.delete_queue(r).await?;
                    Ok(json!({}))
                }
                ("", Method::PATCH) => {
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
                ("purge", Method::POST) => {
                    let mut r: PurgeQueueRequest = decode(body)?;
                    r.name = name;
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.purge_queue(r).await?))
                }
                ("pause", Method::POST) => {
                    let mut r: PauseQueueRequest = decode(body)?;
                    r.name = name;
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.pause_queue(r).await?))
                }
                ("resume", Method::POST) => {
                    let mut r: ResumeQueueRequest = decode(body)?;
                    r.name = name;
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.resume_queue(r).await?))
                }
                ("getIamPolicy", Method::POST) => {
                    let mut r: GetIamPolicyRequest = decode(body)?;
                    r.resource = name;
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.get_iam_policy(r).await?))
                }
                ("setIamPolicy", Method::POST) => {
                    let mut r: SetIamPolicyRequest = decode(body)?;
                    r.resource = name;
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.set_iam_policy(r).await?))
                }
                ("testIamPermissions", Method::POST) => {
                    let mut r: TestIamPermissionsRequest = decode(body)?;
                    r.resource = name.clone();
                    a.allow(caller, &r)?;
                    let mut out = svc.test_iam_permissions(r).await?;
                    retain_held(caller, &name, &mut out.permissions);
                    Ok(encode(&out))
                }
                _ => Err(not_found(method, path)),
            }
        }
        (["projects", _, "locations", _, "queues", _, "tasks"], verb) => {
            let parent = join(6);
            match (verb, m) {
                ("", Method::GET) => {
                    let r = ListTasksRequest {
                        parent,
                        response_view: q.view()?,
                        page_size: q.int("pageSize", "page_size")?,
                        page_token: q.get("pageToken", "page_token").unwrap_or("").to_string(),
                    };
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.list_tasks(r).await?))
                }
                ("", Method::POST) => {
                    let mut r: CreateTaskRequest = decode(body)?;
                    r.parent = parent;
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.create_task(r).await?))
                }
                ("batchCreate", Method::POST) => {
                    let mut r: BatchCreateTasksRequest = decode(body)?;
                    r.parent = parent;
                    a.allow(caller, &r)?;
                    Ok(operation_json(&svc.batch_create_tasks(r).await?))
                }
                ("batchDelete", Method::POST) => {
                    let mut r: BatchDeleteTasksRequest = decode(body)?;
                    r.parent = parent;
                    a.allow(caller, &r)?;
                    Ok(operation_json(&svc.batch_delete_tasks(r).await?))
                }
                _ => Err(not_found(method, path)),
            }
        }
        (["projects", _, "locations", _, "queues", _, "tasks", _], verb) => {
            let name = join(8);
            match (verb, m) {
                ("", Method::GET) => {
                    let r = GetTaskRequest {
                        name,
                        response_view: q.view()?,
                    };
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.get_task(r).await?))
                }
                ("", Method::DELETE) => {
                    let r = DeleteTaskRequest { name };
                    a.allow(caller, &r)?;
                    svc.delete_task(r).await?;
                    Ok(json!({}))
                }
                ("run", Method::POST) => {
                    let mut r: RunTaskRequest = decode(body)?;
                    r.name = name;
                    a.allow(caller, &r)?;
                    Ok(encode(&svc.run_task(r).await?))
                }
                _ => Err(not_found(method, path)),
            }
        }
        _ => Err(not_found(method, path)),
    }
}

fn stratus_not_found(method: &Method, path: &str) -> Status {
    Status::new(
        Code::NotFound,
        format!(
            "No Stratus API call is bound to {method} {path}; see docs/retention.md for the \
             /stratus/v1/ endpoints."
        ),
    )
}

/// Routes Stratus' own calls under `/stratus/v1/` (task status, failed tasks, retry). Errors
/// use the Cloud Tasks error body like every other call.
async fn stratus_route(
    svc: &Service,
    caller: &Caller,
    method: &Method,
    path: &str,
    rest: &str,
    q: &Query,
    body: &[u8],
) -> Result<Value, Status> {
    let a = svc.auth();
    let (segs, verb) = split_path(rest);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let join = |n: usize| s[..n].join("/");
    match (s.as_slice(), verb.as_str()) {
        (["projects", _, "locations", _, "queues", _, "failedTasks"], "")
            if method == Method::GET =>
        {
            let page_size = match q.get("pageSize", "page_size") {
                None => 0,
                Some(v) => v.parse().map_err(|_| {
                    Status::invalid(format!(
                        "Invalid value at 'pageSize' (TYPE_INT32), \"{v}\"."
                    ))
                })?,
            };
            let token = q.get("pageToken", "page_token").unwrap_or("");
            a.check(caller, Permission::TasksList, &join(6))?;
            Ok(encode(
                &svc.list_failed_tasks(&join(6), page_size, token, q.view()?)
                    .await?,
            ))
        }
        (["projects", _, "locations", _, "queues", _, "tasks", _], "") if method == Method::GET => {
            a.check(caller, Permission::TasksGet, &join(8))?;
            Ok(encode(&svc.task_status(&join(8), q.view()?).await?))
        }
        (["projects", _, "locations", _, "queues", _, "tasks", _], "retry")
            if method == Method::POST =>
        {
            a.check(caller, Permission::TasksRetry, &join(8))?;
            // The call takes no fields; an empty body and `{}` are both fine.
            let fields: serde_json::Map<String, Value> = decode(body)?;
            if let Some(k) = fields.keys().next() {
                return Err(Status::invalid(format!(
                    "Invalid JSON payload received. Unknown name \"{k}\": the retry call takes \
                     no body fields (pass responseView as a query parameter)."
                )));
            }
            Ok(encode(&svc.retry_task(&join(8), q.view()?).await?))
        }
        _ => Err(stratus_not_found(method, path)),
    }
}
