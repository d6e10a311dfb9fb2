//! Where time-driven tasks (notification grouping, escalation, digests) read
//! the time: the wall clock in the daemon, a hand-moved clock in tests, so a
//! test of a daily digest or an hour of escalation steps does not sleep.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `now() >= t` (callers may re-check).
    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The longest single sleep: the wall clock may jump (NTP, a suspended
/// laptop) while a monotonic sleep does not notice, so it is read again.
const MAX_NAP: Duration = Duration::from_secs(60);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let left = (t - Utc::now()).to_std().unwrap_or_default();
                if left.is_zero() {
                    return;
                }
                // A few ms past the time, so `now() >= t` holds on waking.
                tokio::time::sleep(left.min(MAX_NAP) + Duration::from_millis(5)).await;
            }
        })
    }
}

/// A clock tests set by hand; sleepers wake when it passes their time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(t: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(t)),
        }
    }

    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_replace(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= t).await;
        })
    }
}

/// The wall clock moved forward by a settable offset: a controlled clock
/// that still agrees with the store's wall-clock timestamps at offset zero.
/// [`ShiftedClock::advance`] wakes whoever sleeps on it.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_ms: AtomicI64,
    moved: Notify,
}

impl ShiftedClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        self.moved.notify_waiters();
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let d = (t - self.now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = self.moved.notified() => {}
            }
        })
    }
}
