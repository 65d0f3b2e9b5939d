//! Time for the engine: reading it ([`Clock`]) and sleeping until a point of it ([`Timer`]).
//!
//! Production runs on [`SystemTimer`] (wall clock, Tokio sleeps). Tests run on
//! [`ManualClock`], a virtual clock that only moves when the test moves it: retry schedules of
//! minutes, rate limits and dispatch deadlines are checked exactly, without real waiting. The
//! engine never reads time any other way.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use stratus_types::Micros;
use stratus_types::time::{Clock, SystemClock};
use tokio::sync::watch;

/// A boxed sleep.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A clock that can also sleep until one of its instants.
pub trait Timer: Clock {
    /// Completes at or after `at` (at once when `at` has passed).
    fn sleep_until(&self, at: Micros) -> Sleep;
}

/// The wall clock with Tokio timers. A wall-clock jump is noticed at the next wake-up at the
/// latest; long sleeps are cut into slices of at most a minute so a jump back in time cannot
/// delay dispatch by more than that.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTimer;

impl Clock for SystemTimer {
    fn now(&self) -> Micros {
        SystemClock.now()
    }
}

impl Timer for SystemTimer {
    fn sleep_until(&self, at: Micros) -> Sleep {
        Box::pin(async move {
            const SLICE: Micros = 60_000_000;
            loop {
                let now = SystemClock.now();
                if now >= at {
                    return;
                }
                let wait = (at - now).min(SLICE);
                tokio::time::sleep(std::time::Duration::from_micros(wait.unsigned_abs())).await;
            }
        })
    }
}

/// A virtual clock for tests: time stands still until [`ManualClock::advance_to`] moves it.
/// It knows every pending sleep, so a test can jump straight to the next instant anything
/// waits for ([`ManualClock::next_deadline`]). Clones share one clock.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: AtomicI64,
    tx: watch::Sender<Micros>,
    sleepers: Mutex<BTreeMap<(Micros, u64), ()>>,
    ids: AtomicU64,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Micros) -> Self {
        ManualClock {
            inner: Arc::new(ManualInner {
                now: AtomicI64::new(start),
                tx: watch::Sender::new(start),
                sleepers: Mutex::new(BTreeMap::new()),
                ids: AtomicU64::new(0),
            }),
        }
    }

    /// Moves time forward to `t` (never backwards) and wakes the sleeps that are due.
    pub fn advance_to(&self, t: Micros) {
        let t = self.inner.now.fetch_max(t, Ordering::SeqCst).max(t);
        self.inner.tx.send_replace(t);
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Micros) {
        self.advance_to(self.now().saturating_add(d));
    }

    /// The earliest instant a pending sleep waits for, if any.
    pub fn next_deadline(&self) -> Option<Micros> {
        let sleepers = self
            .inner
            .sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        sleepers.keys().next().map(|(t, _)| *t)
    }
}

struct Registration<'a> {
    clock: &'a ManualInner,
    key: (Micros, u64),
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut sleepers = self
            .clock
            .sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        sleepers.remove(&self.key);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        self.inner.now.load(Ordering::SeqCst)
    }
}

impl Timer for ManualClock {
    fn sleep_until(&self, at: Micros) -> Sleep {
        let clock = self.inner.clone();
        Box::pin(async move {
            let mut rx = clock.tx.subscribe();
            if *rx.borrow_and_update() >= at {
                return;
            }
            let key = (at, clock.ids.fetch_add(1, Ordering::Relaxed));
            clock
                .sleepers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, ());
            let _registered = Registration { clock: &clock, key };
            loop {
                if *rx.borrow_and_update() >= at {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleeps_wake_only_when_time_is_moved() {
        let clock = ManualClock::new(100);
        let c = clock.clone();
        let task = tokio::spawn(async move { c.sleep_until(150).await });
        for _ in 0..50 {
            if clock.next_deadline().is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(clock.next_deadline(), Some(150));
        clock.advance_to(149);
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        clock.advance_to(150);
        task.await.unwrap();
        assert_eq!(clock.next_deadline(), None);
        // Past instants complete at once.
        clock.sleep_until(10).await;
        clock.advance_to(120);
        assert_eq!(clock.now(), 150, "time never goes back");
    }
}
