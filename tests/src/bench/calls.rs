//! `sohbet-bench calls`: calls through the real server (its release binary, a process of its
//! own).
//!
//! Figures:
//! - join → first audio: one participant joins a call of 1, 3 or 5 others (calls of 2, 4, 6);
//!   for each other participant, the time from just before `join_call` to the first 20 ms of
//!   the joiner's tone handed to that participant's speaker (found in what it played, by
//!   content). Real webrtc-rs peers, Opus and jitter buffers, all in this process.
//! - signaling load: 50 concurrent two-person calls joining, exchanging an offer, an answer
//!   and candidates of real sizes, and leaving, over and over: relay latency, signals per
//!   second, and the server's CPU and memory meanwhile.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use protocol::{
    gateway::{ClientFrame, Event, ServerFrame},
    voice::VoiceSignal,
};
use sohbet_client::gateway::{self, GatewayHandle};
use tokio_tungstenite::tungstenite::Message;

use super::{
    gateway::{connect, cpu_and_rss, fabricate_group, fabricate_users, Bench, Socket},
    print_table, Samples,
};
use crate::calls::{tone_options, InCall, RATE};

/// Rounds per call size: the joiner leaves and joins again.
const ROUNDS: usize = 3;
/// Analysis window: one Opus frame.
const WINDOW: usize = RATE as usize / 50;
/// A window holds the joiner's tone above this power (a third of the clean tone's).
const PRESENT: f32 = 0.015;
/// Tones 250 Hz apart: with 20 ms windows (50 Hz bins) neighbours do not leak into each
/// other.
fn tone(i: usize) -> f32 {
    500.0 + 250.0 * i as f32
}

/// How long the signaling load runs.
const LOAD: Duration = Duration::from_secs(10);
const LOAD_CALLS: usize = 50;

pub async fn run() {
    let bench = Bench::start().await;
    join_to_audio(&bench).await;
    signaling_load(&bench).await;
}

async fn online(base: &str, token: &str) -> (GatewayHandle, tokio::task::JoinHandle<()>) {
    let client = sohbet_client::Client::new(base)
        .expect("client")
        .with_token(token.to_owned());
    let (handle, mut events) = gateway::connect(
        client.gateway_url(),
        token.to_owned(),
        gateway::GatewayOptions::default(),
    );
    while let Some(e) = events.recv().await {
        if matches!(e, gateway::GatewayEvent::Ready { .. }) {
            break;
        }
    }
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    (handle, drain)
}

async fn join(base: &str, token: &str, gw: &GatewayHandle, group: i64, freq: f32) -> InCall {
    let client = sohbet_client::Client::new(base)
        .expect("client")
        .with_token(token.to_owned());
    let (options, recording) = tone_options(freq);
    let (handle, events) = client
        .join_call(gw, group, options)
        .await
        .expect("join_call");
    InCall {
        handle,
        events,
        recording,
        history: Vec::new(),
    }
}

/// When `freq` first reaches `call`'s speaker after `since`.
fn first_heard(call: &InCall, freq: f32, since: Instant) -> Option<Instant> {
    let samples = call.recording.samples();
    let handoffs = call.recording.handoffs();
    let start = handoffs.iter().find(|h| h.at >= since)?.frame;
    let mut i = start;
    while i + WINDOW <= samples.len() {
        if voice::analysis::tone_power(&samples[i..i + WINDOW], RATE, freq) > PRESENT {
            return call.recording.handoff_time(i);
        }
        i += WINDOW / 2;
    }
    None
}

