//! Queue and task names as the CLI accepts them: a short ID (resolved with `--project` and
//! `--location`, or `--queue` for tasks) or a full `projects/…` resource name.
//!
//! The names are `stratus_types`' typed paths, parsed by the same code as the server's, so a
//! malformed name fails locally with the message the server would give.

use anyhow::{Result, anyhow, bail};
pub use stratus_types::{
    LocationPath as LocationName, QueuePath as QueueName, TaskPath as TaskName,
};

use super::LocationArgs;

/// The URL path segments of a resource name, after `/v2/`.
pub trait Segments {
    /// The segments, unescaped (the client percent-encodes each one).
    fn segments(&self) -> Vec<String>;
}

impl Segments for LocationName {
    fn segments(&self) -> Vec<String> {
        vec![
            "projects".into(),
            self.project.clone(),
            "locations".into(),
            self.location.clone(),
        ]
    }
}

impl Segments for QueueName {
    fn segments(&self) -> Vec<String> {
        let mut s = self.location.segments();
        s.extend(["queues".to_string(), self.queue.clone()]);
        s
    }
}

impl Segments for TaskName {
    fn segments(&self) -> Vec<String> {
        let mut s = self.queue.segments();
        s.extend(["tasks".to_string(), self.task.clone()]);
        s
    }
}

fn status(e: stratus_types::Status) -> anyhow::Error {
    anyhow!("{}", e.message)
}

/// The location named by `--project` and `--location`.
pub fn location_from_args(args: &LocationArgs) -> Result<LocationName> {
    LocationName::parse(
        &format!("projects/{}/locations/{}", args.project, args.location),
        "--project/--location",
    )
    .map_err(status)
}

/// Resolves `arg`: a full `projects/P/locations/L/queues/Q` name, or a short ID in the location
/// given by `loc`.
pub fn resolve_queue(arg: &str, loc: &LocationArgs) -> Result<QueueName> {
    if arg.starts_with("projects/") {
        return QueueName::parse(arg).map_err(status);
    }
    QueueName::parse(&location_from_args(loc)?.queue(arg).to_string()).map_err(status)
}

/// Resolves `arg`: a full `projects/…/queues/Q/tasks/T` name (then `--queue` is optional and
/// must agree), or a short ID in the queue given by `queue`.
pub fn resolve_task(arg: &str, queue: Option<&str>, loc: &LocationArgs) -> Result<TaskName> {
    if arg.starts_with("projects/") {
        let parsed = TaskName::parse(arg).map_err(status)?;
        if let Some(q) = queue {
            let given = resolve_queue(q, loc)?;
            if given.queue != parsed.queue.queue
                || (q.starts_with("projects/") && given.location != parsed.queue.location)
            {
                bail!("task {arg:?} is not in --queue {q:?}");
            }
        }
        return Ok(parsed);
    }
    let Some(q) = queue else {
        bail!("--queue is required unless TASK is a full projects/…/tasks/… name");
    };
    TaskName::parse(&resolve_queue(q, loc)?.task(arg).to_string()).map_err(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> LocationArgs {
        LocationArgs {
            project: "p".into(),
            location: "l".into(),
        }
    }

    #[test]
    fn short_and_full_queue_names() {
        let short = resolve_queue("q", &loc()).unwrap();
        assert_eq!(short.to_string(), "projects/p/locations/l/queues/q");
        let full = resolve_queue("projects/a/locations/b/queues/c", &loc()).unwrap();
        assert_eq!(full.to_string(), "projects/a/locations/b/queues/c");
        assert!(resolve_queue("projects/a/locations/b", &loc()).is_err());
        assert!(resolve_queue("a/b", &loc()).is_err());
        assert!(resolve_queue("", &loc()).is_err());
        let e = resolve_queue("bad_id", &loc()).unwrap_err().to_string();
        assert!(e.starts_with("Queue name must be formatted"), "{e}");
    }

    #[test]
    fn task_names() {
        let t = resolve_task("t1", Some("q"), &loc()).unwrap();
        assert_eq!(t.to_string(), "projects/p/locations/l/queues/q/tasks/t1");
        let full = "projects/a/locations/b/queues/c/tasks/t2";
        assert_eq!(resolve_task(full, None, &loc()).unwrap().to_string(), full);
        assert!(resolve_task(full, Some("c"), &loc()).is_ok());
        assert!(resolve_task(full, Some("other"), &loc()).is_err());
        assert!(resolve_task("t1", None, &loc()).is_err());
        assert!(resolve_task("not valid", Some("q"), &loc()).is_err());
        assert_eq!(
            resolve_task("segments", Some("q"), &loc())
                .unwrap()
                .segments(),
            [
                "projects",
                "p",
                "locations",
                "l",
                "queues",
                "q",
                "tasks",
                "segments"
            ]
        );
    }
}
