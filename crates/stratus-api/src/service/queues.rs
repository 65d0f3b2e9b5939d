//! Queue RPCs: List, Get, Create, Update (upsert with field masks), Delete, Purge, Pause, Resume.

use stratus_types::proto::tasks::{
    CreateQueueRequest, DeleteQueueRequest, GetQueueRequest, ListQueuesRequest, ListQueuesResponse,
    PauseQueueRequest, PurgeQueueRequest, Queue, ResumeQueueRequest, UpdateQueueRequest,
    queue::State,
};
use stratus_types::queue::{QueueFilter, normalize_queue, validate_queue};
use stratus_types::{LocationPath, QueuePath, Status};

use super::validate::check_queue_target;
use super::{Ctx, Service, map_store, paging, required};

/// Largest ListQueues page.
pub const MAX_QUEUE_PAGE: usize = 9800;

/// Clears the output-only fields a client may echo back.
fn strip_output_only(q: &mut Queue) {
    q.state = 0;
    q.purge_time = None;
    if let Some(r) = q.rate_limits.as_mut() {
        r.max_burst_size = 0;
    }
}

impl Service {
    /// ListQueues.
    pub async fn list_queues(&self, req: ListQueuesRequest) -> Result<ListQueuesResponse, Status> {
        let parent = LocationPath::parse(&req.parent, "parent")?;
        let filter = QueueFilter::parse(&req.filter)?;
        if req.page_size < 0 {
            return Err(Status::invalid(format!(
                "page_size must not be negative; got {}.",
                req.page_size
            )));
        }
        let limit = match usize::try_from(req.page_size).unwrap_or(0) {
            0 => MAX_QUEUE_PAGE,
            n => n.min(MAX_QUEUE_PAGE),
        };
        let now = self.now();
        let resource = parent.to_string();
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(paging::decode(&req.page_token, &resource, &req.filter, now)?.0)
        };
        let page = self
            .store
            .list_queues(&parent, &filter, after.as_deref(), limit)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        Ok(ListQueuesResponse {
            queues: page.queues,
            next_page_token: page
                .next
                .map(|last| paging::encode(&resource, &req.filter, &last, "", now))
                .unwrap_or_default(),
        })
    }

    /// GetQueue.
    pub async fn get_queue(&self, req: GetQueueRequest) -> Result<Queue, Status> {
        let name = QueuePath::parse(&req.name)?;
        self.store
            .get_queue(&name)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))
    }

    /// CreateQueue.
    pub async fn create_queue(&self, req: CreateQueueRequest) -> Result<Queue, Status> {
        let parent = LocationPath::parse(&req.parent, "parent")?;
        let mut queue = req.queue.ok_or_else(|| required("queue"))?;
        let name = QueuePath::parse(&queue.name)?;
        if name.location != parent {
            return Err(Status::invalid(format!(
                "queue.name \"{}\" must be in the parent location \"{parent}\".",
                queue.name
            )));
        }
        validate_queue(&queue)?;
        check_queue_target(&queue, &name.location.project, &self.cfg.targets)?;
        strip_output_only(&mut queue);
        queue.name = name.to_string();
        let queue = normalize_queue(queue);
        let q = self
            .store
            .create_queue(queue, self.now(), self.cfg.windows)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        self.hook.queue_changed(&q);
        Ok(q)
    }

    /// UpdateQueue: an upsert; the mask names the fields to replace, none means all.
    pub async fn update_queue(&self, req: UpdateQueueRequest) -> Result<Queue, Status> {
        let input = req.queue.ok_or_else(|| required("queue"))?;
        if input.name.is_empty() {
            return Err(required("queue.name"));
        }
        let name = QueuePath::parse(&input.name)?;
        validate_queue(&input)?;
        check_queue_target(&input, &name.location.project, &self.cfg.targets)?;
        let paths = match &req.update_mask {
            Some(m) if !m.paths.is_empty() => m
                .paths
                .iter()
                .map(|p| mask_path(p))
                .collect::<Result<Vec<_>, _>>()?,
            _ => MUTABLE.iter().map(|s| s.to_string()).collect(),
        };
        let full_name = name.to_string();
        let update: stratus_store::QueueUpdate = Box::new(move |current: Option<Queue>| {
            let mut q = current.unwrap_or_else(|| Queue {
                name: full_name.clone(),
                state: State::Running as i32,
                ..Default::default()
            });
            for p in &paths {
                apply_path(&mut q, &input, p);
            }
            let q = normalize_queue(q);
            validate_queue(&q)?;
            Ok(q)
        });
        let q = self
            .store
            .update_queue(&name, update, self.now(), self.cfg.windows)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        self.hook.queue_changed(&q);
        Ok(q)
    }

    /// DeleteQueue.
    pub async fn delete_queue(&self, req: DeleteQueueRequest) -> Result<(), Status> {
        let name = QueuePath::parse(&req.name)?;
        self.store
            .delete_queue(&name, self.now())
            .await
            .map_err(|e| map_store(e, Ctx::DeleteQueue))?;
        self.hook.queue_deleted(&name);
        Ok(())
    }

    /// PurgeQueue.
    pub async fn purge_queue(&self, req: PurgeQueueRequest) -> Result<Queue, Status> {
        let name = QueuePath::parse(&req.name)?;
        let q = self
            .store
            .purge_queue(&name, self.now())
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        self.hook.queue_changed(&q);
        Ok(q)
    }

    /// PauseQueue.
    pub async fn pause_queue(&self, req: PauseQueueRequest) -> Result<Queue, Status> {
        self.set_state(&req.name, State::Paused).await
    }

    /// ResumeQueue (PAUSED or DISABLED become RUNNING).
    pub async fn resume_queue(&self, req: ResumeQueueRequest) -> Result<Queue, Status> {
        self.set_state(&req.name, State::Running).await
    }

    async fn set_state(&self, name: &str, state: State) -> Result<Queue, Status> {
        let name = QueuePath::parse(name)?;
        let q = self
            .store
            .set_queue_state(&name, state as i32)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        self.hook.queue_changed(&q);
        Ok(q)
    }
}

