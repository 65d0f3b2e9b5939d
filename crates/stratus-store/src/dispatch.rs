//! What the dispatcher reads from and writes to a store, and the one pure function that turns an
//! attempt's outcome into the task's next state (cloud-tasks-api.md §6.1–§6.3).
//!
//! Every backend applies [`apply_attempt`] inside the transaction that records the attempt, on
//! the row as it is stored at that moment, so two attempts of the same task (RunTask while a
//! dispatch is in flight) compose instead of overwriting each other's counters.

use stratus_types::proto::google::rpc;
use stratus_types::proto::tasks::{Attempt, RetryConfig, Task};
use stratus_types::retry;
use stratus_types::time::micros_to_ts;
use stratus_types::{Code, Micros};

use crate::TaskState;

/// Dispatch counters that the Cloud Tasks `Task` message has no field for, kept beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchMeta {
    /// Earlier attempts that got a non-5xx response (`X-CloudTasks-TaskExecutionCount`).
    pub execution_count: i32,
    /// HTTP status of the previous attempt (504 after a deadline timeout, 0 when no response
    /// came at all); `None` before the first attempt.
    pub previous_response: Option<u16>,
}

/// A live task as the dispatcher needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct DueTask {
    /// The store's identity of this task instance: never reused, even when the name is.
    pub row: i64,
    /// The task with its full request and counters.
    pub task: Task,
    /// schedule_time in µs.
    pub schedule_time: Micros,
    /// create_time in µs (precise; PurgeQueue compares against it).
    pub create_time: Micros,
    /// Counters beside the proto.
    pub meta: DispatchMeta,
}

impl DueTask {
    /// The short task ID (last segment of the name).
    pub fn task_id(&self) -> &str {
        self.task.name.rsplit('/').next().unwrap_or_default()
    }
}

/// How one attempt ended, as the dispatcher observed it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    /// The task instance ([`DueTask::row`]).
    pub row: i64,
    /// When the request was sent.
    pub dispatch_time: Micros,
    /// When the response arrived or the attempt gave up (deadline, connection error).
    pub response_time: Micros,
    /// The HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    /// Whether the attempt hit the dispatch deadline.
    pub timed_out: bool,
    /// What went wrong without a response (connection refused, invalid URL, deadline …).
    pub error: Option<String>,
    /// A `Retry-After` of the response, in µs from `response_time`.
    pub retry_after: Option<Micros>,
    /// The retry config in force: the task's when set, else the queue's (normalised).
    pub retry: RetryConfig,
    /// What the next schedule_time counts from: the attempt's end, or the RunTask call time.
    pub anchor: Micros,
    /// The queue lease epoch the attempt was started under (cluster mode). A store that keeps
    /// leases records the outcome only while this node still holds the queue's lease with this
    /// epoch, and otherwise answers `Unavailable` without writing; `None` (RunTask, or a
    /// single-node store) is not fenced.
    pub fence: Option<i64>,
}

impl AttemptOutcome {
    /// Whether the attempt succeeded (2xx).
    pub fn succeeded(&self) -> bool {
        matches!(self.http_status, Some(200..=299))
    }

    /// The value later attempts carry in `X-CloudTasks-TaskPreviousResponse`.
    pub fn previous_response(&self) -> u16 {
        match self.http_status {
            Some(s) => s,
            None if self.timed_out => 504,
            None => 0,
        }
    }
}

/// What happens to the task after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// 2xx: finished (kept as `Succeeded` for the retention window).
    Succeeded,
    /// Scheduled again at this time.
    Retry(Micros),
    /// Out of attempts: kept as `Failed` (the dead-letter list) for the retention window.
    Failed,
}

impl Decision {
    /// The stored state after this decision.
    pub fn state(self) -> TaskState {
        match self {
            Decision::Succeeded => TaskState::Succeeded,
            Decision::Retry(_) => TaskState::Scheduled,
            Decision::Failed => TaskState::Failed,
        }
    }
}

/// The result of recording an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// What became of the task.
    pub decision: Decision,
    /// The task as stored now (with the new counters and, on retry, schedule_time).
    pub task: DueTask,
}

/// One attempt in a task's history (Stratus' retention, beyond Cloud Tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// 1 for the first attempt ever made for this task instance.
    pub seq: i64,
    /// When the request was sent.
    pub dispatch_time: Micros,
    /// When the response came or the attempt gave up.
    pub response_time: Micros,
    /// The HTTP status, when a response came.
    pub http_status: Option<u16>,
    /// What went wrong without a response.
    pub error: Option<String>,
}

impl AttemptRecord {
    /// The record of an outcome, numbered `seq`.
    pub fn of(o: &AttemptOutcome, seq: i64) -> Self {
        AttemptRecord {
            seq,
            dispatch_time: o.dispatch_time,
            response_time: o.response_time,
            http_status: o.http_status,
            error: o.error.clone(),
        }
    }
}

