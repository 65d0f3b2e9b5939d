//! What each queue did over the last minute: the rates the dashboard and the queue statistics
//! call show (docs/dashboard.md).
//!
//! The counters of [`QueueMetrics`] only grow; a rate is the growth between two readings. A
//! background task calls [`Registry::sample`] every [`SAMPLE_EVERY`]; each queue keeps the
//! readings of the last [`WINDOW`], and [`Registry::windows`] subtracts the oldest from the
//! counters as they are now. The result states the span it covers ([`QueueWindow::span_ms`]),
//! so a rate computed from it is right even just after start, when less than a minute is
//! known.
//!
//! In a cluster, each node counts only what it did itself (a queue is dispatched by one node
//! at a time, but created into through any). Nodes publish their windows in the store
//! ([`encode`]); the reader adds them up ([`merge`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::{OutcomeClass, QueueMetrics, Registry, lock};

/// How far back a window reaches.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often [`Registry::sample`] should run.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Counts of one queue: since start ([`Totals::of`]) or over a window (a difference).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tasks created (committed) through the node's API.
    pub creates: u64,
    /// Attempts started.
    pub dispatches: u64,
    /// Attempts answered with a 2xx.
    pub succeeded: u64,
    /// Attempts that ended any other way (non-2xx, timeout, no answer).
    pub failed: u64,
    /// Failed attempts whose task was scheduled again.
    pub retries: u64,
    /// Failed attempts that left their task failed for good.
    pub permanent_failures: u64,
}

impl Totals {
    /// The counters of `q` as they are now.
    pub fn of(q: &QueueMetrics) -> Totals {
        let ended: u64 = OutcomeClass::ALL.iter().map(|c| q.outcome(*c).get()).sum();
        let succeeded = q.outcome(OutcomeClass::S2xx).get();
        Totals {
            creates: q.creates.get(),
            dispatches: q.dispatches.get(),
            succeeded,
            failed: ended.saturating_sub(succeeded),
            retries: q.retries.get(),
            permanent_failures: q.permanent_failures.get(),
        }
    }

    fn fields(&self) -> [u64; 6] {
        [
            self.creates,
            self.dispatches,
            self.succeeded,
            self.failed,
            self.retries,
            self.permanent_failures,
        ]
    }

    fn from_fields(f: [u64; 6]) -> Totals {
        Totals {
            creates: f[0],
            dispatches: f[1],
            succeeded: f[2],
            failed: f[3],
            retries: f[4],
            permanent_failures: f[5],
        }
    }

    fn zip(self, other: Totals, op: fn(u64, u64) -> u64) -> Totals {
        let (a, b) = (self.fields(), other.fields());
        Totals::from_fields(std::array::from_fn(|i| op(a[i], b[i])))
    }

    /// True when every count is zero.
    pub fn is_zero(&self) -> bool {
        self.fields().iter().all(|v| *v == 0)
    }
}

/// One queue's activity on one node over the span it states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueWindow {
    /// Full queue name.
    pub queue: String,
    /// How long the counts were gathered over, in milliseconds: [`WINDOW`] once the node has
    /// known the queue that long, less before.
    pub span_ms: u64,
    /// What happened during the span.
    pub counts: Totals,
    /// Attempts in flight now.
    pub in_flight: i64,
}

/// The readings kept of one queue: (when, counters then), oldest first.
pub(crate) type Readings = VecDeque<(Instant, Totals)>;

impl Registry {
    /// Takes one reading of every queue's counters and forgets readings older than
    /// [`WINDOW`]. Run every [`SAMPLE_EVERY`]; not on any hot path (a read lock on the queue
    /// map, and each queue's readings, which only the readers of windows share).
    pub fn sample(&self) {
        self.sample_at(Instant::now());
    }

    fn sample_at(&self, now: Instant) {
        for q in crate::read(&self.queues).values() {
            let mut ring = lock(&q.readings);
            ring.push_back((now, Totals::of(q)));
            while ring
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
            {
                ring.pop_front();
            }
        }
    }

    /// The last minute of every queue whose name starts with `prefix` (`""` for all) that did
    /// anything in it or has attempts in flight.
    pub fn windows(&self, prefix: &str) -> Vec<QueueWindow> {
        self.windows_at(prefix, Instant::now())
    }

    fn windows_at(&self, prefix: &str, now: Instant) -> Vec<QueueWindow> {
        let queues: Vec<(String, std::sync::Arc<QueueMetrics>)> = crate::read(&self.queues)
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, q)| (k.clone(), q.clone()))
            .collect();
        let mut out = Vec::new();
        for (name, q) in queues {
            let current = Totals::of(&q);
            // The queue's birth (all zeros) is the base while it is younger than the window
            // or no reading of it is in the window; otherwise the oldest reading in the window.
            let oldest = lock(&q.readings)
                .iter()
                .find(|(at, _)| now.duration_since(*at) <= WINDOW)
                .copied();
            let (since, base) = match oldest {
                Some(s) if now.duration_since(q.born) > WINDOW => s,
                _ => (q.born, Totals::default()),
            };
            let counts = current.zip(base, u64::saturating_sub);
            let in_flight = q.in_flight.get();
            if counts.is_zero() && in_flight == 0 {
                continue;
            }
            out.push(QueueWindow {
                queue: name,
                span_ms: u64::try_from(now.duration_since(since).as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
                counts,
                in_flight,
            });
        }
        out
    }
}

