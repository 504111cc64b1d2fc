//! Retry and pacing, in one place: bounded, jittered retries, and a request-rate limiter that
//! slows the whole run down when the provider throttles (S3 `SlowDown`, KMS
//! `ThrottlingException`, 503), then speeds up again as calls succeed.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ProviderError;

/// How often and how long to retry a call that failed with a retryable error.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_elapsed: Duration,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(120),
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// "Full jitter" backoff before attempt `attempt` (1-based retry count).
    pub fn backoff(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.min(16));
        let ceiling = exp.min(self.cap);
        Duration::from_nanos(rng.u64(0..=ceiling.as_nanos() as u64))
    }
}

/// A request-rate limiter shared by every task of a run. Rates adapt: halved on throttling
/// (at most once per second, so that a burst of throttled replies counts once), raised by a
/// twentieth of the configured rate per second of calm, never above the configured rate.
pub struct Pacer {
    max_rate: f64,
    state: Mutex<PacerState>,
}

struct PacerState {
    rate: f64,
    next_slot: Instant,
    last_cut: Option<Instant>,
    last_raise: Instant,
    throttled: u64,
}

impl Pacer {
    pub fn new(requests_per_second: u32) -> Pacer {
        let now = Instant::now();
        Pacer {
            max_rate: requests_per_second.max(1) as f64,
            state: Mutex::new(PacerState {
                rate: requests_per_second.max(1) as f64,
                next_slot: now,
                last_cut: None,
                last_raise: now,
                throttled: 0,
            }),
        }
    }

    /// Wait for the next request slot.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.state.lock().expect("pacer lock");
            let now = Instant::now();
            let slot = s.next_slot.max(now);
            s.next_slot = slot + Duration::from_secs_f64(1.0 / s.rate);
            slot.saturating_duration_since(now)
        };
        // Waits under a millisecond are below the timer's resolution: a tiny burst is cheaper
        // than a wake-up per request, and the rate still holds over any second.
        if wait >= Duration::from_millis(1) {
            tokio::time::sleep(wait).await;
        }
    }

    pub fn on_throttled(&self) {
        let mut s = self.state.lock().expect("pacer lock");
        s.throttled += 1;
        let now = Instant::now();
        if s.last_cut
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            s.rate = (s.rate / 2.0).max(1.0);
            s.last_cut = Some(now);
            s.last_raise = now;
        }
    }

    pub fn on_success(&self) {
        let mut s = self.state.lock().expect("pacer lock");
        let now = Instant::now();
        let calm = now.duration_since(s.last_raise).as_secs_f64();
        if calm >= 1.0 && s.rate < self.max_rate {
            s.rate = (s.rate + self.max_rate / 20.0 * calm).min(self.max_rate);
            s.last_raise = now;
        }
    }

    pub fn rate(&self) -> f64 {
        self.state.lock().expect("pacer lock").rate
    }

    pub fn throttled(&self) -> u64 {
        self.state.lock().expect("pacer lock").throttled
    }
}

/// `with_retries` with a fresh jitter seed: what step code calls.
pub async fn retried<T, F, Fut>(
    policy: &RetryPolicy,
    pacer: &Pacer,
    call: F,
) -> (Result<T, ProviderError>, Attempts)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    with_retries(
        policy,
        pacer,
        fastrand::u64(..),
        ProviderError::is_retryable,
        call,
    )
    .await
}

/// `retried` for a guarded write whose race (`Conflict`, 409) may be sent again: the same
/// condition still protects whatever landed meanwhile.
pub async fn retried_guarded<T, F, Fut>(
    policy: &RetryPolicy,
    pacer: &Pacer,
    call: F,
) -> (Result<T, ProviderError>, Attempts)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    with_retries(
        policy,
        pacer,
        fastrand::u64(..),
        |e| e.is_retryable() || matches!(e, ProviderError::Conflict { .. }),
        call,
    )
    .await
}

/// What happened across the attempts of one call.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attempts {
    pub retries: u32,
}

/// Run `call` paced by `pacer`, retrying the errors `retryable` accepts under `policy`.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    pacer: &Pacer,
    rng_seed: u64,
    retryable: impl Fn(&ProviderError) -> bool,
    mut call: F,
) -> (Result<T, ProviderError>, Attempts)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let start = Instant::now();
    let mut rng = fastrand::Rng::with_seed(rng_seed);
    let mut attempts = Attempts::default();
    loop {
        pacer.acquire().await;
        match call().await {
            Ok(v) => {
                pacer.on_success();
                return (Ok(v), attempts);
            }
            Err(e) if retryable(&e) => {
                if matches!(e, ProviderError::Throttled { .. }) {
                    pacer.on_throttled();
                }
                let next = attempts.retries + 1;
                let delay = policy.backoff(next, &mut rng);
                if next >= policy.max_attempts || start.elapsed() + delay > policy.max_elapsed {
                    return (Err(e), attempts);
                }
                attempts.retries = next;
                tokio::time::sleep(delay).await;
            }
            Err(e) => return (Err(e), attempts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_retryable_errors_then_succeeds() {
        let policy = RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            ..Default::default()
        };
        let pacer = Pacer::new(10_000);
        let calls = AtomicU32::new(0);
        let (r, a) = with_retries(&policy, &pacer, 1, ProviderError::is_retryable, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(ProviderError::Throttled {
                    what: "x".into(),
                    detail: "SlowDown".into(),
                })
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(a.retries, 3);
        assert_eq!(pacer.throttled(), 3);
        assert!(pacer.rate() < 10_000.0, "throttling slowed the whole run");
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_never_retries_permanent_errors() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(1),
            ..Default::default()
        };
        let pacer = Pacer::new(10_000);
        let calls = AtomicU32::new(0);
        let (r, _) = with_retries(&policy, &pacer, 1, ProviderError::is_retryable, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(ProviderError::Transient {
                what: "x".into(),
                detail: "500".into(),
            })
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        calls.store(0, Ordering::SeqCst);
        let (r, _) = with_retries(&policy, &pacer, 1, ProviderError::is_retryable, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(ProviderError::Precondition { what: "x".into() })
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_is_bounded_by_the_cap() {
        let p = RetryPolicy::default();
        let mut rng = fastrand::Rng::with_seed(3);
        for attempt in 1..30 {
            assert!(p.backoff(attempt, &mut rng) <= p.cap);
        }
    }
}
