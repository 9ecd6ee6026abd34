//! Cluster settings: this node's id and every node's node-to-node address.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A node's place in a cluster, as configured (`--node-id`, `--peers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node_id: u64,
    /// Every node's node-to-node address, this one's included (it listens there).
    pub peers: BTreeMap<u64, SocketAddr>,
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
