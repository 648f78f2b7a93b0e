//! Which connections the server keeps: at most `cap` at once. When it is full, a new connection is
//! still taken, and the oldest connection of the client address holding the most is closed to make
//! room. So a flood of connections from a few addresses only ever pushes out its own connections:
//! a client holding fewer connections than the heaviest address (the kubelet's probes, a scraper) is
//! never the one closed, and is never kept waiting for a slot.
//!
//! [`Table`] is the pure bookkeeping; [`Admission`] shares it between the accept loops and the
//! connection tasks and wakes the accept loops when a slot frees.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The address a client is counted under: its IP address, an IPv4-mapped IPv6 address as the IPv4
/// one. Not an IPv6 /64: in a cluster one node's pods often share a /64, and a pod cannot pick its
/// source address, so each address is one client.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Connection bookkeeping. `live` connections are the ones not told to close; `open` also counts
/// the evicted ones until their task has closed them (each still holds a file descriptor).
#[derive(Debug, Default)]
pub struct Table {
    next_id: u64,
    open: usize,
    live: usize,
    /// Live connections per client address, oldest first.
    peers: HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>,
}

/// A connection just admitted: its id and the token that tells its task to close it.
#[derive(Debug)]
pub struct Admitted {
    /// The connection's id in the table.
    pub id: u64,
    /// Cancelled when the connection is evicted.
    pub evict: CancellationToken,
    /// Whether another connection was evicted to make room.
    pub evicted_other: bool,
}

impl Table {
    /// Takes a connection from `peer` (already a [`peer_key`]); when `cap` connections are live, the
    /// oldest connection of the address holding the most is evicted first.
    pub fn admit(&mut self, peer: IpAddr, cap: usize) -> Admitted {
        let evicted_other = self.live >= cap.max(1) && self.evict_heaviest();
        self.next_id += 1;
        let id = self.next_id;
        let evict = CancellationToken::new();
        self.peers.entry(peer).or_default().push_back((id, evict.clone()));
        self.open += 1;
        self.live += 1;
        Admitted { id, evict, evicted_other }
    }

    fn evict_heaviest(&mut self) -> bool {
        // Among equally heavy addresses, the one whose oldest connection is oldest loses it.
        let heaviest = self
            .peers
            .iter()
            .filter_map(|(peer, conns)| conns.front().map(|(oldest, _)| (conns.len(), std::cmp::Reverse(*oldest), *peer)))
            .max();
        let Some((_, _, peer)) = heaviest else { return false };
        let conns = self.peers.get_mut(&peer).expect("peer just found");
        let (_, token) = conns.pop_front().expect("non-empty");
        if conns.is_empty() {
            self.peers.remove(&peer);
        }
        token.cancel();
        self.live -= 1;
        true
    }

    /// The connection's task has closed it.
    pub fn release(&mut self, id: u64, peer: IpAddr) {
        self.open -= 1;
        if let Some(conns) = self.peers.get_mut(&peer)
            && let Some(i) = conns.iter().position(|(c, _)| *c == id)
        {
            conns.remove(i);
            self.live -= 1;
            if conns.is_empty() {
                self.peers.remove(&peer);
            }
        }
    }

    /// Connections holding a file descriptor (live or evicted and still closing).
    pub fn open(&self) -> usize {
        self.open
    }

    /// Connections not told to close.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Live connections of one address.
    pub fn of(&self, peer: IpAddr) -> usize {
        self.peers.get(&peer).map_or(0, VecDeque::len)
    }
}

/// The shared table, plus a wake-up for the accept loops and the shutdown drain.
#[derive(Debug)]
pub struct Admission {
    cap: usize,
    slack: usize,
    table: Mutex<Table>,
    changed: Notify,
}

/// A connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    id: u64,
    peer: IpAddr,
    /// Cancelled when the connection is evicted to make room.
    pub evict: CancellationToken,
    /// Whether admitting this connection evicted another (the server was full).
    pub evicted_other: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.lock().release(self.id, self.peer);
        self.admission.changed.notify_waiters();
    }
}

