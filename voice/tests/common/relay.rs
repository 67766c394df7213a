//! A lossy, jittery UDP relay between two peers on 127.0.0.1 (netem does not work here).
//!
//! Each peer's ICE candidates are rewritten to the relay's socket facing the other peer, so
//! every datagram — STUN, DTLS, RTP, RTCP — crosses it. Every datagram is delayed by a
//! uniform random 0..`jitter`, which also reorders them; media datagrams (SRTP/SRTCP, first
//! byte 128–191 per RFC 7983) are dropped with probability `loss`. Handshakes are spared the
//! loss so a test measures the audio, not DTLS retransmission back-off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;

/// Impairments applied in both directions.
#[derive(Debug, Clone, Copy)]
pub struct Netem {
    pub loss: f64,
    pub jitter: Duration,
    pub seed: u64,
}

struct Pair {
    /// Socket that peer `a` talks to (stands in for `b`), and its opposite.
    face: HashMap<String, Arc<UdpSocket>>,
    /// Real addresses learnt from each peer's candidates.
    real: Arc<Mutex<HashMap<String, SocketAddr>>>,
}

/// The relays of every pair of peers, created on first use.
pub struct RelayBook {
    netem: Option<Netem>,
    pairs: tokio::sync::Mutex<HashMap<(String, String), Pair>>,
}

fn key(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// Splits `candidate:... <addr> <port> typ ...` into its address and the text around it.
fn candidate_addr(candidate: &str) -> Option<SocketAddr> {
    let fields: Vec<&str> = candidate.split_whitespace().collect();
    let ip = fields.get(4)?;
    let port = fields.get(5)?;
    format!("{ip}:{port}").parse().ok()
}

fn replace_addr(candidate: &str, addr: SocketAddr) -> String {
    let mut fields: Vec<String> = candidate.split_whitespace().map(str::to_owned).collect();
    if fields.len() > 5 {
        fields[4] = addr.ip().to_string();
        fields[5] = addr.port().to_string();
    }
    fields.join(" ")
}

impl RelayBook {
    pub fn new(netem: Option<Netem>) -> Self {
        Self {
            netem,
            pairs: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Rewrites a candidate `from` sends `to` so that it points at the relay; `None` means
    /// drop it: with a relay, only UDP IPv4 candidates are kept (the relay cannot carry TCP
    /// or reach IPv6 from 127.0.0.1), so no path can bypass it.
    pub async fn rewrite(&self, from: &str, to: &str, candidate: &str) -> Option<String> {
        let Some(netem) = self.netem else {
            return Some(candidate.to_owned());
        };
        let udp = candidate
            .split_whitespace()
            .nth(2)
            .is_some_and(|p| p.eq_ignore_ascii_case("udp"));
        let real = candidate_addr(candidate).filter(|a| udp && a.is_ipv4())?;
        let mut pairs = self.pairs.lock().await;
        let pair = match pairs.entry(key(from, to)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let Ok(pair) = start_pair(from, to, netem).await else {
                    return None;
                };
                e.insert(pair)
            }
        };
        if let Ok(mut r) = pair.real.lock() {
            r.insert(from.to_owned(), real);
        }
        // `to` must send to the socket that forwards to `from`: the one facing `to`.
        let addr = pair.face.get(to).and_then(|s| s.local_addr().ok())?;
        Some(replace_addr(candidate, addr))
    }
}

async fn start_pair(a: &str, b: &str, netem: Netem) -> std::io::Result<Pair> {
    let sa = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let sb = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let real: Arc<Mutex<HashMap<String, SocketAddr>>> = Arc::default();
    let seed = netem.seed ^ u64::from(sa.local_addr()?.port());
    // Datagrams arriving on the socket facing `a` go out of the socket facing `b`, to b,
    // and the other way round.
    for (i, (inbound, outbound, dest)) in [(&sa, &sb, b), (&sb, &sa, a)].into_iter().enumerate() {
        tokio::spawn(forward(
            Arc::clone(inbound),
            Arc::clone(outbound),
            dest.to_owned(),
            Arc::clone(&real),
            netem,
            seed + i as u64,
        ));
    }
    let mut face = HashMap::new();
    face.insert(a.to_owned(), sa);
    face.insert(b.to_owned(), sb);
    Ok(Pair { face, real })
}

async fn forward(
    from: Arc<UdpSocket>,
    out: Arc<UdpSocket>,
    dest_peer: String,
    real: Arc<Mutex<HashMap<String, SocketAddr>>>,
    netem: Netem,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; 2048];
    while let Ok((n, _)) = from.recv_from(&mut buf).await {
        let Some(dest) = real.lock().ok().and_then(|r| r.get(&dest_peer).copied()) else {
            continue;
        };
        let media = (128..=191).contains(&buf[0]);
        if media && rng.random_bool(netem.loss) {
            continue;
        }
        let delay = netem.jitter.mul_f64(rng.random::<f64>());
        let data = buf[..n].to_vec();
        let out = Arc::clone(&out);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = out.send_to(&data, dest).await;
        });
    }
}
