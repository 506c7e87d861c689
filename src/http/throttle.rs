//! Guessing the admin token is slowed to ten tries a minute per client, through the console's
//! login form and the admin API's bearer token alike (README, "Operator console" and "Admin
//! API"): after ten wrong tokens within a minute, by either door, every attempt from that
//! client (the right token too, so that it learns nothing) is refused with
//! `429 too_many_attempts` until the oldest of those ten is a minute old. Both doors count in
//! one [`TokenThrottle`], since both guess the one secret.
//!
//! The count lives in this process. A client that reaches several replicas gets ten tries a
//! minute at each; the token's length (`check` asks for 16 characters or more) is what makes
//! guessing hopeless, this only keeps it slow and loud.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::Extensions;
use axum::http::header::RETRY_AFTER;

/// Wrong tokens allowed within [`WINDOW`].
const MAX_FAILURES: usize = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at once, so a flood from many addresses cannot grow memory without bound.
/// Past it, the client with the oldest latest failure is forgotten first.
const MAX_CLIENTS: usize = 10_000;

/// Recent wrong tokens per client.
pub(crate) struct TokenThrottle {
    failures: Mutex<HashMap<Client, VecDeque<Instant>>>,
    max_clients: usize,
}

/// Who a failure is counted against: an IPv4 address, or an IPv6 /64 (the least a single
/// host is usually given, so rotating through one's own /64 gains nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
    /// The connection's address was not available: everybody shares one count, which fails
    /// safe (slower for people, never faster for a guesser).
    Unknown,
}

impl Client {
    /// The client of a request: its connection's peer address, as the server records it.
    pub(crate) fn of_request(extensions: &Extensions) -> Client {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Client::of(peer)
    }

    fn of(addr: Option<IpAddr>) -> Client {
        match addr.map(|addr| addr.to_canonical()) {
            Some(IpAddr::V4(v4)) => Client::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => {
                let mut prefix = [0; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Client::V6Prefix(prefix)
            }
            None => Client::Unknown,
        }
    }
}

impl Default for TokenThrottle {
    fn default() -> Self {
        TokenThrottle::with_capacity(MAX_CLIENTS)
    }
}

impl TokenThrottle {
    fn with_capacity(max_clients: usize) -> Self {
        TokenThrottle {
            failures: Mutex::new(HashMap::new()),
            max_clients,
        }
    }

    /// `Err(wait)` while `client` has used up its tries: how long until it may try again.
    pub(crate) fn check(&self, client: Client, now: Instant) -> Result<(), Duration> {
        let failures = self.failures.lock().expect("throttle lock");
        let Some(recent) = failures.get(&client) else {
            return Ok(());
        };
        let within: Vec<&Instant> = recent
            .iter()
            .filter(|at| now.duration_since(**at) < WINDOW)
            .collect();
        if within.len() < MAX_FAILURES {
            return Ok(());
        }
        Err(WINDOW.saturating_sub(now.duration_since(*within[0])))
    }

    pub(crate) fn record_failure(&self, client: Client, now: Instant) {
        let mut failures = self.failures.lock().expect("throttle lock");
        if !failures.contains_key(&client) && failures.len() >= self.max_clients {
            failures.retain(|_, recent| {
                recent
                    .back()
                    .is_some_and(|at| now.duration_since(*at) < WINDOW)
            });
            if failures.len() >= self.max_clients {
                let oldest = failures
                    .iter()
                    .min_by_key(|(_, recent)| recent.back().copied())
                    .map(|(client, _)| *client);
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
        }
        let recent = failures.entry(client).or_default();
        recent.push_back(now);
        // Only the last ten can matter: the oldest of them decides when the wait ends.
        while recent.len() > MAX_FAILURES {
            recent.pop_front();
        }
    }

    /// A console sign-in from `client` with the right token: its count starts again. (The
    /// admin API does not forget on success: a client calling it all day would otherwise give
    /// a guesser behind the same address ten fresh tries after each of its calls.)
    pub(crate) fn forget(&self, client: Client) {
        self.failures.lock().expect("throttle lock").remove(&client);
    }
}

/// The `Retry-After` of a refusal that lasts `wait`, in whole seconds, at least one.
pub(crate) fn retry_after(wait: Duration) -> [(axum::http::HeaderName, String); 1] {
    [(RETRY_AFTER, wait.as_secs().max(1).to_string())]
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const A: Client = Client::V4([192, 0, 2, 1]);
    const B: Client = Client::V4([192, 0, 2, 2]);

    fn fail(throttle: &TokenThrottle, client: Client, at: Instant, times: usize) {
        for _ in 0..times {
            throttle.record_failure(client, at);
        }
    }

    #[test]
    fn ten_failures_within_a_minute_refuse_until_that_minute_has_passed() {
        let throttle = TokenThrottle::default();
        let start = Instant::now();
        fail(&throttle, A, start, 1);
        fail(&throttle, A, start + Duration::from_secs(30), 8);
        assert_eq!(throttle.check(A, start + Duration::from_secs(30)), Ok(()));
        fail(&throttle, A, start + Duration::from_secs(40), 1);
        let at = start + Duration::from_secs(45);
        assert_eq!(throttle.check(A, at), Err(Duration::from_secs(15)));
        assert_eq!(throttle.check(B, at), Ok(()));
        // The first failure is a minute old: nine remain within the window.
        assert_eq!(throttle.check(A, start + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn ten_failures_spread_over_more_than_a_minute_never_refuse() {
        let throttle = TokenThrottle::default();
        let start = Instant::now();
        for i in 0..30 {
            let at = start + Duration::from_secs(7 * i);
            assert_eq!(throttle.check(A, at), Ok(()), "try {i}");
            throttle.record_failure(A, at);
        }
    }

    #[test]
    fn a_correct_token_starts_the_count_again() {
        let throttle = TokenThrottle::default();
        let now = Instant::now();
        fail(&throttle, A, now, 9);
        throttle.forget(A);
        fail(&throttle, A, now, 9);
        assert_eq!(throttle.check(A, now), Ok(()));
    }

    #[test]
    fn memory_is_bounded_and_the_stalest_client_goes_first() {
        let throttle = TokenThrottle::with_capacity(3);
        let start = Instant::now();
        fail(&throttle, A, start, 10);
        for i in 0..1000u32 {
            let client = Client::V4(i.to_be_bytes());
            throttle.record_failure(client, start + Duration::from_millis(u64::from(i) + 1));
            assert!(throttle.failures.lock().unwrap().len() <= 3);
        }
        assert_eq!(throttle.failures.lock().unwrap().len(), 3);
        for entries in throttle.failures.lock().unwrap().values() {
            assert!(entries.len() <= MAX_FAILURES);
        }
    }

    #[test]
    fn clients_are_ipv4_addresses_and_ipv6_prefixes() {
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(Client::of(Some(mapped)), A);
        let one: IpAddr = "2001:db8:1:2::1".parse::<Ipv6Addr>().unwrap().into();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse::<Ipv6Addr>().unwrap().into();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(Client::of(Some(one)), Client::of(Some(other)));
        assert_ne!(Client::of(Some(one)), Client::of(Some(elsewhere)));
        assert_eq!(Client::of(None), Client::Unknown);
    }
}
