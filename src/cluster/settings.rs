//! Cluster settings: this node's id, every node's node-to-node address, and where this node
//! listens and reaches the others when that differs (a proxy or NAT in between).
//!
//! `peers` are the *advertised* addresses: the same list on every node, they go into the Raft
//! membership. `listen` is what this node binds (default: its own `peers` entry); `via` are
//! this node's own routes to some others (default: their `peers` entry). The fault tests run
//! every link through a proxy of theirs this way.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A node's place in a cluster, as configured (`--node-id`, `--peers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node_id: u64,
    /// Every node's advertised node-to-node address, this one's included.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Where this node listens, if not on its `peers` entry (`--raft-listen`).
    pub listen: Option<SocketAddr>,
    /// How this node reaches some others, if not at their advertised address (`--raft-via`).
    pub via: BTreeMap<u64, SocketAddr>,
    /// A new node of a running cluster: it waits to be added instead of initializing one.
    pub join: bool,
    /// A snapshot every this many log entries, the log purged behind it (0: never).
    pub snapshot_every: u64,
}

impl ClusterSettings {
    /// The address this node binds for node-to-node traffic.
    ///
    /// # Panics
    /// Never on validated settings (the node is in `peers`).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| self.peers[&self.node_id])
    }

    /// Where this node connects to reach node `id`, whose advertised address is `advertised`.
    pub fn route(&self, id: u64, advertised: &str) -> String {
        self.via
            .get(&id)
            .map_or_else(|| advertised.to_string(), ToString::to_string)
    }
}

/// Parses `1=host:port,2=host:port,...`.
///
/// # Errors
/// A malformed entry, a duplicate id, or id 0, with what is wrong.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, SocketAddr>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected ID=IP:PORT, e.g. 1=127.0.0.1:7001"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{item:?}: the node id must be a positive integer"))?;
        if id == 0 {
            return Err(format!("{item:?}: node ids start at 1"));
        }
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{item:?}: expected IP:PORT after '='"))?;
        if peers.insert(id, addr).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_lists_are_refused_with_the_reason() {
        let p = parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002,3=[::1]:7003").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&3].to_string(), "[::1]:7003");
        assert!(parse_peers("").unwrap().is_empty());
        for (bad, why) in [
            ("1=127.0.0.1:7001,1=127.0.0.1:7002", "twice"),
            ("0=127.0.0.1:7001", "start at 1"),
            ("x=127.0.0.1:7001", "positive integer"),
            ("1:127.0.0.1:7001", "expected ID=IP:PORT"),
            ("1=localhost", "IP:PORT"),
        ] {
            let err = parse_peers(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
