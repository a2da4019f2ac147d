//! Free loopback ports for servers started by tests
//!
//! The kernel hands out a free port for `127.0.0.1:0`; we drop the listener and let the server
//! bind it. Ports handed out once are remembered for the life of the process, so two servers
//! started in parallel by one test binary never get the same port even if the kernel reuses it.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Ports this process has already given to a server.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free loopback TCP port (bind 127.0.0.1:0, read the port, drop the listener).
///
/// Another process may still take it before the server binds it; the servers in this crate
/// retry once with new ports when that happens.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free loopback TCP ports, all held open together while they are chosen.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut taken = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        // keep every listener open so that the kernel cannot return the same port twice
        let port = bind_any(&mut listeners);
        if taken.insert(port) {
            ports.push(port);
        }
    }
    ports
}

/// `n` distinct free loopback TCP ports `p` such that `p + offset` is free as well (and is a
/// valid port), for servers that bind a second port at a fixed distance from the first: a Redis
/// Cluster node's bus listens on its port + 10000. Both ports of each pair count as handed out.
pub(crate) fn free_port_pairs(n: usize, offset: u16) -> Vec<u16> {
    let mut taken = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    let mut listeners = Vec::with_capacity(2 * n);
    let mut ports = Vec::with_capacity(n);
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        assert!(
            attempts < 10_000,
            "found only {} of {n} free loopback port pairs {offset} apart",
            ports.len()
        );
        // keep every listener open so that the kernel cannot return the same port twice
        let port = bind_any(&mut listeners);
        let Some(partner) = port.checked_add(offset) else {
            continue;
        };
        if taken.contains(&port) || taken.contains(&partner) {
            continue;
        }
        // bound, not just probed: the partner of a later pair must not be this one either
        let Ok(partner_listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, partner)) else {
            continue;
        };
        listeners.push(partner_listener);
        taken.insert(port);
        taken.insert(partner);
        ports.push(port);
    }
    ports
}

/// Binds a listener on a loopback port the kernel picks, keeps it in `listeners` and returns
/// the port.
fn bind_any(listeners: &mut Vec<TcpListener>) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("cannot bind 127.0.0.1:0: is the loopback interface up?");
    let port = listener
        .local_addr()
        .expect("a bound listener has an address")
        .port();
    listeners.push(listener);
    port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports(20);
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), 20);
        for port in ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port should be free");
        }
    }

    #[test]
    fn port_pairs_are_distinct_and_both_bindable() {
        let ports = free_port_pairs(3, 10_000);
        assert_eq!(ports.len(), 3);
        let mut all: Vec<u16> = ports.iter().flat_map(|&p| [p, p + 10_000]).collect();
        for &port in &all {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port should be free");
        }
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 6);
    }
}
