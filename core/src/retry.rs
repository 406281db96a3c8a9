//! Reconnect policy: exponential backoff with full jitter, none, or the caller's own.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::error::{Error, Result};

/// How long to wait before reconnect attempt `attempt` (1-based); `None` gives up.
pub type CustomRetry = Arc<dyn Fn(u32) -> Option<Duration> + Send + Sync>;

#[derive(Clone)]
pub enum RetryPolicy {
    /// `delay = random(0, min(max, initial · 2^(attempt-1)))`, until `give_up_after` has passed.
    ExponentialBackoff {
        initial: Duration,
        max: Duration,
        give_up_after: Option<Duration>,
    },
    /// Never reconnect: the first connection loss closes the client.
    None,
    Custom(CustomRetry),
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryPolicy::ExponentialBackoff { initial, max, give_up_after } => f
                .debug_struct("ExponentialBackoff")
                .field("initial", initial)
                .field("max", max)
                .field("give_up_after", give_up_after)
                .finish(),
            RetryPolicy::None => f.write_str("None"),
            RetryPolicy::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::ExponentialBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            give_up_after: None,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt`, given how long we have been disconnected.
    pub fn delay(&self, attempt: u32, disconnected_for: Duration) -> Option<Duration> {
        match self {
            RetryPolicy::None => None,
            RetryPolicy::Custom(f) => f(attempt),
            RetryPolicy::ExponentialBackoff { initial, max, give_up_after } => {
                if give_up_after.is_some_and(|g| disconnected_for >= g) {
                    return None;
                }
                let cap = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(*max);
                let millis = cap.as_millis().max(1) as u64;
                Some(Duration::from_millis(rand::thread_rng().gen_range(0..=millis)))
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let RetryPolicy::ExponentialBackoff { initial, max, .. } = self {
            if initial.is_zero() || max < initial {
                return Err(Error::invalid("retry backoff needs 0 < initial <= max"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_jittered_and_gives_up() {
        let p = RetryPolicy::ExponentialBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
            give_up_after: Some(Duration::from_secs(5)),
        };
        for attempt in 1..30 {
            let d = p.delay(attempt, Duration::ZERO).unwrap();
            let cap = Duration::from_millis((100u64 << (attempt - 1).min(20)).min(800));
            assert!(d <= cap, "attempt {attempt}: {d:?} > {cap:?}");
        }
        assert_eq!(p.delay(1, Duration::from_secs(5)), None);
        assert_eq!(RetryPolicy::None.delay(1, Duration::ZERO), None);
    }
}
