//! Task RPCs: List, Get, Create, Delete, Run.

use stratus_store::{StoreError, TaskCursor};
use stratus_types::proto::tasks::{
    CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest, ListTasksResponse,
    RunTaskRequest, Task,
};
use stratus_types::{QueuePath, Status, TaskPath};

use super::validate::{apply_view, check_view, prepare_task};
use super::{Ctx, Service, map_store, paging};

/// Largest ListTasks page.
pub const MAX_TASK_PAGE: usize = 1000;

impl Service {
    /// ListTasks: live tasks by (schedule_time, task id).
    pub async fn list_tasks(&self, req: ListTasksRequest) -> Result<ListTasksResponse, Status> {
        let parent = QueuePath::parse(&req.parent)?;
        check_view(req.response_view, "response_view")?;
        if req.page_size < 0 {
            return Err(Status::invalid(format!(
                "page_size must not be negative; got {}.",
                req.page_size
            )));
        }
        let limit = match usize::try_from(req.page_size).unwrap_or(0) {
            0 => MAX_TASK_PAGE,
            n => n.min(MAX_TASK_PAGE),
        };
        let now = self.now();
        let resource = parent.to_string();
        let after = if req.page_token.is_empty() {
            None
        } else {
            let (k, i) = paging::decode(&req.page_token, &resource, "", now)?;
            let schedule_time = k
                .parse()
                .map_err(|_| Status::invalid("Invalid page_token."))?;
            Some(TaskCursor {
                schedule_time,
                task_id: i,
            })
        };
        let page = self
            .store
            .list_tasks(&parent, after.as_ref(), limit)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        Ok(ListTasksResponse {
            tasks: page
                .tasks
                .into_iter()
                .map(|t| apply_view(t, req.response_view))
                .collect(),
            next_page_token: page
                .next
                .map(|c| {
                    paging::encode(&resource, "", &c.schedule_time.to_string(), &c.task_id, now)
                })
                .unwrap_or_default(),
        })
    }

    /// GetTask.
    pub async fn get_task(&self, req: GetTaskRequest) -> Result<Task, Status> {
        let name = TaskPath::parse(&req.name)?;
        check_view(req.response_view, "response_view")?;
        let task = self
            .store
            .get_task(&name, self.now(), self.cfg.windows)
            .await
            .map_err(|e| map_store(e, Ctx::Task))?;
        Ok(apply_view(task, req.response_view))
    }

    /// CreateTask. A generated name that collides with an existing task (possible only if
    /// the clock went back across a restart) is replaced by a fresh one, at most 3 times.
    pub async fn create_task(&self, req: CreateTaskRequest) -> Result<Task, Status> {
        let parent = QueuePath::parse(&req.parent)?;
        check_view(req.response_view, "response_view")?;
        let generated = req.task.as_ref().is_some_and(|t| t.name.is_empty());
        let mut attempts = 0;
        loop {
            let now = self.now();
            let task = prepare_task(req.task.clone(), &parent, now, &self.cfg, || {
                self.new_task_id(now)
            })?;
            let mut results = self
                .store
                .create_tasks(&parent, vec![task], now, self.cfg.windows)
                .await
                .map_err(|e| map_store(e, Ctx::Queue))?;
            let outcome = results
                .pop()
                .ok_or_else(|| Status::internal("the store returned no outcome"))?;
            match outcome {
                Ok(created) => {
                    crate::metrics::count_creates(&parent, 1, 0);
                    self.hook
                        .tasks_created(&parent, std::slice::from_ref(&created));
                    return Ok(apply_view(created.task, req.response_view));
                }
                Err(StoreError::TaskExists | StoreError::TaskRecentlyExisted)
                    if generated && attempts < 3 =>
                {
                    attempts += 1;
                }
                Err(e) => {
                    if matches!(e, StoreError::TaskExists | StoreError::TaskRecentlyExisted) {
                        crate::metrics::count_creates(&parent, 0, 1);
                    }
                    return Err(map_store(e, Ctx::Queue));
                }
            }
        }
    }

    /// DeleteTask.
    pub async fn delete_task(&self, req: DeleteTaskRequest) -> Result<(), Status> {
        let name = TaskPath::parse(&req.name)?;
        let mut results = self
            .store
            .delete_tasks(&name.queue, vec![name.task.clone()], self.now())
            .await
            .map_err(|e| map_store(e, Ctx::Task))?;
        results
            .pop()
            .ok_or_else(|| Status::internal("the store returned no outcome"))?
            .map_err(|e| map_store(e, Ctx::Task))?;
        self.hook
            .tasks_deleted(&name.queue, std::slice::from_ref(&name.task));
        Ok(())
    }

    /// RunTask: dispatches now through the dispatcher, ignoring pause and rate limits, and
    /// answers with the task as dispatched (before its response).
    pub async fn run_task(&self, req: RunTaskRequest) -> Result<Task, Status> {
        let name = TaskPath::parse(&req.name)?;
        check_view(req.response_view, "response_view")?;
        // NOT_FOUND (with the recently-existed text for a tombstone) comes first, whether or
        // not this server dispatches.
        self.store
            .get_task(&name, self.now(), self.cfg.windows)
            .await
            .map_err(|e| map_store(e, Ctx::Task))?;
        let task = self.hook.run_task(&name).await?;
        Ok(apply_view(task, req.response_view))
    }
}
