//! BatchCreateTasks, BatchDeleteTasks and Operations.GetOperation.
//!
//! Batches complete synchronously: the returned Operation is already `done`. It is also stored
//! (for `operation_ttl`) so clients that poll GetOperation find it, and keyed by `request_id`
//! so a retried batch returns the first answer instead of running twice.

use std::collections::BTreeMap;

use stratus_types::proto::google::longrunning::{GetOperationRequest, Operation, operation};
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::{
    BatchCreateTasksMetadata, BatchCreateTasksRequest, BatchCreateTasksResponse,
    BatchDeleteTasksMetadata, BatchDeleteTasksRequest,
    batch_create_tasks_metadata::State as CreateState,
    batch_delete_tasks_metadata::State as DeleteState,
};
use stratus_types::proto::wkt::Any;
use stratus_types::time::micros_to_ts;
use stratus_types::{Code, LocationPath, QueuePath, Status, TaskPath};

use super::validate::{apply_view, check_view, prepare_task};
use super::{Ctx, Service, map_store};

/// Most tasks in one BatchCreateTasks.
pub const MAX_BATCH_CREATE: usize = 100;
/// Most names in one BatchDeleteTasks.
pub const MAX_BATCH_DELETE: usize = 1000;

const OPS: &str = "operation";
const REQUEST_IDS: &str = "batch-request";
/// Type URL prefix of packed messages.
pub const TYPE_PREFIX: &str = "type.googleapis.com/";

/// Refuses an empty batch or one over `max` items.
fn check_size(len: usize, max: usize, field: &str, what: &str) -> Result<(), Status> {
    if len == 0 {
        return Err(Status::invalid(format!(
            "{field} must contain at least one item."
        )));
    }
    if len > max {
        return Err(Status::invalid(format!(
            "{field} contains {len} {what}; the limit is {max}."
        )));
    }
    Ok(())
}

fn pack<M: Message>(type_name: &str, m: &M) -> Any {
    Any {
        type_url: format!("{TYPE_PREFIX}{type_name}"),
        value: m.encode_to_vec().into(),
    }
}

