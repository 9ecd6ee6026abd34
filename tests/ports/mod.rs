//! Loopback ports for the servers a test starts, none handed out twice in one test process.
//!
//! A port is found by binding port 0 and letting the listener go, so the kernel may hand the same
//! port to the next bind: a cluster test asking for a dozen ports at once then got one node's
//! Raft port equal to another's legacy port, and that node never started. Ports given out are
//! remembered for the life of the process and never returned again.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// A loopback TCP port nothing listens on now, and that no earlier call in this process returned.
pub fn free_port() -> u16 {
    bind_fresh()
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// A loopback listener (for a test's own proxy) on a port no call here returned before: the
/// kernel may give a listener on port 0 a port just handed to a server that has not bound it yet.
pub fn bind_fresh() -> std::net::TcpListener {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let mut given = GIVEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port to bind");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        if given.insert(port) {
            return listener;
        }
    }
}