impl Admission {
    /// At most `cap` live connections; at most `slack` more evicted ones may still be closing.
    pub fn new(cap: usize, slack: usize) -> Arc<Admission> {
        Arc::new(Admission { cap: cap.max(1), slack: slack.max(1), table: Mutex::new(Table::default()), changed: Notify::new() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table is consistent after every call, so a panic elsewhere cannot leave it half-updated.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `ip`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Slot {
        let peer = peer_key(ip);
        let a = self.lock().admit(peer, self.cap);
        Slot { admission: self.clone(), id: a.id, peer, evict: a.evict, evicted_other: a.evicted_other }
    }

    /// Waits until one more connection may be accepted without exceeding the descriptor budget
    /// (`cap` live plus `slack` still closing).
    pub async fn room(&self) {
        self.wait_until(|t| t.open() < self.cap + self.slack).await;
    }

    /// Waits until every connection is closed.
    pub async fn drained(&self) {
        self.wait_until(|t| t.open() == 0).await;
    }

    async fn wait_until(&self, ready: impl Fn(&Table) -> bool) {
        loop {
            // Registered before the check, so a release between the check and the await is not missed.
            let changed = self.changed.notified();
            if ready(&self.lock()) {
                return;
            }
            changed.await;
        }
    }

    /// Connections holding a descriptor now.
    pub fn open(&self) -> usize {
        self.lock().open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        peer_key(s.parse().unwrap())
    }

    #[test]
    fn peers_are_addresses() {
        assert_eq!(ip("10.0.0.7"), "10.0.0.7".parse::<IpAddr>().unwrap());
        assert_eq!(ip("::ffff:10.0.0.7"), ip("10.0.0.7"), "a v4-mapped address is the IPv4 client");
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2::2"), "two pods of one node's /64 are two clients");
    }

    #[test]
    fn below_the_cap_nothing_is_evicted() {
        let mut t = Table::default();
        let a: Vec<Admitted> = (0..4).map(|_| t.admit(ip("10.0.0.1"), 4)).collect();
        assert!(a.iter().all(|a| !a.evicted_other && !a.evict.is_cancelled()));
        assert_eq!((t.open(), t.live(), t.of(ip("10.0.0.1"))), (4, 4, 4));
    }

    #[test]
    fn when_full_the_heaviest_address_loses_its_oldest_connection() {
        let mut t = Table::default();
        let flood: Vec<Admitted> = (0..3).map(|_| t.admit(ip("10.0.0.66"), 4)).collect();
        let probe = t.admit(ip("10.0.0.1"), 4);
        // Full: every newcomer pushes out the flood's oldest, never the probe.
        let scraper = t.admit(ip("10.0.0.2"), 4);
        assert!(scraper.evicted_other && flood[0].evict.is_cancelled() && !flood[1].evict.is_cancelled());
        let more = t.admit(ip("10.0.0.66"), 4);
        assert!(more.evicted_other && flood[1].evict.is_cancelled());
        assert!(!probe.evict.is_cancelled() && !scraper.evict.is_cancelled());
        assert_eq!((t.live(), t.open()), (4, 6), "evicted connections hold their descriptor until closed");
        t.release(flood[0].id, ip("10.0.0.66"));
        t.release(flood[1].id, ip("10.0.0.66"));
        assert_eq!((t.live(), t.open()), (4, 4));
        // Addresses holding one connection each: the oldest goes first.
        let mut t = Table::default();
        let first = t.admit(ip("10.0.1.1"), 2);
        let second = t.admit(ip("10.0.1.2"), 2);
        t.admit(ip("10.0.1.3"), 2);
        assert!(first.evict.is_cancelled() && !second.evict.is_cancelled());
    }

    #[test]
    fn release_frees_the_place_whether_evicted_or_not() {
        let mut t = Table::default();
        let a = t.admit(ip("10.0.0.1"), 1);
        let b = t.admit(ip("10.0.0.2"), 1);
        assert!(a.evict.is_cancelled());
        t.release(b.id, ip("10.0.0.2"));
        t.release(a.id, ip("10.0.0.1"));
        assert_eq!((t.open(), t.live(), t.of(ip("10.0.0.1"))), (0, 0, 0));
        assert!(t.peers.is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn room_waits_for_a_release() {
        let adm = Admission::new(1, 1);
        let a = adm.admit("10.0.0.1".parse().unwrap());
        adm.room().await; // one live, none closing: room for one more
        let b = adm.admit("10.0.0.2".parse().unwrap());
        assert!(a.evict.is_cancelled());
        let waiter = tokio::spawn({
            let adm = adm.clone();
            async move { adm.room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "cap 1 + slack 1 are taken");
        drop(a);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await.unwrap().unwrap();
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(1), adm.drained()).await.unwrap();
        assert_eq!(adm.open(), 0);
    }
}
