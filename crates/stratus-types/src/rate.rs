//! The per-queue token bucket of cloud-tasks-api.md §6.4: capacity `max_burst_size`,
//! continuous refill at `max_dispatches_per_second`, one token per dispatch. Time is passed in,
//! never read, so the dispatcher's tests can run on a virtual clock.

use crate::Micros;
use crate::time::SECOND;

/// A token bucket. Starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Micros,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` tokens per second up to `burst`, as of `now`.
    pub fn new(rate: f64, burst: i32, now: Micros) -> Self {
        let capacity = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(0.0),
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Changes rate and burst (UpdateQueue), keeping the tokens earned so far.
    pub fn reconfigure(&mut self, rate: f64, burst: i32, now: Micros) {
        self.refill(now);
        self.rate = rate.max(0.0);
        self.capacity = f64::from(burst.max(1));
        self.tokens = self.tokens.min(self.capacity);
    }

    fn refill(&mut self, now: Micros) {
        if now > self.last {
            let earned = (now - self.last) as f64 / SECOND as f64 * self.rate;
            self.tokens = (self.tokens + earned).min(self.capacity);
            self.last = now;
        }
    }

    /// Takes one token at `now`, or says when the next one will be there.
    pub fn try_take(&mut self, now: Micros) -> Result<(), Micros> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.rate <= 0.0 {
            return Err(Micros::MAX);
        }
        let wait = ((1.0 - self.tokens) / self.rate * SECOND as f64).ceil();
        // Bounded by one token's refill time, far below i64::MAX µs for any rate > 0.
        #[allow(clippy::cast_possible_truncation)]
        let wait = wait as Micros;
        Err(now.saturating_add(wait.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dispatch times of `n` tasks all due at 0, taking a token as soon as one is there.
    fn schedule(rate: f64, burst: i32, n: usize) -> Vec<Micros> {
        let mut b = TokenBucket::new(rate, burst, 0);
        let mut now = 0;
        let mut out = Vec::new();
        while out.len() < n {
            match b.try_take(now) {
                Ok(()) => out.push(now),
                Err(at) => now = at,
            }
        }
        out
    }

    #[test]
    fn rate_5_burst_1_spreads_30_tasks_over_about_6_seconds() {
        let t = schedule(5.0, 1, 30);
        let span = *t.last().unwrap() as f64 / SECOND as f64;
        assert!((5.7..=5.9).contains(&span), "{span}");
        for w in t.windows(2) {
            assert!(w[1] - w[0] >= SECOND / 5 - 1, "{:?}", w);
        }
    }

    #[test]
    fn burst_goes_first_then_the_rate() {
        let t = schedule(10.0, 5, 8);
        assert_eq!(&t[..5], &[0, 0, 0, 0, 0]);
        assert_eq!(t[5], SECOND / 10);
        assert_eq!(t[7], 3 * SECOND / 10);
    }

    #[test]
    fn reconfigure_keeps_earned_tokens_within_the_new_capacity() {
        let mut b = TokenBucket::new(1.0, 10, 0);
        b.reconfigure(1.0, 2, 0);
        assert!(b.try_take(0).is_ok());
        assert!(b.try_take(0).is_ok());
        assert_eq!(b.try_take(0), Err(SECOND));
        let mut z = TokenBucket::new(0.0, 1, 0);
        assert!(z.try_take(0).is_ok());
        assert_eq!(z.try_take(0), Err(Micros::MAX));
    }
}
