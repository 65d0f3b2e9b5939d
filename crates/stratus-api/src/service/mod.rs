//! The service layer: every Cloud Tasks RPC as an async method over proto messages.
//!
//! Split by resource: [`queues`], [`tasks`], [`batch`] (BatchCreate/BatchDelete and
//! Operations), [`misc`] (IAM, Locations, CMEK). Paging tokens live in [`paging`], task
//! validation in [`validate`].

mod batch;
mod misc;
pub mod paging;
mod queues;
pub mod retention;
pub mod stats;
mod tasks;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use stratus_store::hook::{DispatchHook, NoDispatch};
use stratus_store::{Store, StoreError};
use stratus_types::time::Clock;
use stratus_types::{Code, Status, messages};

use crate::ServiceConfig;
use crate::auth::Auth;

/// The Cloud Tasks service over a store. Cheap to share behind an `Arc`.
pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cfg: ServiceConfig,
    hook: Arc<dyn DispatchHook>,
    /// Who may call; open (everything allowed) unless [`Service::with_auth`] sets tokens.
    auth: Arc<Auth>,
    /// Last generated task ID; see [`Service::new_task_id`].
    last_id: AtomicU64,
}

impl Service {
    /// A service over `store`, reading time from `clock`, without a dispatcher (RunTask is
    /// refused); see [`Service::with_dispatch`].
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, cfg: ServiceConfig) -> Self {
        Service {
            store,
            auth: Arc::new(Auth::open(clock.clone())),
            clock,
            cfg,
            hook: Arc::new(NoDispatch),
            last_id: AtomicU64::new(0),
        }
    }

    /// The same service telling `hook` (the dispatcher) about every committed change.
    pub fn with_dispatch(mut self, hook: Arc<dyn DispatchHook>) -> Self {
        self.hook = hook;
        self
    }

    /// The same service authenticating callers with `auth` (see [`crate::auth`]).
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = auth;
        self
    }

    /// The authenticator the transports ask about every call.
    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    /// The settings in force.
    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    /// The store behind the service.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> stratus_types::Micros {
        self.clock.now()
    }

    /// A new task ID: `now_µs << 12` made strictly increasing within the process, printed as a
    /// 19-digit decimal like the real service's IDs. Ascending IDs keep inserts into the
    /// store's name index at its right edge (random IDs measured at half the create rate).
    fn new_task_id(&self, now: stratus_types::Micros) -> u64 {
        let base = u64::try_from(now).unwrap_or(0) << 12;
        let mut last = self.last_id.load(Ordering::Relaxed);
        loop {
            let next = base.max(last + 1);
            match self.last_id.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

/// Which RPC family a store error is reported for: the same store outcome reads differently
/// per RPC on the real service (e.g. a missing queue is "Requested entity was not found." for
/// DeleteQueue but the longer queue text for GetQueue).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ctx {
    /// Get/Pause/Resume/Purge queue, ListTasks, CreateTask, IAM.
    Queue,
    /// DeleteQueue.
    DeleteQueue,
    /// Get/Delete/Run task.
    Task,
}

pub(crate) fn map_store(e: StoreError, ctx: Ctx) -> Status {
    match e {
        StoreError::QueueNotFound => match ctx {
            Ctx::Queue => Status::not_found(messages::QUEUE_NOT_FOUND),
            Ctx::DeleteQueue | Ctx::Task => Status::not_found(messages::ENTITY_NOT_FOUND),
        },
        StoreError::QueueExists => Status::new(Code::AlreadyExists, messages::QUEUE_ALREADY_EXISTS),
        StoreError::QueueRecentlyDeleted => {
            Status::new(Code::FailedPrecondition, messages::QUEUE_RECENTLY_DELETED)
        }
        StoreError::TaskNotFound => Status::not_found(messages::ENTITY_NOT_FOUND),
        StoreError::TaskRecentlyExisted => match ctx {
            Ctx::Task => Status::not_found(messages::TASK_GONE),
            _ => Status::new(Code::AlreadyExists, messages::TASK_RECENTLY_EXISTED),
        },
        StoreError::TaskExists => Status::new(Code::AlreadyExists, messages::TASK_ALREADY_EXISTS),
        StoreError::Rejected(s) => s,
        StoreError::Unavailable(m) => {
            tracing::warn!(error = %m, "store unavailable");
            Status::unavailable("The service is currently unavailable; retry the request.")
        }
        StoreError::Internal(m) => {
            tracing::error!(error = %m, "store failure");
            Status::internal("Internal error in the task store.")
        }
    }
}

/// A required sub-message or field was absent.
pub(crate) fn required(field: &str) -> Status {
    Status::invalid(format!("{field} is required."))
}
