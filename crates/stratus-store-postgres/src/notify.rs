//! The NOTIFY payloads nodes send each other (one channel per schema, see [`channel`]).
//!
//! Every write that another node's dispatcher must learn of sends a notification inside its
//! own transaction, so it is delivered exactly when (and only if) the write commits. A payload
//! is one line of text, at most [`MAX_PAYLOAD`] bytes (PostgreSQL's limit is 8000):
//!
//! | kind | payload | meaning |
//! |---|---|---|
//! | `c` | `c <node> <queue> <row>,<row>,…` | tasks created (store rows) |
//! | `d` | `d <node> <queue> <id>,<id>,…` | tasks deleted (task IDs) |
//! | `q` | `q <node> <queue>` | queue created or changed (update, pause, resume, purge) |
//! | `x` | `x <node> <queue>` | queue deleted |
//!
//! Node IDs and queue names contain no spaces; task IDs contain no commas. Long lists are split
//! over several notifications ([`created`], [`deleted`]).

use stratus_store::cluster::ClusterEvent;

/// The longest payload sent (PostgreSQL refuses 8000 bytes and more).
pub const MAX_PAYLOAD: usize = 7_900;

/// The notification channel of the store in `schema`.
pub fn channel(schema: &str) -> String {
    format!("{schema}_events")
}

/// Payloads announcing created task rows of `queue`.
pub fn created(node: &str, queue: &str, rows: &[i64]) -> Vec<String> {
    list('c', node, queue, rows.iter().map(|r| r.to_string()))
}

/// Payloads announcing deleted task IDs of `queue`.
pub fn deleted(node: &str, queue: &str, ids: &[String]) -> Vec<String> {
    list('d', node, queue, ids.iter().cloned())
}

/// The payload announcing that `queue` was created or changed.
pub fn queue_changed(node: &str, queue: &str) -> String {
    format!("q {node} {queue}")
}

/// The payload announcing that `queue` was deleted.
pub fn queue_deleted(node: &str, queue: &str) -> String {
    format!("x {node} {queue}")
}

fn list(kind: char, node: &str, queue: &str, items: impl Iterator<Item = String>) -> Vec<String> {
    let head = format!("{kind} {node} {queue} ");
    let mut out = Vec::new();
    let mut cur = head.clone();
    for item in items {
        if cur.len() > head.len() && cur.len() + 1 + item.len() > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut cur, head.clone()));
        }
        if cur.len() > head.len() {
            cur.push(',');
        }
        cur.push_str(&item);
    }
    if cur.len() > head.len() {
        out.push(cur);
    }
    out
}

/// A payload read back: the sending node and the event. `None` for a malformed payload.
pub fn parse(payload: &str) -> Option<(String, ClusterEvent)> {
    let mut parts = payload.splitn(4, ' ');
    let kind = parts.next()?;
    let node = parts.next()?.to_string();
    let queue = parts.next()?.to_string();
    let rest = parts.next().unwrap_or("");
    let event = match kind {
        "c" => ClusterEvent::TasksCreated {
            queue,
            rows: rest
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
        },
        "d" => ClusterEvent::TasksDeleted {
            queue,
            ids: rest
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        },
        "q" => ClusterEvent::QueueChanged { queue },
        "x" => ClusterEvent::QueueDeleted { queue },
        _ => return None,
    };
    Some((node, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_split_under_the_limit() {
        let q = "projects/p/locations/l/queues/q";
        let rows: Vec<i64> = (1_000_000_000..1_000_002_000).collect();
        let payloads = created("n1", q, &rows);
        assert!(payloads.len() > 1);
        let mut back = Vec::new();
        for p in &payloads {
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            let (node, ev) = parse(p).unwrap();
            assert_eq!(node, "n1");
            let ClusterEvent::TasksCreated { queue, rows } = ev else {
                panic!("{ev:?}")
            };
            assert_eq!(queue, q);
            back.extend(rows);
        }
        assert_eq!(back, rows);
        let ids = vec!["a".to_string(), "b-2".to_string()];
        assert_eq!(
            parse(&deleted("n2", q, &ids)[0]),
            Some((
                "n2".into(),
                ClusterEvent::TasksDeleted {
                    queue: q.into(),
                    ids
                }
            ))
        );
        assert_eq!(
            parse(&queue_changed("n", q)),
            Some(("n".into(), ClusterEvent::QueueChanged { queue: q.into() }))
        );
        assert_eq!(
            parse(&queue_deleted("n", q)),
            Some(("n".into(), ClusterEvent::QueueDeleted { queue: q.into() }))
        );
        assert!(created("n", q, &[]).is_empty());
        assert_eq!(parse("z n q"), None);
        assert_eq!(parse("c n q 1,x"), None);
    }
}