impl Service {
    async fn replay(
        &self,
        parent: &QueuePath,
        request_id: &str,
    ) -> Result<Option<Operation>, Status> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let key = format!("{parent}/{request_id}");
        let Some(op_name) = self
            .store
            .get_blob(REQUEST_IDS, &key)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?
        else {
            return Ok(None);
        };
        self.load_operation(&String::from_utf8_lossy(&op_name))
            .await
    }

    async fn load_operation(&self, name: &str) -> Result<Option<Operation>, Status> {
        let Some(bytes) = self
            .store
            .get_blob(OPS, name)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?
        else {
            return Ok(None);
        };
        Operation::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| Status::internal(format!("stored operation is unreadable: {e}")))
    }

    async fn save_operation(
        &self,
        parent: &QueuePath,
        request_id: &str,
        op: &Operation,
    ) -> Result<(), Status> {
        let now = self.now();
        self.store
            .put_blob(OPS, &op.name, op.encode_to_vec(), now)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        if !request_id.is_empty() {
            self.store
                .put_blob(
                    REQUEST_IDS,
                    &format!("{parent}/{request_id}"),
                    op.name.clone().into_bytes(),
                    now,
                )
                .await
                .map_err(|e| map_store(e, Ctx::Queue))?;
        }
        Ok(())
    }

    /// Builds the finished Operation of a batch (`response` `None` when every item failed:
    /// then the Operation carries ABORTED) and stores it for GetOperation and replays.
    async fn finish_batch(
        &self,
        parent: &QueuePath,
        request_id: &str,
        metadata: Any,
        response: Option<Any>,
    ) -> Result<Operation, Status> {
        let result = match response {
            Some(r) => operation::Result::Response(r),
            None => operation::Result::Error(
                Status::new(
                    Code::Aborted,
                    "Every request of the batch failed; see metadata.failed_requests.",
                )
                .to_proto(),
            ),
        };
        let op = Operation {
            name: self.new_operation_name(parent),
            metadata: Some(metadata),
            done: true,
            result: Some(result),
        };
        self.save_operation(parent, request_id, &op).await?;
        Ok(op)
    }

    fn new_operation_name(&self, parent: &QueuePath) -> String {
        format!(
            "{}/operations/{:016x}",
            parent.location,
            rand::random::<u64>()
        )
    }

    /// BatchCreateTasks: up to 100 tasks; per-item failures go in `failed_requests`.
    pub async fn batch_create_tasks(
        &self,
        req: BatchCreateTasksRequest,
    ) -> Result<Operation, Status> {
        let parent = QueuePath::parse(&req.parent)?;
        check_size(
            req.requests.len(),
            MAX_BATCH_CREATE,
            "requests",
            "CreateTaskRequests",
        )?;
        for (i, r) in req.requests.iter().enumerate() {
            if !r.parent.is_empty() && r.parent != req.parent {
                return Err(Status::invalid(format!(
                    "requests[{i}].parent \"{}\" must be the same as parent \"{}\".",
                    r.parent, req.parent
                )));
            }
            check_view(r.response_view, &format!("requests[{i}].response_view"))?;
        }
        if let Some(op) = self.replay(&parent, &req.request_id).await? {
            return Ok(op);
        }
        let start = self.now();
        let mut failed: BTreeMap<i32, Status> = BTreeMap::new();
        let mut valid = Vec::new();
        let mut views = Vec::new();
        let mut index_of = Vec::new();
        for (i, r) in req.requests.into_iter().enumerate() {
            let idx = i32::try_from(i).unwrap_or(i32::MAX);
            match prepare_task(r.task, &parent, start, &self.cfg, || {
                self.new_task_id(start)
            }) {
                Ok(t) => {
                    valid.push(t);
                    views.push(r.response_view);
                    index_of.push(idx);
                }
                Err(e) => {
                    failed.insert(idx, e);
                }
            }
        }
        let mut tasks = Vec::new();
        if !valid.is_empty() {
            let results = self
                .store
                .create_tasks(&parent, valid, start, self.cfg.windows)
                .await
                .map_err(|e| map_store(e, Ctx::Queue))?;
            let created: Vec<_> = results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .cloned()
                .collect();
            self.hook.tasks_created(&parent, &created);
            let dups = results
                .iter()
                .filter(|r| {
                    matches!(
                        r,
                        Err(stratus_store::StoreError::TaskExists
                            | stratus_store::StoreError::TaskRecentlyExisted)
                    )
                })
                .count();
            crate::metrics::count_creates(&parent, created.len(), dups);
            for ((res, view), idx) in results.into_iter().zip(views).zip(index_of) {
                match res {
                    Ok(t) => tasks.push(apply_view(t.task, view)),
                    Err(e) => {
                        failed.insert(idx, map_store(e, Ctx::Queue));
                    }
                }
            }
        }
        let state = if failed.is_empty() {
            CreateState::Succeeded
        } else if tasks.is_empty() {
            CreateState::Failed
        } else {
            CreateState::PartiallySucceeded
        };
        let metadata = BatchCreateTasksMetadata {
            start_time: Some(micros_to_ts(start)),
            end_time: Some(micros_to_ts(self.now())),
            state: state as i32,
            failed_requests: failed.iter().map(|(k, v)| (*k, v.to_proto())).collect(),
        };
        let response = (!tasks.is_empty()).then(|| {
            pack(
                "google.cloud.tasks.v2.BatchCreateTasksResponse",
                &BatchCreateTasksResponse { tasks },
            )
        });
        let metadata = pack("google.cloud.tasks.v2.BatchCreateTasksMetadata", &metadata);
        self.finish_batch(&parent, &req.request_id, metadata, response)
            .await
    }

    /// BatchDeleteTasks: up to 1000 names; per-item failures go in `failed_requests`.
    pub async fn batch_delete_tasks(
        &self,
        req: BatchDeleteTasksRequest,
    ) -> Result<Operation, Status> {
        let parent = QueuePath::parse(&req.parent)?;
        check_size(req.names.len(), MAX_BATCH_DELETE, "names", "task names")?;
        if let Some(op) = self.replay(&parent, &req.request_id).await? {
            return Ok(op);
        }
        let start = self.now();
        let mut failed: BTreeMap<i32, Status> = BTreeMap::new();
        let mut ids = Vec::new();
        let mut index_of = Vec::new();
        for (i, n) in req.names.iter().enumerate() {
            let idx = i32::try_from(i).unwrap_or(i32::MAX);
            match TaskPath::parse(n) {
                Ok(p) if p.queue == parent => {
                    ids.push(p.task);
                    index_of.push(idx);
                }
                Ok(_) => {
                    failed.insert(
                        idx,
                        Status::invalid(format!(
                            "names[{i}] \"{n}\" is not a task of parent \"{parent}\"."
                        )),
                    );
                }
                Err(e) => {
                    failed.insert(idx, e);
                }
            }
        }
        let total = req.names.len();
        if !ids.is_empty() {
            let results = self
                .store
                .delete_tasks(&parent, ids.clone(), start)
                .await
                .map_err(|e| map_store(e, Ctx::Queue))?;
            let deleted: Vec<String> = ids
                .into_iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(id, _)| id)
                .collect();
            self.hook.tasks_deleted(&parent, &deleted);
            for (res, idx) in results.into_iter().zip(index_of) {
                if let Err(e) = res {
                    failed.insert(idx, map_store(e, Ctx::Task));
                }
            }
        }
        let state = if failed.is_empty() {
            DeleteState::Succeeded
        } else if failed.len() == total {
            DeleteState::Failed
        } else {
            DeleteState::PartiallySucceeded
        };
        let metadata = BatchDeleteTasksMetadata {
            start_time: Some(micros_to_ts(start)),
            end_time: Some(micros_to_ts(self.now())),
            state: state as i32,
            failed_requests: failed.iter().map(|(k, v)| (*k, v.to_proto())).collect(),
        };
        let response = (failed.len() < total).then(|| pack("google.protobuf.Empty", &()));
        let metadata = pack("google.cloud.tasks.v2.BatchDeleteTasksMetadata", &metadata);
        self.finish_batch(&parent, &req.request_id, metadata, response)
            .await
    }

    /// Operations.GetOperation.
    pub async fn get_operation(&self, req: GetOperationRequest) -> Result<Operation, Status> {
        let parts: Vec<&str> = req.name.split('/').collect();
        let ok = parts.len() == 6
            && parts[4] == "operations"
            && !parts[5].is_empty()
            && LocationPath::parse(&parts[..4].join("/"), "name").is_ok();
        if !ok {
            return Err(Status::invalid(format!(
                "name \"{}\" must be formatted \"projects/<PROJECT_ID>/locations/<LOCATION_ID>/operations/<OPERATION_ID>\".",
                req.name
            )));
        }
        self.load_operation(&req.name)
            .await?
            .ok_or_else(|| Status::not_found(stratus_types::messages::ENTITY_NOT_FOUND))
    }
}
