//! Concurrent things per client address and in all: open connections and TLS
//! handshakes in progress on the HTTPS port. A count is taken when a
//! connection is admitted and given back when its [`Slot`] is dropped, so it
//! cannot leak on any error path.
//!
//! Untrusted input: the peer address, reduced to a salted [`ClientKey`]
//! (IPv6 by /64) before it is counted; nothing else is kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::privacy::ClientKey;

/// Which limit refused a connection (a metric or log label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The client's own share is used up.
    Client,
    /// Everyone's is.
    Total,
}

impl Full {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Total => "total",
        }
    }
}

/// Counts held at once, in all and per client.
pub struct ConcurrencyGate {
    max_total: usize,
    max_per_client: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    total: usize,
    per_client: HashMap<ClientKey, usize>,
}

/// One admitted connection (or handshake); its count is given back on drop.
pub struct Slot {
    gate: Arc<ConcurrencyGate>,
    client: Option<ClientKey>,
}

impl ConcurrencyGate {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_client,
            state: Mutex::new(State::default()),
        })
    }

    /// Takes a slot for `client`, or says which limit is full. `None` counts
    /// only in the total: a trusted proxy speaks for many clients.
    pub fn enter(self: &Arc<Self>, client: Option<ClientKey>) -> Result<Slot, Full> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.total >= self.max_total {
            return Err(Full::Total);
        }
        if let Some(client) = client {
            let count = state.per_client.entry(client).or_insert(0);
            if *count >= self.max_per_client {
                return Err(Full::Client);
            }
            *count += 1;
        }
        state.total += 1;
        Ok(Slot {
            gate: self.clone(),
            client,
        })
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self
            .gate
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.total = state.total.saturating_sub(1);
        if let Some(client) = self.client
            && let Some(count) = state.per_client.get_mut(&client)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_client.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::ClientKeyer;

    #[test]
    fn one_client_cannot_take_more_than_its_share_and_others_still_get_in() {
        let keyer = ClientKeyer::new(Vec::new());
        let a = keyer.key(Some("203.0.113.7".parse().unwrap()));
        let b = keyer.key(Some("198.51.100.9".parse().unwrap()));
        let gate = ConcurrencyGate::new(5, 2);

        let held: Vec<Slot> = (0..2).map(|_| gate.enter(Some(a)).unwrap()).collect();
        assert_eq!(gate.enter(Some(a)).err(), Some(Full::Client));
        let other = gate.enter(Some(b)).unwrap();
        assert_eq!(gate.held(), 3);

        drop(held);
        assert_eq!(gate.held(), 1);
        let _again = gate.enter(Some(a)).unwrap();
        drop(other);
        assert_eq!(gate.held(), 1);
    }

    #[test]
    fn the_total_bounds_everyone_including_unkeyed_proxies() {
        let keyer = ClientKeyer::new(Vec::new());
        let gate = ConcurrencyGate::new(3, 3);
        let _p1 = gate.enter(None).unwrap();
        let _p2 = gate.enter(None).unwrap();
        let _c = gate
            .enter(Some(keyer.key(Some("203.0.113.7".parse().unwrap()))))
            .unwrap();
        assert_eq!(gate.enter(None).err(), Some(Full::Total));
        assert_eq!(
            gate.enter(Some(keyer.key(Some("198.51.100.9".parse().unwrap()))))
                .err(),
            Some(Full::Total)
        );
    }

    #[test]
    fn an_ipv6_client_is_one_client_across_its_64() {
        let keyer = ClientKeyer::new(Vec::new());
        let gate = ConcurrencyGate::new(10, 1);
        let _first = gate
            .enter(Some(keyer.key(Some("2001:db8:1:2::1".parse().unwrap()))))
            .unwrap();
        assert_eq!(
            gate.enter(Some(
                keyer.key(Some("2001:db8:1:2:ffff::9".parse().unwrap()))
            ))
            .err(),
            Some(Full::Client)
        );
    }
}
