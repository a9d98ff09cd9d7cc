//! A cap on the open connections from one client address, so one client cannot take every
//! connection slot of a listener. IPv6 clients are counted by their /64, the block one host or
//! one customer line usually gets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per client, for one listener.
pub(crate) struct ClientCap {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it gives its place back.
pub(crate) struct ClientSlot {
    cap: Arc<ClientCap>,
    client: IpAddr,
}

impl ClientCap {
    /// `limit` connections per client; 0 means no cap.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(ClientCap {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `address`, unless that client is at the cap.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Option<ClientSlot> {
        if self.limit == 0 {
            return Some(ClientSlot {
                cap: self.clone(),
                client: IpAddr::from([0u8; 4]),
            });
        }
        let client = client_of(address);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            cap: self.clone(),
            client,
        })
    }

    #[cfg(test)]
    fn open(&self, address: IpAddr) -> usize {
        let open = self.open.lock().unwrap();
        open.get(&client_of(address)).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if self.cap.limit == 0 {
            return;
        }
        let mut open = self.cap.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64 (an IPv4-mapped IPv6
/// address counts as the IPv4 one).
fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_is_capped_and_gets_its_places_back() {
        let cap = ClientCap::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = cap.admit(a).unwrap();
        let _second = cap.admit(a).unwrap();
        assert!(cap.admit(a).is_none(), "a third from the same client");
        assert!(cap.admit(b).is_some(), "another client is not affected");
        drop(first);
        assert_eq!(cap.open(a), 1);
        assert!(cap.admit(a).is_some());
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_addresses_as_ipv4() {
        let cap = ClientCap::new(1);
        let _held = cap.admit("2001:db8:1:2::10".parse().unwrap()).unwrap();
        assert!(cap.admit("2001:db8:1:2::99".parse().unwrap()).is_none());
        assert!(cap.admit("2001:db8:1:3::10".parse().unwrap()).is_some());
        let _v4 = cap.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert!(cap.admit("::ffff:192.0.2.7".parse().unwrap()).is_none());
    }

    #[test]
    fn zero_means_no_cap() {
        let cap = ClientCap::new(0);
        let held: Vec<_> = (0..100)
            .map(|_| cap.admit("127.0.0.1".parse().unwrap()).unwrap())
            .collect();
        assert_eq!(held.len(), 100);
    }
}
