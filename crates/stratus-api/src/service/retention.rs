//! Stratus' retention API, beyond Cloud Tasks: the state and attempt history of any kept task,
//! the failed tasks of a queue (the dead-letter list), and the retry of a finished task.
//!
//! Finished tasks are kept for `ServiceConfig.windows.retain_succeeded` (succeeded) and
//! `retain_failed` (failed), never shorter than the tombstone window
//! ([`stratus_store::Windows::keep`]). A row past its window reads as not found here even
//! before the periodic cleanup removes it, so what these calls show does not depend on when
//! cleanup last ran.
//!
//! None of this changes a Cloud Tasks answer: a finished task stays NOT_FOUND for GetTask,
//! absent from ListTasks, and its name stays blocked by the tombstone window as before.

use serde::{Serialize, Serializer};
use stratus_store::dispatch::{AttemptRecord, TaskRecord};
use stratus_store::{StoreError, TaskState};
use stratus_types::proto::tasks::Task;
use stratus_types::time::format_rfc3339;
use stratus_types::{Code, Micros, QueuePath, Status, TaskPath, messages};

use super::validate::{apply_view, check_view};
use super::{Ctx, Service, map_store, paging};

/// Failed tasks per page when `pageSize` is absent or 0.
pub const DEFAULT_FAILED_PAGE: usize = 100;
/// Largest failed-task page; a larger `pageSize` is lowered to it.
pub const MAX_FAILED_PAGE: usize = 1000;

/// The state of a kept task as the retention API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetainedState {
    /// Live, waiting for its schedule time (or due and not yet dispatched).
    Scheduled,
    /// Live, an attempt is in flight.
    Dispatched,
    /// Finished with a 2xx answer; kept for `retain_succeeded`.
    Succeeded,
    /// Ran out of attempts; kept for `retain_failed`.
    Failed,
}

impl RetainedState {
    /// The retention state of a stored state; `None` for `Deleted` (a bare tombstone).
    pub fn of(state: TaskState) -> Option<Self> {
        match state {
            TaskState::Scheduled => Some(RetainedState::Scheduled),
            TaskState::Dispatched => Some(RetainedState::Dispatched),
            TaskState::Succeeded => Some(RetainedState::Succeeded),
            TaskState::Failed => Some(RetainedState::Failed),
            TaskState::Deleted => None,
        }
    }
}

fn rfc3339<S: Serializer>(us: &Micros, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*us))
}

fn rfc3339_opt<S: Serializer>(us: &Option<Micros>, s: S) -> Result<S::Ok, S::Error> {
    match us {
        Some(us) => rfc3339(us, s),
        None => s.serialize_none(),
    }
}

/// One attempt of a task, as JSON:
/// `{"seq":1,"dispatchTime":"…Z","responseTime":"…Z","httpStatus":500,"error":"…","latencyMs":12}`.
/// `httpStatus` is absent when no response came, `error` when there was nothing to report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptStatus {
    /// 1 for the first attempt of this task; numbering continues across retries.
    pub seq: i64,
    /// When the request was sent (RFC 3339, UTC).
    #[serde(serialize_with = "rfc3339")]
    pub dispatch_time: Micros,
    /// When the response came or the attempt gave up (RFC 3339, UTC).
    #[serde(serialize_with = "rfc3339")]
    pub response_time: Micros,
    /// The HTTP status, when a response came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// What went wrong without a response (connection refused, deadline …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `responseTime - dispatchTime` in whole milliseconds.
    pub latency_ms: i64,
}

impl From<&AttemptRecord> for AttemptStatus {
    fn from(a: &AttemptRecord) -> Self {
        AttemptStatus {
            seq: a.seq,
            dispatch_time: a.dispatch_time,
            response_time: a.response_time,
            http_status: a.http_status,
            error: a.error.clone(),
            latency_ms: a.response_time.saturating_sub(a.dispatch_time).max(0) / 1_000,
        }
    }
}