/// Mutable top-level fields (an empty mask replaces all of them).
const MUTABLE: &[&str] = &[
    "app_engine_routing_override",
    "http_target",
    "rate_limits",
    "retry_config",
    "stackdriver_logging_config",
];

/// Leaf paths accepted besides the top-level ones.
const LEAVES: &[&str] = &[
    "rate_limits.max_dispatches_per_second",
    "rate_limits.max_concurrent_dispatches",
    "retry_config.max_attempts",
    "retry_config.max_retry_duration",
    "retry_config.min_backoff",
    "retry_config.max_backoff",
    "retry_config.max_doublings",
    "stackdriver_logging_config.sampling_ratio",
    "http_target.uri_override",
    "http_target.http_method",
    "http_target.header_overrides",
    "http_target.oauth_token",
    "http_target.oidc_token",
];

/// Output-only or immutable paths: accepted and ignored.
const IGNORED: &[&str] = &["name", "state", "purge_time", "rate_limits.max_burst_size"];

fn snake(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len() + 4);
    for c in seg.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Normalises a mask path to snake_case and checks it is known.
fn mask_path(p: &str) -> Result<String, Status> {
    let norm = p.trim().split('.').map(snake).collect::<Vec<_>>().join(".");
    if MUTABLE.contains(&norm.as_str())
        || LEAVES.contains(&norm.as_str())
        || IGNORED.contains(&norm.as_str())
    {
        Ok(norm)
    } else {
        Err(Status::invalid(format!(
            "update_mask path \"{p}\" is not a field of Queue that can be updated."
        )))
    }
}

/// Copies the field at `path` from `src` into `dst`.
fn apply_path(dst: &mut Queue, src: &Queue, path: &str) {
    match path {
        "app_engine_routing_override" => {
            dst.app_engine_routing_override = src.app_engine_routing_override.clone()
        }
        "http_target" => dst.http_target = src.http_target.clone(),
        "rate_limits" => dst.rate_limits = src.rate_limits,
        "retry_config" => dst.retry_config = src.retry_config,
        "stackdriver_logging_config" | "stackdriver_logging_config.sampling_ratio" => {
            dst.stackdriver_logging_config = src.stackdriver_logging_config;
        }
        _ => {
            if let Some(leaf) = path.strip_prefix("rate_limits.") {
                let s = src.rate_limits.unwrap_or_default();
                let d = dst.rate_limits.get_or_insert_with(Default::default);
                match leaf {
                    "max_dispatches_per_second" => {
                        d.max_dispatches_per_second = s.max_dispatches_per_second
                    }
                    "max_concurrent_dispatches" => {
                        d.max_concurrent_dispatches = s.max_concurrent_dispatches
                    }
                    _ => {}
                }
            } else if let Some(leaf) = path.strip_prefix("retry_config.") {
                let s = src.retry_config.unwrap_or_default();
                let d = dst.retry_config.get_or_insert_with(Default::default);
                match leaf {
                    "max_attempts" => d.max_attempts = s.max_attempts,
                    "max_retry_duration" => d.max_retry_duration = s.max_retry_duration,
                    "min_backoff" => d.min_backoff = s.min_backoff,
                    "max_backoff" => d.max_backoff = s.max_backoff,
                    "max_doublings" => d.max_doublings = s.max_doublings,
                    _ => {}
                }
            } else if let Some(leaf) = path.strip_prefix("http_target.") {
                use stratus_types::proto::tasks::http_target::AuthorizationHeader as A;
                let s = src.http_target.clone().unwrap_or_default();
                let d = dst.http_target.get_or_insert_with(Default::default);
                match leaf {
                    "uri_override" => d.uri_override = s.uri_override,
                    "http_method" => d.http_method = s.http_method,
                    "header_overrides" => d.header_overrides = s.header_overrides,
                    "oauth_token" | "oidc_token" => {
                        let keep = matches!(
                            (leaf, &s.authorization_header),
                            ("oauth_token", Some(A::OauthToken(_)))
                                | ("oidc_token", Some(A::OidcToken(_)))
                        );
                        if keep || s.authorization_header.is_none() {
                            d.authorization_header = s.authorization_header;
                        }
                    }
                    _ => {}
                }
            }
            // IGNORED paths fall through.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_paths_in_both_casings() {
        assert_eq!(
            mask_path("rateLimits.maxDispatchesPerSecond").unwrap(),
            "rate_limits.max_dispatches_per_second"
        );
        assert_eq!(
            mask_path("rate_limits.max_dispatches_per_second").unwrap(),
            "rate_limits.max_dispatches_per_second"
        );
        assert!(mask_path("rateLimits.color").is_err());
    }
}
