//! Queue and task names as the CLI accepts them: a short ID (resolved with `--project` and
//! `--location`, or `--queue` for tasks) or a full `projects/…` resource name.
//!
//! The CLI checks only the shape; the server validates the characters and answers with the
//! same INVALID_ARGUMENT texts every client sees.

use std::fmt;

use anyhow::{Result, bail};

use super::LocationArgs;

/// `projects/{project}/locations/{location}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationName {
    /// Project ID.
    pub project: String,
    /// Location ID.
    pub location: String,
}

/// `projects/{project}/locations/{location}/queues/{queue}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueName {
    /// The parent location.
    pub parent: LocationName,
    /// Queue ID.
    pub queue: String,
}

/// `projects/{project}/locations/{location}/queues/{queue}/tasks/{task}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskName {
    /// The parent queue.
    pub queue: QueueName,
    /// Task ID.
    pub task: String,
}

/// Rejects empty IDs and IDs with a `/`, which would silently address another resource.
fn check_id(kind: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        bail!("{kind} ID must not be empty");
    }
    if id.contains('/') {
        bail!(
            "invalid {kind} name {id:?}: give a short ID or a full projects/P/locations/L/… name"
        );
    }
    Ok(())
}

impl LocationName {
    /// The location named by `--project` and `--location`.
    pub fn from_args(args: &LocationArgs) -> Result<Self> {
        check_id("project", &args.project)?;
        check_id("location", &args.location)?;
        Ok(LocationName {
            project: args.project.clone(),
            location: args.location.clone(),
        })
    }

    /// The URL path segments after `/v2/`.
    pub fn segments(&self) -> Vec<String> {
        vec![
            "projects".into(),
            self.project.clone(),
            "locations".into(),
            self.location.clone(),
        ]
    }
}

impl QueueName {
    /// Resolves `arg`: a full `projects/P/locations/L/queues/Q` name, or a short ID in the
    /// location given by `loc`.
    pub fn resolve(arg: &str, loc: &LocationArgs) -> Result<Self> {
        if arg.starts_with("projects/") {
            let parts: Vec<&str> = arg.split('/').collect();
            return match parts.as_slice() {
                ["projects", p, "locations", l, "queues", q]
                    if !p.is_empty() && !l.is_empty() && !q.is_empty() =>
                {
                    Ok(QueueName {
                        parent: LocationName {
                            project: (*p).to_string(),
                            location: (*l).to_string(),
                        },
                        queue: (*q).to_string(),
                    })
                }
                _ => bail!(
                    "invalid queue name {arg:?}: expected projects/PROJECT/locations/LOCATION/queues/QUEUE"
                ),
            };
        }
        check_id("queue", arg)?;
        Ok(QueueName {
            parent: LocationName::from_args(loc)?,
            queue: arg.to_string(),
        })
    }

    /// The URL path segments after `/v2/`.
    pub fn segments(&self) -> Vec<String> {
        let mut s = self.parent.segments();
        s.extend(["queues".to_string(), self.queue.clone()]);
        s
    }
}

impl TaskName {
    /// Resolves `arg`: a full `projects/…/queues/Q/tasks/T` name (then `--queue` is optional
    /// and must agree), or a short ID in the queue given by `queue`.
    pub fn resolve(arg: &str, queue: Option<&str>, loc: &LocationArgs) -> Result<Self> {
        if arg.starts_with("projects/") {
            let Some((queue_part, task)) = arg.rsplit_once("/tasks/") else {
                bail!(
                    "invalid task name {arg:?}: expected projects/P/locations/L/queues/Q/tasks/TASK"
                );
            };
            let parsed = QueueName::resolve(queue_part, loc)?;
            check_id("task", task)?;
            if let Some(q) = queue {
                let given = QueueName::resolve(q, loc)?;
                if given.queue != parsed.queue
                    || (q.starts_with("projects/") && given.parent != parsed.parent)
                {
                    bail!("task {arg:?} is not in --queue {q:?}");
                }
            }
            return Ok(TaskName {
                queue: parsed,
                task: task.to_string(),
            });
        }
        let Some(q) = queue else {
            bail!("--queue is required unless TASK is a full projects/…/tasks/… name");
        };
        check_id("task", arg)?;
        Ok(TaskName {
            queue: QueueName::resolve(q, loc)?,
            task: arg.to_string(),
        })
    }

    /// The URL path segments after `/v2/`.
    pub fn segments(&self) -> Vec<String> {
        let mut s = self.queue.segments();
        s.extend(["tasks".to_string(), self.task.clone()]);
        s
    }
}

impl fmt::Display for LocationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "projects/{}/locations/{}", self.project, self.location)
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/queues/{}", self.parent, self.queue)
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/tasks/{}", self.queue, self.task)
    }
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
        let short = QueueName::resolve("q", &loc()).unwrap();
        assert_eq!(short.to_string(), "projects/p/locations/l/queues/q");
        let full = QueueName::resolve("projects/a/locations/b/queues/c", &loc()).unwrap();
        assert_eq!(full.to_string(), "projects/a/locations/b/queues/c");
        assert!(QueueName::resolve("projects/a/locations/b", &loc()).is_err());
        assert!(QueueName::resolve("a/b", &loc()).is_err());
        assert!(QueueName::resolve("", &loc()).is_err());
    }

    #[test]
    fn task_names() {
        let t = TaskName::resolve("t1", Some("q"), &loc()).unwrap();
        assert_eq!(t.to_string(), "projects/p/locations/l/queues/q/tasks/t1");
        let full = "projects/a/locations/b/queues/c/tasks/t2";
        assert_eq!(
            TaskName::resolve(full, None, &loc()).unwrap().to_string(),
            full
        );
        assert!(TaskName::resolve(full, Some("c"), &loc()).is_ok());
        assert!(TaskName::resolve(full, Some("other"), &loc()).is_err());
        assert!(TaskName::resolve("t1", None, &loc()).is_err());
    }
}
