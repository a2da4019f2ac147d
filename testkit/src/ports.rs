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
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind 127.0.0.1:0: is the loopback interface up?");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        // keep every listener open so that the kernel cannot return the same port twice
        listeners.push(listener);
        if taken.insert(port) {
            ports.push(port);
        }
    }
    ports
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
}
