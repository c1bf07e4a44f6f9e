//! Per-connection and per-server limits: the message rate (token bucket) and the connection
//! caps checked before a WebSocket upgrade.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens, refilled at `rate` per second. One message costs one token.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: Instant::now(),
        }
    }

    /// The tokens there are at `now`: what was left, refilled since the last take.
    fn available(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.burst)
    }

    /// Takes a token if one is available.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.tokens = self.available(now);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is available: zero if one is now.
    pub fn wait(&self, now: Instant) -> Duration {
        let tokens = self.available(now);
        if tokens >= 1.0 || self.rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / self.rate)
        }
    }
}

/// What a per-address limit counts: an IPv4 address (also when written as IPv6-mapped), or an
/// IPv6 /64, the block one subscriber is usually given (they can use any address in it).
pub fn client_block(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Why an upgrade was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server is at `max_connections`.
    Full,
    /// This IP is at `max_connections_per_ip`.
    PerIp,
}

/// Counts open connections in total and per IP. A std `Mutex` is right here: the critical
/// section is a hash-map update, never held across an `.await`.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Holds one connection's place; dropping it gives the place back.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes a place for a connection from `ip`, within the total and the per-address caps.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        self.acquire(ip, self.max_per_ip)
    }

    /// Takes a place within the total cap only: for a peer that carries many clients (a
    /// trusted reverse proxy), whose own address says nothing about who is connecting.
    pub fn try_acquire_shared(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        self.acquire(ip, usize::MAX)
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr, max_per_ip: usize) -> Result<ConnectionSlot, Refusal> {
        let ip = client_block(ip);
        let mut guard = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_ip) = &mut *guard;
        if *total >= self.max_total {
            return Err(Refusal::Full);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        *total += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut guard = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_ip) = &mut *guard;
        *total -= 1;
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3.0);
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(500)));
        assert!(!b.try_take(t0 + Duration::from_millis(600)));
    }

    #[test]
    fn slots_are_counted_and_returned() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = limits.try_acquire(a).unwrap();
        let _s2 = limits.try_acquire(a).unwrap();
        assert_eq!(limits.try_acquire(a).err(), Some(Refusal::PerIp));
        let _s3 = limits.try_acquire(b).unwrap();
        assert_eq!(limits.try_acquire(b).err(), Some(Refusal::Full));
        drop(s1);
        assert!(limits.try_acquire(a).is_ok());
        // One IPv6 /64 is one client; a mapped IPv4 address is that address.
        let limits = ConnectionLimits::new(10, 1);
        let _v6 = limits
            .try_acquire("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        let same_block = limits.try_acquire("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(same_block.err(), Some(Refusal::PerIp));
        assert!(
            limits
                .try_acquire("2001:db8:1:3::1".parse().unwrap())
                .is_ok()
        );
        let _v4 = limits.try_acquire("10.0.0.9".parse().unwrap()).unwrap();
        let mapped = limits.try_acquire("::ffff:10.0.0.9".parse().unwrap());
        assert_eq!(mapped.err(), Some(Refusal::PerIp));
    }
}
