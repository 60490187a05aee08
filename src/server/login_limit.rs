//! Password guessing is slowed down: after too many failed logins for one account name, or
//! from one client address, within a window, further attempts are refused with 429 and
//! Retry-After until the window has passed. Only failures count, so people who log in
//! often are never held up; a successful login clears its name's count.
//!
//! The counts live in memory (a restart forgets them) and are bounded: windows that have
//! passed are forgotten with the other rate-limiter keys ([`LoginLimit::forget_idle`]).
//! `governor`'s limiters, used for questions, count every request; this counts failures
//! only, which a quota cannot express.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins per name and per client address within [`LoginLimit::window`].
pub struct LoginLimit {
    per_name: u32,
    per_ip: u32,
    window: Duration,
    failures: Mutex<HashMap<Key, Failures>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Name(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Why a login attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Seconds until the window that holds the failures has passed.
    pub retry_after: u64,
    /// Whether the account name (not the address) is what is held up.
    pub by_name: bool,
}

/// The name as counted: trimmed and lower-cased, so `Alice` and ` alice` are one account.
fn name_key(name: &str) -> Key {
    Key::Name(name.trim().to_lowercase())
}

impl LoginLimit {
    /// `per_name` / `per_ip` failures allowed within `window`; 0 turns that limit off.
    pub fn new(per_name: u32, per_ip: u32, window: Duration) -> Self {
        Self {
            per_name,
            per_ip,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an attempt for `name` from `ip` may check its password now.
    pub fn check(&self, name: &str, ip: Option<IpAddr>) -> Result<(), Refused> {
        let now = Instant::now();
        let map = self.failures.lock().expect("login limit lock");
        let over = |key: &Key, max: u32| {
            let f = map.get(key)?;
            let left = self.window.checked_sub(now.duration_since(f.since))?;
            (max > 0 && f.count >= max).then(|| left.as_secs().max(1))
        };
        if let Some(retry_after) = over(&name_key(name), self.per_name) {
            return Err(Refused {
                retry_after,
                by_name: true,
            });
        }
        if let Some(ip) = ip
            && let Some(retry_after) = over(&Key::Ip(ip), self.per_ip)
        {
            return Err(Refused {
                retry_after,
                by_name: false,
            });
        }
        Ok(())
    }

    /// Count a failed attempt.
    pub fn failed(&self, name: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().expect("login limit lock");
        let keys = std::iter::once(name_key(name)).chain(ip.map(Key::Ip));
        for key in keys {
            let f = map.entry(key).or_insert(Failures {
                count: 0,
                since: now,
            });
            if now.duration_since(f.since) >= self.window {
                *f = Failures {
                    count: 0,
                    since: now,
                };
            }
            f.count += 1;
        }
    }

    /// A successful login: its name starts again from zero (the address keeps its count).
    pub fn succeeded(&self, name: &str) {
        let mut map = self.failures.lock().expect("login limit lock");
        map.remove(&name_key(name));
    }

    /// Forget the counts whose window has passed; returns the keys still counted.
    pub fn forget_idle(&self) -> usize {
        let now = Instant::now();
        let mut map = self.failures.lock().expect("login limit lock");
        map.retain(|_, f| now.duration_since(f.since) < self.window);
        map.shrink_to_fit();
        map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_hold_up_a_name_and_an_address_until_the_window_passes() {
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let other = Some(IpAddr::from([10, 0, 0, 2]));
        let l = LoginLimit::new(3, 5, Duration::from_millis(300));
        for _ in 0..3 {
            assert!(l.check("alice", ip).is_ok());
            l.failed("Alice ", ip);
        }
        let r = l.check("alice", other).unwrap_err();
        assert!(r.by_name && r.retry_after >= 1, "{r:?}");
        // Other names from the same address go on until the address's own limit.
        assert!(l.check("bob", ip).is_ok());
        l.failed("bob", ip);
        l.failed("carol", ip);
        let r = l.check("dave", ip).unwrap_err();
        assert!(!r.by_name);
        assert!(l.check("dave", other).is_ok());
        assert_eq!(l.forget_idle(), 4, "alice, bob, carol and the address");
        std::thread::sleep(Duration::from_millis(350));
        assert!(l.check("alice", ip).is_ok());
        assert_eq!(l.forget_idle(), 0);
    }

    #[test]
    fn a_success_clears_the_name_and_zero_turns_a_limit_off() {
        let l = LoginLimit::new(2, 0, Duration::from_secs(60));
        l.failed("alice", None);
        l.succeeded("ALICE");
        l.failed("alice", None);
        assert!(
            l.check("alice", None).is_ok(),
            "one failure since the success"
        );
        l.failed("alice", None);
        assert!(l.check("alice", None).is_err());
        let ip = Some(IpAddr::from([10, 0, 0, 3]));
        for i in 0..100 {
            l.failed(&format!("u{i}"), ip);
        }
        assert!(l.check("zed", ip).is_ok(), "no per-address limit");
    }
}