/// Windows as text, one queue per line: the name, the span, the six counts and the attempts in
/// flight, separated by tabs (queue names never hold tabs or line breaks).
pub fn encode(windows: &[QueueWindow]) -> String {
    let mut out = String::new();
    for w in windows {
        let _ = write!(out, "{}\t{}", w.queue, w.span_ms);
        for v in w.counts.fields() {
            let _ = write!(out, "\t{v}");
        }
        let _ = writeln!(out, "\t{}", w.in_flight);
    }
    out
}

/// The windows of [`encode`]'s text; a line that does not read is skipped.
pub fn decode(text: &str) -> Vec<QueueWindow> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split('\t');
            let queue = parts.next()?.to_string();
            let span_ms = parts.next()?.parse().ok()?;
            let mut f = [0u64; 6];
            for v in &mut f {
                *v = parts.next()?.parse().ok()?;
            }
            let in_flight = parts.next()?.parse().ok()?;
            if queue.is_empty() || parts.next().is_some() {
                return None;
            }
            Some(QueueWindow {
                queue,
                span_ms,
                counts: Totals::from_fields(f),
                in_flight,
            })
        })
        .collect()
}

/// One queue's last minute over every node that reported it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    /// The counts, added up.
    pub counts: Totals,
    /// The longest span of the nodes' windows, in milliseconds.
    pub span_ms: u64,
    /// Tasks created per second (each node's count over its own span, added up).
    pub create_rate: f64,
    /// Attempts started per second, likewise.
    pub dispatch_rate: f64,
    /// Attempts in flight, added up.
    pub in_flight: i64,
    /// How many nodes reported the queue.
    pub nodes: u32,
}

/// Adds up the windows of several nodes (or one) per queue.
pub fn merge(windows: impl IntoIterator<Item = QueueWindow>) -> BTreeMap<String, Merged> {
    let mut out: BTreeMap<String, Merged> = BTreeMap::new();
    for w in windows {
        let secs = w.span_ms.max(1) as f64 / 1000.0;
        let m = out.entry(w.queue).or_default();
        m.counts = m.counts.zip(w.counts, u64::saturating_add);
        m.span_ms = m.span_ms.max(w.span_ms);
        m.create_rate += w.counts.creates as f64 / secs;
        m.dispatch_rate += w.counts.dispatches as f64 / secs;
        m.in_flight += w.in_flight;
        m.nodes += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "projects/p/locations/l/queues/q";

    #[test]
    fn a_young_queue_counts_from_its_birth() {
        let r = Registry::default();
        let q = r.queue(Q);
        q.creates.add(10);
        q.dispatches.add(4);
        q.outcome(OutcomeClass::S2xx).add(3);
        q.outcome(OutcomeClass::S5xx).inc();
        let now = q.born + Duration::from_secs(2);
        r.sample_at(q.born + Duration::from_secs(1));
        let w = r.windows_at("projects/p/", now);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].span_ms, 2000);
        assert_eq!(w[0].counts.creates, 10);
        assert_eq!(w[0].counts.succeeded, 3);
        assert_eq!(w[0].counts.failed, 1);
        assert!(r.windows_at("projects/other/", now).is_empty());
    }

    #[test]
    fn an_old_queue_counts_the_last_minute_only() {
        let r = Registry::default();
        let q = r.queue(Q);
        let t0 = q.born;
        q.creates.add(100); // before the window
        let mut t = t0 + Duration::from_secs(5);
        while t <= t0 + Duration::from_secs(120) {
            r.sample_at(t);
            t += SAMPLE_EVERY;
        }
        // The last reading is at 120 s; 6 more creates happen after it.
        q.creates.add(6);
        q.dispatches.add(3);
        let w = r.windows_at("", t0 + Duration::from_secs(121));
        assert_eq!(w.len(), 1);
        // The oldest reading kept is at 65 s (56 s before now), taken after the first 100.
        assert_eq!(w[0].span_ms, 56_000);
        assert_eq!(w[0].counts.creates, 6);
        assert_eq!(w[0].counts.dispatches, 3);
    }

    #[test]
    fn idle_queues_are_left_out() {
        let r = Registry::default();
        let q = r.queue(Q);
        assert!(r.windows("").is_empty());
        q.in_flight.set(2);
        assert_eq!(r.windows("")[0].in_flight, 2);
    }

    #[test]
    fn encode_decode_merge() {
        let a = QueueWindow {
            queue: Q.into(),
            span_ms: 60_000,
            counts: Totals {
                creates: 60,
                dispatches: 120,
                succeeded: 100,
                failed: 20,
                retries: 19,
                permanent_failures: 1,
            },
            in_flight: 3,
        };
        let b = QueueWindow {
            span_ms: 30_000,
            counts: Totals {
                creates: 30,
                ..Totals::default()
            },
            in_flight: 0,
            ..a.clone()
        };
        let text = encode(&[a.clone(), b.clone()]);
        assert_eq!(decode(&text), vec![a.clone(), b]);
        assert_eq!(decode("bad line\nq\t1\t2\n"), vec![]);
        let m = merge(decode(&text));
        let m = &m[Q];
        assert_eq!(m.counts.creates, 90);
        assert_eq!(m.span_ms, 60_000);
        assert!((m.create_rate - 2.0).abs() < 1e-9, "{}", m.create_rate);
        assert!((m.dispatch_rate - 2.0).abs() < 1e-9);
        assert_eq!((m.in_flight, m.nodes), (3, 2));
    }
}