/// A task in any state that is still kept: live, or finished inside its retention window.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// The task as last stored.
    pub task: Task,
    /// Its state.
    pub state: TaskState,
    /// When it finished, if it did.
    pub finished_at: Option<Micros>,
    /// Its attempts, oldest first (empty in list results).
    pub attempts: Vec<AttemptRecord>,
    /// The store's row (a cursor for paging finished tasks).
    pub row: i64,
}

/// The `google.rpc.Status` Cloud Tasks puts in `Attempt.response_status` for an HTTP status
/// (the usual HTTP-to-gRPC mapping), or for an attempt without a response.
pub fn response_status(o: &AttemptOutcome) -> rpc::Status {
    let (code, message) = match o.http_status {
        Some(s) => {
            // Specific statuses first; the ranges are the fallbacks for the rest of a class.
            #[allow(clippy::match_overlapping_arm)]
            let code = match s {
                200..=299 => Code::Ok,
                400 => Code::InvalidArgument,
                401 => Code::Unauthenticated,
                403 => Code::PermissionDenied,
                404 => Code::NotFound,
                409 => Code::Aborted,
                429 => Code::ResourceExhausted,
                499 => Code::Cancelled,
                501 => Code::Unimplemented,
                503 => Code::Unavailable,
                504 => Code::DeadlineExceeded,
                400..=499 => Code::FailedPrecondition,
                500..=599 => Code::Internal,
                _ => Code::Unknown,
            };
            let message = if code == Code::Ok {
                String::new()
            } else {
                format!("HTTP status {s}")
            };
            (code, message)
        }
        None if o.timed_out => (
            Code::DeadlineExceeded,
            "the target did not answer within the dispatch deadline".to_string(),
        ),
        None => (
            Code::Unavailable,
            o.error.clone().unwrap_or_else(|| "no response".to_string()),
        ),
    };
    rpc::Status {
        code: code.grpc(),
        message,
        details: Vec::new(),
    }
}

/// One more dispatch at `dispatch_time`: `dispatch_count`, `first_attempt` (once) and a
/// `last_attempt` without a response — the task as RunTask returns it (cloud-tasks-api.md
/// §2.1), and where [`apply_attempt`] starts.
pub fn mark_dispatched(task: &mut Task, dispatch_time: Micros) {
    task.dispatch_count += 1;
    let at = Some(micros_to_ts(dispatch_time));
    if task.first_attempt.is_none() {
        task.first_attempt = Some(Attempt {
            dispatch_time: at,
            ..Default::default()
        });
    }
    task.last_attempt = Some(Attempt {
        schedule_time: task.schedule_time,
        dispatch_time: at,
        response_time: None,
        response_status: None,
    });
}

/// Applies an attempt's outcome to the stored task and its counters and decides what comes
/// next: 2xx succeeds; otherwise the retry rules of §6.3 (stop when every set limit is
/// reached, else back off from `anchor`, raised to `Retry-After` on 429/503).
pub fn apply_attempt(task: &mut Task, meta: &mut DispatchMeta, o: &AttemptOutcome) -> Decision {
    mark_dispatched(task, o.dispatch_time);
    if o.http_status.is_some() {
        task.response_count += 1;
    }
    if let Some(last) = task.last_attempt.as_mut() {
        last.response_time = Some(micros_to_ts(o.response_time));
        last.response_status = Some(response_status(o));
    }
    if matches!(o.http_status, Some(s) if s < 500) {
        meta.execution_count += 1;
    }
    meta.previous_response = Some(o.previous_response());
    if o.succeeded() {
        return Decision::Succeeded;
    }
    let n = task.dispatch_count;
    let first = task
        .first_attempt
        .as_ref()
        .and_then(|a| a.dispatch_time.as_ref())
        .map_or(o.dispatch_time, stratus_types::time::ts_to_micros);
    if retry::exhausted(&o.retry, n, first, o.response_time) {
        return Decision::Failed;
    }
    let delay = retry::next_delay(&o.retry, n, o.previous_response(), o.retry_after);
    let next = o.anchor.saturating_add(delay);
    task.schedule_time = Some(micros_to_ts(next));
    Decision::Retry(next)
}

