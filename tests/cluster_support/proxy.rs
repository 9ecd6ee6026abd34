//! A fault-injecting TCP proxy of our own between cluster nodes: one [`Link`] per direction
//! of each pair of nodes (node A reaches node B through link A→B, given to A with
//! `--raft-via`), so one node can be cut off from the others in both directions while the
//! rest still talk.
//!
//! Faults, each settable at any time on a link:
//! - **cut**: open connections are closed and new ones are accepted and closed at once (the
//!   node sees a dead peer), until healed;
//! - **delay**: every chunk of bytes is held up to that long (at random) before it is
//!   forwarded, in order;
//! - **drop**: with that probability per chunk, the connection is reset instead and the chunk
//!   lost (a TCP stream cannot lose bytes and carry on; what is lost is the message in flight,
//!   and the gRPC channel reconnects).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Faults {
    cut: AtomicBool,
    delay_ms: AtomicU64,
    /// Per million chunks.
    drop_ppm: AtomicU32,
    /// Cancelled on a cut: closes every connection open then.
    open: Mutex<CancellationToken>,
}

/// One direction between two nodes: listens on `addr`, forwards to the target node.
pub struct Link {
    pub addr: SocketAddr,
    faults: Arc<Faults>,
    stop: CancellationToken,
}

impl Link {
    /// A link forwarding what reaches it to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = super::ports::bind_fresh();
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Faults::default());
        let stop = CancellationToken::new();
        let (f, s) = (faults.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = s.cancelled() => return,
                };
                let Ok((inbound, _)) = accepted else { continue };
                if f.cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let conn = f.open.lock().unwrap().clone();
                tokio::spawn(forward(inbound, target, f.clone(), conn, s.clone()));
            }
        });
        Self { addr, faults, stop }
    }

    pub fn cut(&self) {
        self.faults.cut.store(true, Ordering::SeqCst);
        let mut open = self.faults.open.lock().unwrap();
        open.cancel();
        *open = CancellationToken::new();
    }

    pub fn heal(&self) {
        self.faults.cut.store(false, Ordering::SeqCst);
    }

    /// The longest delay per chunk and the probability (0..1) of a reset per chunk.
    pub fn degrade(&self, delay: Duration, drop: f64) {
        self.faults
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        self.faults
            .drop_ppm
            .store((drop * 1e6) as u32, Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.cancel();
        self.faults.open.lock().unwrap().cancel();
    }
}

async fn forward(
    inbound: TcpStream,
    target: SocketAddr,
    faults: Arc<Faults>,
    conn: CancellationToken,
    stop: CancellationToken,
) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return; // the node is down: the caller sees the connection close
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    // Either direction failing (or dropping a chunk) closes both.
    let done = conn.child_token();
    let a = tokio::spawn(pump(ri, wo, faults.clone(), done.clone()));
    let b = tokio::spawn(pump(ro, wi, faults, done.clone()));
    tokio::select! {
        () = done.cancelled() => {}
        () = stop.cancelled() => done.cancel(),
    }
    a.abort();
    b.abort();
}

/// Copies `from` to `to`, each chunk after the link's delay, unless dropped; cancels `done`
/// when it stops.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<Faults>,
    done: CancellationToken,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = {
        let done = done.clone();
        tokio::spawn(async move {
            while let Some((at, chunk)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                if to.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            done.cancel();
        })
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut last = tokio::time::Instant::now();
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            () = done.cancelled() => break,
        };
        let ppm = faults.drop_ppm.load(Ordering::SeqCst);
        if ppm > 0 && rand::thread_rng().gen_range(0..1_000_000) < ppm {
            break; // the chunk is lost with the connection
        }
        let max = faults.delay_ms.load(Ordering::SeqCst);
        let delay = Duration::from_millis(rand::thread_rng().gen_range(0..=max));
        // Never before the previous chunk: the stream stays in order.
        last = last.max(tokio::time::Instant::now() + delay);
        if tx.send((last, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    done.cancel();
    writer.abort();
}

/// Links between every ordered pair of nodes.
pub struct Network {
    links: BTreeMap<(u64, u64), Link>,
}

impl Network {
    /// Links between the nodes listening (node-to-node) at `nodes`.
    pub async fn start(nodes: &BTreeMap<u64, SocketAddr>) -> Self {
        let mut links = BTreeMap::new();
        for from in nodes.keys() {
            for (to, addr) in nodes {
                if from != to {
                    links.insert((*from, *to), Link::start(*addr).await);
                }
            }
        }
        Self { links }
    }

    /// The `--raft-via` of node `from`: every other node through its link.
    pub fn via(&self, from: u64) -> String {
        self.links
            .iter()
            .filter(|((f, _), _)| *f == from)
            .map(|((_, to), l)| format!("{to}={}", l.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cuts node `id` off: no traffic from or to it.
    pub fn isolate(&self, id: u64) {
        for ((from, to), link) in &self.links {
            if *from == id || *to == id {
                link.cut();
            }
        }
    }

    /// Every link up again (faults set by [`Network::degrade`] stay).
    pub fn heal(&self) {
        self.links.values().for_each(Link::heal);
    }

    /// A delay and drop probability on every link from or to node `id`.
    pub fn degrade_node(&self, id: u64, delay: Duration, drop: f64) {
        for ((from, to), link) in &self.links {
            if *from == id || *to == id {
                link.degrade(delay, drop);
            }
        }
    }

    /// The same delay and drop probability on every link.
    pub fn degrade(&self, delay: Duration, drop: f64) {
        for link in self.links.values() {
            link.degrade(delay, drop);
        }
    }
}
