//! Typed Cloud Tasks resource names and their parsers.
//!
//! Names are parsed once at the edge; everything behind it takes these types.

use std::fmt;

use crate::code::Status;
use crate::messages;

/// `projects/{project}/locations/{location}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationPath {
    /// Project ID (`[A-Za-z0-9-:.]+`).
    pub project: String,
    /// Location ID (`[A-Za-z0-9-]+`).
    pub location: String,
}

/// `projects/{project}/locations/{location}/queues/{queue}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueuePath {
    /// The parent location.
    pub location: LocationPath,
    /// Queue ID (`[A-Za-z0-9-]{1,100}`).
    pub queue: String,
}

/// `projects/{project}/locations/{location}/queues/{queue}/tasks/{task}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskPath {
    /// The parent queue.
    pub queue: QueuePath,
    /// Task ID (`[A-Za-z0-9_-]{1,500}`).
    pub task: String,
}

/// Whether `s` is a valid project ID: letters, digits, `-`, `:` and `.`, at most 100 characters.
pub fn valid_project_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.'))
}

/// Whether `s` is a valid location ID: letters, digits and `-`, at most 100 characters.
pub fn valid_location_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `s` is a valid queue ID: `[A-Za-z0-9-]{1,100}`.
pub fn valid_queue_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `s` is a valid task ID: `[A-Za-z0-9_-]{1,500}`.
pub fn valid_task_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 500
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn location_parts(parts: &[&str]) -> Option<LocationPath> {
    match parts {
        ["projects", p, "locations", l] if valid_project_id(p) && valid_location_id(l) => {
            Some(LocationPath {
                project: (*p).to_string(),
                location: (*l).to_string(),
            })
        }
        _ => None,
    }
}

impl LocationPath {
    /// Parses a location name; `field` names the request field in the error.
    pub fn parse(s: &str, field: &str) -> Result<Self, Status> {
        let parts: Vec<&str> = s.split('/').collect();
        location_parts(&parts).ok_or_else(|| {
            Status::invalid(format!(
                "Invalid resource field value in the request. {field}: \"{s}\" must be formatted \"projects/<PROJECT_ID>/locations/<LOCATION_ID>\"."
            ))
        })
    }

    /// A queue under this location.
    pub fn queue(&self, id: &str) -> QueuePath {
        QueuePath {
            location: self.clone(),
            queue: id.to_string(),
        }
    }
}

impl QueuePath {
    /// Parses a queue name; a malformed one gets the real service's message and Help link.
    pub fn parse(s: &str) -> Result<Self, Status> {
        Self::try_parse(s).ok_or_else(Self::format_error)
    }

    /// Parses a queue name, `None` when malformed.
    pub fn try_parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() != 6 || parts[4] != "queues" || !valid_queue_id(parts[5]) {
            return None;
        }
        Some(QueuePath {
            location: location_parts(&parts[..4])?,
            queue: parts[5].to_string(),
        })
    }

    /// The INVALID_ARGUMENT answered for a malformed queue name.
    pub fn format_error() -> Status {
        Status::invalid(messages::QUEUE_NAME_FORMAT)
            .with_help(messages::QUEUE_NAME_HELP, messages::QUEUE_NAME_HELP_URL)
    }

    /// A task under this queue.
    pub fn task(&self, id: &str) -> TaskPath {
        TaskPath {
            queue: self.clone(),
            task: id.to_string(),
        }
    }
}

impl TaskPath {
    /// Parses a task name. A well-formed queue part with a bad task ID gets the real service's
    /// task-ID message; anything else gets a message naming the expected format.
    pub fn parse(s: &str) -> Result<Self, Status> {
        let Some((queue, id)) = s.rsplit_once("/tasks/") else {
            return Err(Self::format_error(s));
        };
        let queue = QueuePath::try_parse(queue).ok_or_else(|| Self::format_error(s))?;
        if !valid_task_id(id) {
            return Err(Self::id_error(id));
        }
        Ok(queue.task(id))
    }

    /// The INVALID_ARGUMENT answered for a bad task ID.
    pub fn id_error(id: &str) -> Status {
        Status::invalid(messages::task_id_invalid(id))
            .with_help(messages::TASK_ID_HELP, messages::TASK_ID_HELP_URL)
    }

    fn format_error(s: &str) -> Status {
        Status::invalid(format!(
            "Task name \"{s}\" must be formatted: \"projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>/tasks/<TASK_ID>\"."
        ))
        .with_help(messages::TASK_ID_HELP, messages::TASK_ID_HELP_URL)
    }
}

impl fmt::Display for LocationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "projects/{}/locations/{}", self.project, self.location)
    }
}

impl fmt::Display for QueuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/queues/{}", self.location, self.queue)
    }
}

impl fmt::Display for TaskPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/tasks/{}", self.queue, self.task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[test]
    fn parses_and_prints() {
        let t = TaskPath::parse("projects/my-p:x.y/locations/us-central1/queues/q-1/tasks/a_b-9")
            .unwrap();
        assert_eq!(t.queue.queue, "q-1");
        assert_eq!(t.task, "a_b-9");
        assert_eq!(
            t.to_string(),
            "projects/my-p:x.y/locations/us-central1/queues/q-1/tasks/a_b-9"
        );
    }

    #[test]
    fn rejects_bad_names() {
        assert!(QueuePath::parse("projects/p/locations/l/queues/bad_id").is_err());
        assert!(QueuePath::parse("projects/p/locations/l/queues/").is_err());
        assert!(
            QueuePath::parse(&format!(
                "projects/p/locations/l/queues/{}",
                "a".repeat(101)
            ))
            .is_err()
        );
        let e =
            TaskPath::parse("projects/p/locations/l/queues/q/tasks/not a valid id").unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(
            e.message
                .starts_with("Task ID \"not a valid id\" can contain only")
        );
        assert!(LocationPath::parse("projects/p/locations/l/x", "parent").is_err());
        assert!(
            TaskPath::parse(&format!(
                "projects/p/locations/l/queues/q/tasks/{}",
                "a".repeat(500)
            ))
            .is_ok()
        );
        assert!(
            TaskPath::parse(&format!(
                "projects/p/locations/l/queues/q/tasks/{}",
                "a".repeat(501)
            ))
            .is_err()
        );
    }
}