/// Resets a finished task for a re-run (Stratus' retry of a failed task): scheduled at `now`
/// with fresh counters, so the retry budget starts over; the attempt history is kept.
pub fn reset_for_rerun(task: &mut Task, meta: &mut DispatchMeta, now: Micros) {
    task.schedule_time = Some(micros_to_ts(now));
    task.dispatch_count = 0;
    task.response_count = 0;
    task.first_attempt = None;
    task.last_attempt = None;
    *meta = DispatchMeta::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_types::time::{SECOND, micros_to_duration};

    fn rc(attempts: i32, max_dur_s: i64) -> RetryConfig {
        RetryConfig {
            max_attempts: attempts,
            max_retry_duration: Some(micros_to_duration(max_dur_s * SECOND)),
            min_backoff: Some(micros_to_duration(10 * SECOND)),
            max_backoff: Some(micros_to_duration(300 * SECOND)),
            max_doublings: 3,
        }
    }

    fn outcome(at: Micros, status: Option<u16>, retry: RetryConfig) -> AttemptOutcome {
        AttemptOutcome {
            row: 1,
            dispatch_time: at,
            response_time: at + SECOND,
            http_status: status,
            timed_out: false,
            error: None,
            retry_after: None,
            retry,
            anchor: at + SECOND,
            fence: None,
        }
    }

    #[test]
    fn counters_and_gaps_follow_the_recorded_service() {
        let mut t = Task::default();
        let mut m = DispatchMeta::default();
        let mut at = 1_000 * SECOND;
        let mut gaps = Vec::new();
        for status in [503, 404, 429, 500, 302] {
            let d = apply_attempt(&mut t, &mut m, &outcome(at, Some(status), rc(-1, 0)));
            let Decision::Retry(next) = d else {
                panic!("{d:?}")
            };
            gaps.push((next - (at + SECOND)) / SECOND);
            at = next;
        }
        assert_eq!(gaps, [10, 20, 40, 80, 160]);
        // 503, 404, 429, 500, 302: execution counts 0, 0, 1, 2, 2, 3 on attempts 0–5.
        assert_eq!(m.execution_count, 3);
        assert_eq!(m.previous_response, Some(302));
        assert_eq!(t.dispatch_count, 5);
        assert_eq!(t.response_count, 5);
        let d = apply_attempt(&mut t, &mut m, &outcome(at, Some(200), rc(-1, 0)));
        assert_eq!(d, Decision::Succeeded);
        assert_eq!(
            t.first_attempt.unwrap().dispatch_time,
            Some(micros_to_ts(1_000 * SECOND))
        );
        assert_eq!(t.last_attempt.unwrap().response_status.unwrap().code, 0);
    }

    #[test]
    fn timeouts_count_as_no_response_with_504() {
        let mut t = Task::default();
        let mut m = DispatchMeta::default();
        let mut o = outcome(0, None, rc(-1, 0));
        o.timed_out = true;
        apply_attempt(&mut t, &mut m, &o);
        assert_eq!((t.dispatch_count, t.response_count), (1, 0));
        assert_eq!((m.execution_count, m.previous_response), (0, Some(504)));
        assert_eq!(
            t.last_attempt.unwrap().response_status.unwrap().code,
            Code::DeadlineExceeded.grpc()
        );
    }

    #[test]
    fn max_attempts_stops_after_exactly_that_many() {
        let mut t = Task::default();
        let mut m = DispatchMeta::default();
        let mut decisions = Vec::new();
        for i in 0..3 {
            decisions.push(apply_attempt(
                &mut t,
                &mut m,
                &outcome(i * 100 * SECOND, Some(500), rc(3, 0)),
            ));
        }
        assert!(matches!(decisions[0], Decision::Retry(_)));
        assert!(matches!(decisions[1], Decision::Retry(_)));
        assert_eq!(decisions[2], Decision::Failed);
    }

    #[test]
    fn both_limits_must_be_reached_when_both_are_set() {
        let mut t = Task::default();
        let mut m = DispatchMeta::default();
        // max_attempts 2, max_retry_duration 60 s: the 2nd attempt at +20 s is not yet old
        // enough, so it retries; an attempt at +70 s stops.
        apply_attempt(&mut t, &mut m, &outcome(0, Some(500), rc(2, 60)));
        let d = apply_attempt(&mut t, &mut m, &outcome(20 * SECOND, Some(500), rc(2, 60)));
        assert!(matches!(d, Decision::Retry(_)), "{d:?}");
        let d = apply_attempt(&mut t, &mut m, &outcome(70 * SECOND, Some(500), rc(2, 60)));
        assert_eq!(d, Decision::Failed);
    }

    #[test]
    fn retry_after_raises_the_delay_on_429_and_503_only() {
        for (status, want) in [(429, 120), (503, 120), (500, 10)] {
            let mut t = Task::default();
            let mut m = DispatchMeta::default();
            let mut o = outcome(0, Some(status), rc(-1, 0));
            o.retry_after = Some(120 * SECOND);
            let Decision::Retry(next) = apply_attempt(&mut t, &mut m, &o) else {
                panic!()
            };
            assert_eq!((next - o.anchor) / SECOND, want, "status {status}");
        }
    }
}