/// A kept task with its state, as JSON:
/// `{"task":{…Cloud Tasks Task…},"state":"FAILED","finishTime":"…Z","attempts":[…]}`.
/// `finishTime` is absent for live tasks; `attempts` is absent in list results (read one task's
/// status for its history) and present, possibly empty, for a single task.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The task as last stored, in the requested view (Cloud Tasks JSON).
    pub task: Task,
    /// Where it is in its lifecycle.
    pub state: RetainedState,
    /// When it finished (RFC 3339, UTC), for succeeded and failed tasks.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    pub finish_time: Option<Micros>,
    /// Its attempts, oldest first; `None` in list results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptStatus>>,
}

/// A page of failed tasks, as JSON: `{"tasks":[…],"nextPageToken":"…"}`; `tasks` is always
/// present, `nextPageToken` only when more may follow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFailedTasksResponse {
    /// Failed tasks, in the order they were first created (oldest first).
    pub tasks: Vec<TaskStatus>,
    /// The `pageToken` of the next page; empty on the last page.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// The error of a retry on a task that is still live.
fn still_scheduled(name: &TaskPath) -> Status {
    Status::new(
        Code::FailedPrecondition,
        format!("Task {name} is still scheduled; only finished tasks can be retried."),
    )
}

impl Service {
    /// Whether a finished record is past its retention window (gone, though maybe not yet
    /// cleaned up). Live records never expire.
    fn expired(&self, rec: &TaskRecord, now: Micros) -> bool {
        match rec.finished_at {
            Some(at) if !rec.state.is_live() => {
                at <= now.saturating_sub(self.cfg.windows.keep(rec.state))
            }
            _ => false,
        }
    }

    /// The record of a kept task, NOT_FOUND when it is unknown, deleted or past retention.
    async fn kept_record(&self, name: &TaskPath, now: Micros) -> Result<TaskRecord, Status> {
        let rec = self
            .store
            .task_record(name)
            .await
            .map_err(|e| map_store(e, Ctx::Task))?;
        if RetainedState::of(rec.state).is_none() || self.expired(&rec, now) {
            return Err(Status::not_found(messages::ENTITY_NOT_FOUND));
        }
        Ok(rec)
    }

    /// The state, finish time and attempt history of any kept task (live, succeeded or
    /// failed), with the task in `view` (0/1 BASIC, 2 FULL). Errors: INVALID_ARGUMENT for a
    /// malformed name or view, NOT_FOUND for a task not kept.
    pub async fn task_status(&self, name: &str, view: i32) -> Result<TaskStatus, Status> {
        let name = TaskPath::parse(name)?;
        check_view(view, "responseView")?;
        let rec = self.kept_record(&name, self.now()).await?;
        Ok(status_of(rec, view, true))
    }

    /// The failed tasks of a queue still inside `retain_failed`, oldest first. `page_size` 0
    /// means 100; larger than 1000 is lowered to 1000; negative is INVALID_ARGUMENT. A page
    /// may hold fewer tasks than asked and still have a next page.
    pub async fn list_failed_tasks(
        &self,
        parent: &str,
        page_size: i32,
        page_token: &str,
        view: i32,
    ) -> Result<ListFailedTasksResponse, Status> {
        let parent = QueuePath::parse(parent)?;
        check_view(view, "responseView")?;
        if page_size < 0 {
            return Err(Status::invalid(format!(
                "pageSize must not be negative; got {page_size}."
            )));
        }
        let limit = match usize::try_from(page_size).unwrap_or(0) {
            0 => DEFAULT_FAILED_PAGE,
            n => n.min(MAX_FAILED_PAGE),
        };
        let now = self.now();
        // A resource of its own, so ListTasks tokens of the same queue are refused here.
        let resource = format!("{parent}/failedTasks");
        let after = if page_token.is_empty() {
            None
        } else {
            let rename = |mut s: Status| {
                s.message = s.message.replace("page_token", "pageToken");
                s
            };
            let (key, _) = paging::decode(page_token, &resource, "", now).map_err(rename)?;
            let row = key.parse::<i64>().map_err(|_| {
                Status::invalid(format!(
                    "Invalid pageToken \"{page_token}\": it was not issued for this request."
                ))
            })?;
            Some(row)
        };
        // One extra row tells whether another page follows.
        let rows = self
            .store
            .list_finished(&parent, TaskState::Failed, after, limit + 1)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        let more = rows.len() > limit;
        let mut tasks = Vec::new();
        let mut last = None;
        for rec in rows.into_iter().take(limit) {
            last = Some(rec.row);
            if !self.expired(&rec, now) {
                tasks.push(status_of(rec, view, false));
            }
        }
        let next_page_token = match last {
            Some(row) if more => paging::encode(&resource, "", &row.to_string(), "", now),
            _ => String::new(),
        };
        Ok(ListFailedTasksResponse {
            tasks,
            next_page_token,
        })
    }