async fn join_to_audio(bench: &Bench) {
    let base = &bench.server.base;
    let users = fabricate_users(&bench.pool, &bench.redis_url, &bench.prefix, 0, 6).await;
    let mut rows = Vec::new();
    for size in [2usize, 4, 6] {
        let members = &users[..size];
        let ids: Vec<i64> = members.iter().map(|(id, _)| *id).collect();
        let group = fabricate_group(&bench.pool, &ids).await;
        let mut gateways = Vec::new();
        for (_, token) in members {
            gateways.push(online(base, token).await);
        }
        let mut present = Vec::new();
        for (i, (_, token)) in members.iter().enumerate().skip(1) {
            let mut call = join(base, token, &gateways[i].0, group, tone(i)).await;
            let others: Vec<i64> = ids[1..i].to_vec();
            call.connected_to(&others, Duration::from_secs(30)).await;
            present.push(call);
        }
        let mut samples = Samples::default();
        let mut missing = 0;
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            let joiner = join(base, &members[0].1, &gateways[0].0, group, tone(0)).await;
            let deadline = t0 + Duration::from_secs(20);
            let mut pending: Vec<usize> = (0..present.len()).collect();
            while !pending.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                pending.retain(|&p| match first_heard(&present[p], tone(0), t0) {
                    Some(at) => {
                        samples.push(at.duration_since(t0));
                        false
                    }
                    None => true,
                });
            }
            missing += pending.len();
            joiner.handle.leave().await;
            // Let the others drop the joiner before the next round.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        rows.push(vec![
            size.to_string(),
            samples.len().to_string(),
            format!("{:.0}", samples.percentile_ms(50.0)),
            format!("{:.0}", samples.percentile_ms(95.0)),
            format!("{:.0}", samples.percentile_ms(100.0)),
            missing.to_string(),
        ]);
        for call in present {
            call.handle.leave().await;
        }
        for (handle, drain) in gateways {
            handle.close().await;
            drain.abort();
        }
    }
    print_table(
        "Join → first audio heard by each other participant (ms; real server, webrtc-rs, Opus)",
        &["call size", "samples", "p50", "p95", "max", "never heard"],
        &rows,
    );
}

/// A realistic audio-only SDP (~2.5 KiB) and candidate line.
fn fake_sdp(kind: &str) -> String {
    let mut sdp = format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na={kind}\r\n");
    while sdp.len() < 2500 {
        sdp.push_str("a=rtcp-fb:111 transport-cc\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n");
    }
    sdp
}

const CANDIDATE: &str =
    "candidate:1966762134 1 udp 2130706431 127.0.0.1 50000 typ host generation 0 ufrag abcd";
const CANDIDATES_PER_SIDE: usize = 4;

async fn send(socket: &mut Socket, frame: &ClientFrame) -> bool {
    let Ok(text) = serde_json::to_string(frame) else {
        return false;
    };
    socket.send(Message::Text(text.into())).await.is_ok()
}

