//! Fault injection: which request gets a 429, a 5xx, a slow or a truncated
//! answer, and the hostile answers the client must survive (a redirect, a huge
//! body, unreadable items). Endless paging and date formats are modes of the
//! server instead ([`Paging`], `SimHandle::set_date_format`).
//!
//! Two sources, checked in this order: a script of exact faults that a test
//! queues ("the next 2 requests get 503"), then a random share of requests
//! (`--fault-rate`) drawn from a stream seeded by the simulator's seed, so a
//! run with the same seed and the same request order sees the same faults.

use std::collections::VecDeque;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429, with `Retry-After: secs` when given.
    TooManyRequests { retry_after: Option<u64> },
    /// An HTTP error status with a gateway-like JSON body (500, 502, 503, 504, ...).
    Status(u16),
    /// The normal answer, sent after this delay.
    Slow(Duration),
    /// The normal answer cut in half: status 200, body not valid JSON.
    Truncated,
    /// A redirect (301, 302, 307, 308) to `location`.
    Redirect { status: u16, location: String },
    /// Status 200 and a body of this many bytes, streamed without a length.
    Huge(usize),
    /// The normal answer with these raw bytes as the first items of `Items`
    /// (they may be anything: `1e400`, invalid UTF-8, deep nesting).
    BadItems(Vec<Vec<u8>>),
}

/// How the list endpoint pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Paging {
    /// As Argos: `nextpageKey` while there is more.
    #[default]
    Normal,
    /// Every answer carries fresh generated submissions and a fresh
    /// `nextpageKey`, forever.
    Endless,
    /// Every answer carries the same `nextpageKey`.
    RepeatKey,
}

/// The random share of faulty requests.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Fraction of requests (0..=1) that get a fault.
    pub rate: f64,
    /// Delay of a slow answer.
    pub slow_delay: Duration,
    /// `Retry-After` seconds on random 429s.
    pub retry_after_secs: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            rate: 0.0,
            slow_delay: Duration::from_secs(2),
            retry_after_secs: 1,
        }
    }
}

/// Decides the fault, if any, of each request.
pub(crate) struct Faults {
    config: FaultConfig,
    script: VecDeque<Fault>,
    rng: ChaCha8Rng,
}

impl Faults {
    pub fn new(seed: u64, config: FaultConfig) -> Self {
        Faults {
            config,
            script: VecDeque::new(),
            // A stream of its own, so faults do not shift generated data.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xFA17_FA17_FA17_FA17),
        }
    }

    pub fn set_config(&mut self, config: FaultConfig) {
        self.config = config;
    }

    pub fn script(&mut self, faults: impl IntoIterator<Item = Fault>) {
        self.script.extend(faults);
    }

    pub fn next(&mut self) -> Option<Fault> {
        if let Some(f) = self.script.pop_front() {
            return Some(f);
        }
        if self.config.rate <= 0.0 || !self.rng.random_bool(self.config.rate.min(1.0)) {
            return None;
        }
        Some(match self.rng.random_range(0..7) {
            0 => Fault::TooManyRequests {
                retry_after: Some(self.config.retry_after_secs),
            },
            1 => Fault::Status(500),
            2 => Fault::Status(502),
            3 => Fault::Status(503),
            4 => Fault::Status(504),
            5 => Fault::Slow(self.config.slow_delay),
            _ => Fault::Truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_first_then_seeded_random() {
        let cfg = FaultConfig {
            rate: 0.5,
            ..FaultConfig::default()
        };
        let mut a = Faults::new(3, cfg.clone());
        a.script([Fault::Status(503), Fault::Truncated]);
        assert_eq!(a.next(), Some(Fault::Status(503)));
        assert_eq!(a.next(), Some(Fault::Truncated));
        let seq_a: Vec<_> = (0..100).map(|_| a.next()).collect();
        let mut b = Faults::new(3, cfg);
        let seq_b: Vec<_> = (0..100).map(|_| b.next()).collect();
        assert_eq!(seq_a, seq_b);
        let faulty = seq_a.iter().filter(|f| f.is_some()).count();
        assert!((30..70).contains(&faulty), "{faulty}");
        let mut none = Faults::new(3, FaultConfig::default());
        assert!((0..100).all(|_| none.next().is_none()));
    }
}
