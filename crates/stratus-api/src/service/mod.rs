//! The service layer: every Cloud Tasks RPC as an async method over proto messages.
//!
//! Split by resource: [`queues`], [`tasks`], [`batch`] (BatchCreate/BatchDelete and
//! Operations), [`misc`] (IAM, Locations, CMEK). Paging tokens live in [`paging`], task
//! validation in [`validate`].

mod batch;
mod misc;
pub mod paging;
mod queues;
mod tasks;
pub mod validate;

use std::sync::Arc;

use stratus_store::{Store, StoreError};
use stratus_types::time::Clock;
use stratus_types::{Code, Status, messages};

use crate::ServiceConfig;

/// The Cloud Tasks service over a store. Cheap to share behind an `Arc`.
pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cfg: ServiceConfig,
}

impl Service {
    /// A service over `store`, reading time from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, cfg: ServiceConfig) -> Self {
        Service { store, clock, cfg }
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