/// Reads until `pred` matches a frame (answering nothing; heartbeats are sent by the loop).
async fn until(socket: &mut Socket, mut pred: impl FnMut(&ServerFrame) -> bool) -> bool {
    let wait = async {
        while let Some(Ok(msg)) = socket.next().await {
            if let Message::Text(text) = msg {
                if let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) {
                    if pred(&frame) {
                        return true;
                    }
                }
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or(false)
}

fn is_signal(frame: &ServerFrame, want: fn(&VoiceSignal) -> bool) -> bool {
    matches!(frame, ServerFrame::Event { event: Event::VoiceSignal { signal, .. } } if want(signal))
}

/// One pair calling over and over until `deadline`; returns completed calls.
async fn call_loop(
    mut a: Socket,
    mut b: Socket,
    ids: (i64, i64),
    group: i64,
    deadline: Instant,
    relay: Arc<Mutex<Samples>>,
) -> usize {
    let (offer, answer) = (fake_sdp("offer"), fake_sdp("answer"));
    let mut calls = 0;
    while Instant::now() < deadline {
        let join = |reference| ClientFrame::VoiceJoin {
            group_id: group,
            muted: false,
            deafened: false,
            reference: Some(reference),
        };
        if !send(&mut a, &join(1)).await
            || !until(&mut a, |f| matches!(f, ServerFrame::VoiceJoined { .. })).await
            || !send(&mut b, &join(2)).await
            || !until(&mut b, |f| matches!(f, ServerFrame::VoiceJoined { .. })).await
        {
            break;
        }
        let signal = |to, signal| ClientFrame::VoiceSignal {
            group_id: group,
            to,
            signal,
            reference: None,
        };
        let sent = Instant::now();
        send(
            &mut b,
            &signal(ids.0, VoiceSignal::Offer { sdp: offer.clone() }),
        )
        .await;
        if !until(&mut a, |f| {
            is_signal(f, |s| matches!(s, VoiceSignal::Offer { .. }))
        })
        .await
        {
            break;
        }
        if let Ok(mut r) = relay.lock() {
            r.push(sent.elapsed());
        }
        send(
            &mut a,
            &signal(
                ids.1,
                VoiceSignal::Answer {
                    sdp: answer.clone(),
                },
            ),
        )
        .await;
        for _ in 0..CANDIDATES_PER_SIDE {
            let candidate = VoiceSignal::Candidate {
                candidate: CANDIDATE.into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            };
            send(&mut a, &signal(ids.1, candidate.clone())).await;
            send(&mut b, &signal(ids.0, candidate)).await;
        }
        let mut seen = 0;
        if !until(&mut b, |f| {
            if matches!(
                f,
                ServerFrame::Event {
                    event: Event::VoiceSignal { .. }
                }
            ) {
                seen += 1;
            }
            seen > CANDIDATES_PER_SIDE
        })
        .await
        {
            break;
        }
        send(&mut a, &ClientFrame::VoiceLeave).await;
        send(&mut b, &ClientFrame::VoiceLeave).await;
        send(&mut a, &ClientFrame::Heartbeat).await;
        send(&mut b, &ClientFrame::Heartbeat).await;
        calls += 1;
    }
    calls
}

async fn signaling_load(bench: &Bench) {
    let users = fabricate_users(
        &bench.pool,
        &bench.redis_url,
        &bench.prefix,
        100,
        LOAD_CALLS * 2,
    )
    .await;
    let mut pairs = Vec::new();
    for pair in users.chunks(2) {
        let group = fabricate_group(&bench.pool, &[pair[0].0, pair[1].0]).await;
        let a = connect(&bench.server.base, &pair[0].1).await;
        let b = connect(&bench.server.base, &pair[1].1).await;
        pairs.push((a, b, (pair[0].0, pair[1].0), group));
    }
    let pid = bench.server.pid;
    let (cpu0, rss0) = cpu_and_rss(pid);
    let started = Instant::now();
    let deadline = started + LOAD;
    let relay = Arc::new(Mutex::new(Samples::default()));
    let peak = Arc::new(Mutex::new(rss0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let rss = cpu_and_rss(pid).1;
                if let Ok(mut p) = peak.lock() {
                    *p = (*p).max(rss);
                }
            }
        })
    };
    let tasks: Vec<_> = pairs
        .into_iter()
        .map(|(a, b, ids, group)| {
            tokio::spawn(call_loop(a, b, ids, group, deadline, relay.clone()))
        })
        .collect();
    let mut calls = 0;
    for t in tasks {
        calls += t.await.unwrap_or(0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    sampler.abort();
    let (cpu1, rss1) = cpu_and_rss(pid);
    let signals = calls * (2 + 2 * CANDIDATES_PER_SIDE);
    let mut relay = std::mem::take(&mut *relay.lock().unwrap_or_else(|e| e.into_inner()));
    let peak = *peak.lock().unwrap_or_else(|e| e.into_inner());
    print_table(
        &format!("Signaling load: {LOAD_CALLS} concurrent two-person calls joining, signaling and leaving for {}s", LOAD.as_secs()),
        &[
            "calls set up",
            "calls/s",
            "signals/s",
            "offer relay p50 ms",
            "p99 ms",
            "server CPU %",
            "server RSS MiB (before → peak → after)",
        ],
        &[vec![
            calls.to_string(),
            format!("{:.0}", calls as f64 / elapsed),
            format!("{:.0}", signals as f64 / elapsed),
            format!("{:.1}", relay.percentile_ms(50.0)),
            format!("{:.1}", relay.percentile_ms(99.0)),
            format!("{:.0}", (cpu1 - cpu0) / elapsed * 100.0),
            format!(
                "{:.1} → {:.1} → {:.1}",
                rss0 as f64 / 1024.0,
                peak as f64 / 1024.0,
                rss1 as f64 / 1024.0
            ),
        ]],
    );
}
