//! How often logins may be tried on the TCP dashboard: token buckets, one per client
//! address ([`PER_CLIENT`]) and one for everyone ([`IN_ALL`]). A try takes a token from
//! its client's bucket, then from the shared one; without one it is refused at once
//! (429), holding nothing. So one address guesses at most about once a second, all of
//! them together at most ten times a second, and a guesser from one address does not
//! lock out an operator logging in from another.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A bucket's refill rate (tries a second) and size (the burst).
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// One client address.
pub const PER_CLIENT: Rate = Rate {
    per_second: 1.0,
    burst: 5.0,
};

/// Every client together.
pub const IN_ALL: Rate = Rate {
    per_second: 10.0,
    burst: 20.0,
};

/// Client buckets kept at most; past it, the full ones (idle long enough to refill) go.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            at: now,
        }
    }

    fn refilled(self, rate: Rate, now: Instant) -> Self {
        let gained = now.duration_since(self.at).as_secs_f64() * rate.per_second;
        Self {
            tokens: (self.tokens + gained).min(rate.burst),
            at: now,
        }
    }

    /// How long until a token is there (zero: now).
    fn wait(&self, rate: Rate) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / rate.per_second).max(0.0))
    }
}

#[derive(Debug)]
struct State {
    clients: HashMap<IpAddr, Bucket>,
    all: Bucket,
}

/// The login throttle.
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<State>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl Throttle {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                clients: HashMap::new(),
                all: Bucket::full(IN_ALL, Instant::now()),
            }),
        }
    }

    /// Takes a try for `client`: `Ok`, or how long until one may be tried (nothing taken).
    pub fn take(&self, client: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.clients.len() >= MAX_CLIENTS {
            let refill = Duration::from_secs_f64(PER_CLIENT.burst / PER_CLIENT.per_second);
            state
                .clients
                .retain(|_, b| now.duration_since(b.at) < refill);
        }
        let mine = state
            .clients
            .get(&client)
            .copied()
            .unwrap_or_else(|| Bucket::full(PER_CLIENT, now))
            .refilled(PER_CLIENT, now);
        let all = state.all.refilled(IN_ALL, now);
        let wait = mine.wait(PER_CLIENT).max(all.wait(IN_ALL));
        if !wait.is_zero() {
            state.clients.insert(client, mine);
            state.all = all;
            return Err(wait);
        }
        state.clients.insert(
            client,
            Bucket {
                tokens: mine.tokens - 1.0,
                ..mine
            },
        );
        state.all = Bucket {
            tokens: all.tokens - 1.0,
            ..all
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[tokio::test(start_paused = true)]
    async fn one_client_gets_its_burst_then_one_a_second_and_others_are_not_locked_out() {
        let t = Throttle::new();
        for _ in 0..5 {
            assert!(t.take(ip(1)).is_ok());
        }
        let wait = t.take(ip(1)).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(t.take(ip(2)).is_ok(), "another address still may");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.take(ip(1)).is_ok());
        assert!(t.take(ip(1)).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn all_clients_together_are_held_to_the_shared_rate() {
        let t = Throttle::new();
        let mut allowed = 0;
        for last in 0..100 {
            if t.take(ip(last)).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 20, "the shared burst");
        tokio::time::advance(Duration::from_secs(1)).await;
        let again = (100..200)
            .filter(|&last| t.take(ip(last as u8)).is_ok())
            .count();
        assert_eq!(again, 10, "ten a second after that");
    }
}
