//! Concurrent things per client address and in all: open connections and TLS
//! handshakes in progress on the HTTPS port. A count is taken when a
//! connection is admitted and given back when its [`Slot`] is dropped, so it
//! cannot leak on any error path.
//!
//! An IPv6 client is one /64, but one site holds a whole /48 (a free tunnel
//! broker hands one out), so 16 of its /64s would fill every slot: a /48 also
//! has a share, [`NETWORK_SHARE`] clients' worth.
//!
//! Untrusted input: the peer address, reduced to salted [`ClientKey`]s
//! (IPv6 by /64 and /48) before it is counted; nothing else is kept.

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

/// How many clients' shares one IPv6 /48 may hold together.
pub const NETWORK_SHARE: usize = 4;

/// Who is counted: the client (IPv4 address or IPv6 /64) and, for IPv6, the
/// /48 it is in. A trusted proxy is [`Counted::default`]: only the totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    pub client: Option<ClientKey>,
    pub network: Option<ClientKey>,
}

impl Counted {
    /// The keys of a peer at `ip`.
    pub fn peer(keyer: &crate::privacy::ClientKeyer, ip: std::net::IpAddr) -> Self {
        Self {
            client: Some(keyer.key(Some(ip))),
            network: keyer.network(ip),
        }
    }
}

/// Counts held at once, in all, per client and per IPv6 /48.
pub struct ConcurrencyGate {
    max_total: usize,
    max_per_client: usize,
    max_per_network: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    total: usize,
    per_client: HashMap<ClientKey, usize>,
    per_network: HashMap<ClientKey, usize>,
}

/// One admitted connection (or handshake); its count is given back on drop.
pub struct Slot {
    gate: Arc<ConcurrencyGate>,
    counted: Counted,
}

fn give_back(counts: &mut HashMap<ClientKey, usize>, key: Option<ClientKey>) {
    if let Some(key) = key
        && let Some(count) = counts.get_mut(&key)
    {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(&key);
        }
    }
}

impl ConcurrencyGate {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_client,
            max_per_network: max_per_client.saturating_mul(NETWORK_SHARE).min(max_total),
            state: Mutex::new(State::default()),
        })
    }

    /// Takes a slot for `counted`, or says which limit is full.
    /// `Counted::default()` counts only in the total: a trusted proxy speaks
    /// for many clients.
    pub fn enter(self: &Arc<Self>, counted: Counted) -> Result<Slot, Full> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.total >= self.max_total {
            return Err(Full::Total);
        }
        let held = |counts: &HashMap<ClientKey, usize>, key: Option<ClientKey>| {
            key.and_then(|k| counts.get(&k).copied()).unwrap_or(0)
        };
        if held(&state.per_client, counted.client) >= self.max_per_client
            || held(&state.per_network, counted.network) >= self.max_per_network
        {
            return Err(Full::Client);
        }
        if let Some(client) = counted.client {
            *state.per_client.entry(client).or_insert(0) += 1;
        }
        if let Some(network) = counted.network {
            *state.per_network.entry(network).or_insert(0) += 1;
        }
        state.total += 1;
        Ok(Slot {
            gate: self.clone(),
            counted,
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
        give_back(&mut state.per_client, self.counted.client);
        give_back(&mut state.per_network, self.counted.network);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::ClientKeyer;

    fn peer(keyer: &ClientKeyer, ip: &str) -> Counted {
        Counted::peer(keyer, ip.parse().unwrap())
    }

    #[test]
    fn one_client_cannot_take_more_than_its_share_and_others_still_get_in() {
        let keyer = ClientKeyer::new(Vec::new());
        let a = peer(&keyer, "203.0.113.7");
        let b = peer(&keyer, "198.51.100.9");
        let gate = ConcurrencyGate::new(5, 2);

        let held: Vec<Slot> = (0..2).map(|_| gate.enter(a).unwrap()).collect();
        assert_eq!(gate.enter(a).err(), Some(Full::Client));
        let other = gate.enter(b).unwrap();
        assert_eq!(gate.held(), 3);

        drop(held);
        assert_eq!(gate.held(), 1);
        let _again = gate.enter(a).unwrap();
        drop(other);
        assert_eq!(gate.held(), 1);
    }

    #[test]
    fn the_total_bounds_everyone_including_unkeyed_proxies() {
        let keyer = ClientKeyer::new(Vec::new());
        let gate = ConcurrencyGate::new(3, 3);
        let _p1 = gate.enter(Counted::default()).unwrap();
        let _p2 = gate.enter(Counted::default()).unwrap();
        let _c = gate.enter(peer(&keyer, "203.0.113.7")).unwrap();
        assert_eq!(gate.enter(Counted::default()).err(), Some(Full::Total));
        assert_eq!(
            gate.enter(peer(&keyer, "198.51.100.9")).err(),
            Some(Full::Total)
        );
    }

    #[test]
    fn an_ipv6_client_is_one_client_across_its_64() {
        let keyer = ClientKeyer::new(Vec::new());
        let gate = ConcurrencyGate::new(10, 1);
        let _first = gate.enter(peer(&keyer, "2001:db8:1:2::1")).unwrap();
        assert_eq!(
            gate.enter(peer(&keyer, "2001:db8:1:2:ffff::9")).err(),
            Some(Full::Client)
        );
    }

    /// Issue 10 item 14, review: one /48 (one free tunnel-broker account)
    /// holds 65,536 /64s; without a share of its own, 16 of them would fill
    /// every slot and lock everyone else out.
    #[test]
    fn one_ipv6_48_cannot_take_more_than_its_network_share() {
        let keyer = ClientKeyer::new(Vec::new());
        let gate = ConcurrencyGate::new(100, 2);
        let mut held = Vec::new();
        let mut refused = 0;
        for n in 0..50 {
            match gate.enter(peer(&keyer, &format!("2001:db8:7:{n:x}::1"))) {
                Ok(slot) => held.push(slot),
                Err(full) => {
                    assert_eq!(full, Full::Client);
                    refused += 1;
                }
            }
        }
        assert_eq!(held.len(), 2 * NETWORK_SHARE);
        assert_eq!(refused, 50 - 2 * NETWORK_SHARE);
        // Another /48 and an IPv4 client are still let in.
        let _other = gate.enter(peer(&keyer, "2001:db8:8::1")).unwrap();
        let _v4 = gate.enter(peer(&keyer, "203.0.113.7")).unwrap();
        // Slots given back are the network's again.
        held.truncate(0);
        assert_eq!(gate.held(), 2);
        let _back = gate.enter(peer(&keyer, "2001:db8:7:99::1")).unwrap();
    }
}