    /// Schedules a finished (failed or succeeded) task again now, with fresh counters so its
    /// retry budget starts over; its attempt history is kept and numbering continues. Returns
    /// the task as the Cloud Tasks API now shows it, in `view`. Errors: FAILED_PRECONDITION
    /// while the task is still live, NOT_FOUND for a task not kept.
    pub async fn retry_task(&self, name: &str, view: i32) -> Result<Task, Status> {
        let name = TaskPath::parse(name)?;
        check_view(view, "responseView")?;
        let now = self.now();
        let rec = self.kept_record(&name, now).await?;
        if rec.state.is_live() {
            return Err(still_scheduled(&name));
        }
        let due = match self.store.rerun_task(&name, now).await {
            Ok(due) => due,
            Err(StoreError::TaskExists) => return Err(still_scheduled(&name)),
            Err(e) => return Err(map_store(e, Ctx::Task)),
        };
        self.hook
            .tasks_created(&name.queue, std::slice::from_ref(&due));
        Ok(apply_view(due.task, view))
    }
}

/// A record as the API shows it; `history` decides whether `attempts` is included.
fn status_of(rec: TaskRecord, view: i32, history: bool) -> TaskStatus {
    TaskStatus {
        // Deleted records never get here (kept_record, list_finished of Failed).
        state: RetainedState::of(rec.state).unwrap_or(RetainedState::Failed),
        finish_time: rec.finished_at.filter(|_| !rec.state.is_live()),
        attempts: history.then(|| rec.attempts.iter().map(AttemptStatus::from).collect()),
        task: apply_view(rec.task, view),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attempt_json_shape() {
        let a = AttemptStatus::from(&AttemptRecord {
            seq: 2,
            dispatch_time: 1_900_000_000_000_000,
            response_time: 1_900_000_000_012_345,
            http_status: Some(500),
            error: None,
        });
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"seq": 2, "dispatchTime": "2030-03-17T17:46:40Z",
                   "responseTime": "2030-03-17T17:46:40.012345Z", "httpStatus": 500,
                   "latencyMs": 12})
        );
        let none = AttemptStatus::from(&AttemptRecord {
            seq: 1,
            dispatch_time: 0,
            response_time: 0,
            http_status: None,
            error: Some("connection refused".into()),
        });
        let v = serde_json::to_value(&none).unwrap();
        assert_eq!(v["error"], "connection refused");
        assert!(v.get("httpStatus").is_none());
    }

    #[test]
    fn status_json_omits_what_is_absent() {
        let s = TaskStatus {
            task: Task::default(),
            state: RetainedState::Scheduled,
            finish_time: None,
            attempts: None,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "SCHEDULED");
        assert!(v.get("finishTime").is_none() && v.get("attempts").is_none());
        let page = ListFailedTasksResponse {
            tasks: Vec::new(),
            next_page_token: String::new(),
        };
        assert_eq!(serde_json::to_value(&page).unwrap(), json!({"tasks": []}));
    }
}
