//! The daily API budget (`argos.daily_budget`), enforced before each call.
//!
//! Argos allows 500,000 calls a day, reset at 00:00 UTC; an account shares
//! them with everything else the integrator runs. So every HTTP attempt —
//! list pages, fetches by id, applicant lookups, catch-up pages, retries — is
//! counted here *before* it is made, and once the day's budget is spent no call
//! is made until the next UTC day. The refusal is logged once per day, sets
//! a gauge, and `/healthz` reports it (see [`CallBudget::exhausted`]).

use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};

/// Calls left for a UTC day; 0 as the daily figure means unlimited.
#[derive(Debug)]
pub struct CallBudget {
    daily: u64,
    day: Mutex<Day>,
}

#[derive(Debug)]
struct Day {
    date: NaiveDate,
    spent: u64,
    warned: bool,
}

/// The budget of `day` is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub day: NaiveDate,
    pub daily: u64,
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the Argos API budget for {} (UTC), {} calls (argos.daily_budget), is spent; \
             no call to Argos until 00:00 UTC",
            self.day, self.daily
        )
    }
}

impl crate::telemetry::SpentBudget for CallBudget {
    fn spent_why(&self, now: DateTime<Utc>) -> Option<String> {
        self.exhausted(now).map(|e| e.to_string())
    }
}

impl CallBudget {
    pub fn new(daily: u64) -> Self {
        Self {
            daily,
            day: Mutex::new(Day {
                date: Utc::now().date_naive(),
                spent: 0,
                warned: false,
            }),
        }
    }

    pub fn daily(&self) -> u64 {
        self.daily
    }

    /// Counts one call at `now`, or refuses it when the day's budget is spent.
    pub fn spend(&self, now: DateTime<Utc>) -> Result<(), Exhausted> {
        let mut d = self.lock_day(now);
        if self.daily > 0 && d.spent >= self.daily {
            let ex = Exhausted {
                day: d.date,
                daily: self.daily,
            };
            crate::telemetry::emit::api_call_refused();
            if !d.warned {
                d.warned = true;
                crate::telemetry::emit::api_budget_exhausted(true);
                tracing::warn!("{ex}");
            }
            return Err(ex);
        }
        d.spent += 1;
        Ok(())
    }

    /// Whether a call at `now` would be refused (spends nothing).
    pub fn exhausted(&self, now: DateTime<Utc>) -> Option<Exhausted> {
        let d = self.lock_day(now);
        (self.daily > 0 && d.spent >= self.daily).then_some(Exhausted {
            day: d.date,
            daily: self.daily,
        })
    }

    /// Calls counted for the UTC day of `now`.
    pub fn spent(&self, now: DateTime<Utc>) -> u64 {
        self.lock_day(now).spent
    }

    /// Takes in the calls already spent on `day` by an earlier run (the
    /// store's count), so a restart does not get a fresh budget.
    pub fn seed(&self, day: NaiveDate, spent: u64) {
        let mut d = self.day.lock().unwrap_or_else(|p| p.into_inner());
        if day > d.date {
            *d = Day {
                date: day,
                spent,
                warned: false,
            };
        } else if day == d.date {
            d.spent = d.spent.max(spent);
        }
    }

    /// The day's state, rolled over to a new UTC day when `now` is in one.
    fn lock_day(&self, now: DateTime<Utc>) -> std::sync::MutexGuard<'_, Day> {
        let mut d = self.day.lock().unwrap_or_else(|p| p.into_inner());
        let today = now.date_naive();
        if today > d.date {
            if d.warned {
                crate::telemetry::emit::api_budget_exhausted(false);
                tracing::info!("a new UTC day: the Argos API budget is available again");
            }
            *d = Day {
                date: today,
                spent: 0,
                warned: false,
            };
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn spent_budget_refuses_until_midnight_utc() {
        let b = CallBudget::new(3);
        let t = Utc.with_ymd_and_hms(2099, 1, 1, 23, 59, 0).unwrap();
        b.seed(t.date_naive(), 1);
        assert!(b.spend(t).is_ok());
        assert!(b.spend(t).is_ok());
        let ex = b.spend(t).unwrap_err();
        assert_eq!(ex.day, t.date_naive());
        assert_eq!(b.spent(t), 3);
        assert_eq!(b.exhausted(t), Some(ex));
        let later = Utc.with_ymd_and_hms(2099, 1, 1, 23, 59, 59).unwrap();
        assert!(b.spend(later).is_err());
        let midnight = Utc.with_ymd_and_hms(2099, 1, 2, 0, 0, 0).unwrap();
        assert_eq!(b.exhausted(midnight), None);
        assert!(b.spend(midnight).is_ok());
        assert_eq!(b.spent(midnight), 1);
        // A seed of an older day changes nothing.
        b.seed(t.date_naive(), 99);
        assert_eq!(b.spent(midnight), 1);
    }

    #[test]
    fn zero_is_unlimited() {
        let b = CallBudget::new(0);
        let t = Utc::now();
        for _ in 0..1000 {
            b.spend(t).unwrap();
        }
        assert_eq!(b.exhausted(t), None);
    }
}
