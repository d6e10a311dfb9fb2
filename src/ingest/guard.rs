//! The pure checks in front of the webhook endpoint: token comparison, the IP
//! allow-list, body sizes, and the replay memory.
//!
//! Kept apart from the HTTP handler so each can be tested without a socket,
//! and so the handler reads as the order of checks and nothing else.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub use crate::config::{ByteSize, IpRange};

/// Compares a presented token with the configured one in time independent
/// of where they differ (and of their lengths: both are hashed first).
pub fn token_matches(expected: &SecretString, presented: &[u8]) -> bool {
    let a = Sha256::digest(expected.expose_secret().as_bytes());
    let b = Sha256::digest(presented);
    crate::util::constant_time_eq(&a, &b)
}

/// An empty list allows every address.
pub fn ip_allowed(allow: &[IpRange], ip: IpAddr) -> bool {
    allow.is_empty() || allow.iter().any(|r| r.contains(ip))
}

/// Remembers the hashes of bodies seen within a window, so a body delivered
/// twice (a sender's retry, or a captured request played back) is answered
/// but not acted on again. Bounded: beyond `capacity` the oldest are forgotten
/// early, which can only let a replay through as a harmless extra fetch.
pub struct ReplayMemory {
    window: Duration,
    capacity: usize,
    order: VecDeque<(Instant, [u8; 32])>,
    seen: HashSet<[u8; 32]>,
}

impl ReplayMemory {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// True when `body` was seen within the window; otherwise remembers it.
    pub fn check_and_remember(&mut self, body: &[u8], now: Instant) -> bool {
        while let Some((t, h)) = self.order.front() {
            if now.duration_since(*t) < self.window && self.order.len() < self.capacity {
                break;
            }
            self.seen.remove(h);
            self.order.pop_front();
        }
        let h: [u8; 32] = Sha256::digest(body).into();
        if self.seen.contains(&h) {
            return true;
        }
        self.seen.insert(h);
        self.order.push_back((now, h));
        false
    }

    /// Forgets `body`, so its next delivery is acted on (used when a body was
    /// accepted but could not be queued).
    pub fn forget(&mut self, body: &[u8]) {
        let h: [u8; 32] = Sha256::digest(body).into();
        if self.seen.remove(&h) {
            self.order.retain(|(_, x)| *x != h);
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = SecretString::from("0123456789abcdef");
        assert!(token_matches(&t, b"0123456789abcdef"));
        assert!(!token_matches(&t, b"0123456789abcdeF"));
        assert!(!token_matches(&t, b""));
        assert!(!token_matches(&t, b"0123456789abcdef0"));
    }

    #[test]
    fn ip_ranges() {
        let r = IpRange::parse("10.1.0.0/16").unwrap();
        assert!(r.contains("10.1.200.3".parse().unwrap()));
        assert!(!r.contains("10.2.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = IpRange::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            IpRange::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let v6 = IpRange::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(
            IpRange::parse("10.0.0.0/33").unwrap_err(),
            "`10.0.0.0/33`: prefix length must be 0 to 32"
        );
        assert_eq!(
            IpRange::parse("argos").unwrap_err(),
            "`argos` is not an IP address or CIDR block"
        );
        assert!(ip_allowed(&[], "1.2.3.4".parse().unwrap()));
        assert!(!ip_allowed(&[one], "1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(65536)));
        assert_eq!(ByteSize::parse("1MiB"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("1000"), Ok(ByteSize(1000)));
        assert_eq!(ByteSize::parse("2KB"), Ok(ByteSize(2000)));
        assert_eq!(
            ByteSize::parse("64 kilobytes").unwrap_err(),
            "invalid size `64 kilobytes` (write e.g. 65536, 64KiB, 1MiB)"
        );
    }

    #[test]
    fn replay_memory_forgets_after_the_window_and_beyond_capacity() {
        let t0 = Instant::now();
        let mut m = ReplayMemory::new(Duration::from_secs(60), 3);
        assert!(!m.check_and_remember(b"a", t0));
        assert!(m.check_and_remember(b"a", t0 + Duration::from_secs(59)));
        assert!(!m.check_and_remember(b"a", t0 + Duration::from_secs(61)));
        // Capacity 3: the fourth body pushes out the oldest.
        let t1 = t0 + Duration::from_secs(62);
        assert!(!m.check_and_remember(b"b", t1));
        assert!(!m.check_and_remember(b"c", t1));
        assert!(!m.check_and_remember(b"d", t1));
        assert_eq!(m.len(), 3);
        assert!(!m.check_and_remember(b"a", t1));
        assert!(m.check_and_remember(b"d", t1));
        m.forget(b"d");
        assert!(!m.check_and_remember(b"d", t1));
    }
}
