//! Real webrtc-rs peers over loopback with real Opus: what each peer hears is compared with
//! what the others sent.

mod common;

use std::time::Duration;

use common::*;
use voice::analysis::{sine, synth_speech, tone_power};
use voice::dsp::level_dbfs;
use voice::CallEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_hear_each_other() {
    let alice = with_lead_in(&synth_speech(1, RATE, 5.0));
    let bob = with_lead_in(&synth_speech(2, RATE, 5.0));
    let mesh = start_mesh(
        vec![("alice", alice.clone()), ("bob", bob.clone())],
        loopback_config(),
        None,
    )
    .await;
    run_for(LEAD_IN_SECS + 5.5).await;
    let heard_by_alice = mesh.peers[0].recording.samples();
    let heard_by_bob = mesh.peers[1].recording.samples();
    let a_from_b = similarity(&bob, &heard_by_alice);
    let b_from_a = similarity(&alice, &heard_by_bob);
    let a_from_self = similarity(&alice, &heard_by_alice);
    eprintln!("similarity: alice<-bob {a_from_b:.3} bob<-alice {b_from_a:.3} alice<-self {a_from_self:.3}");
    assert!(a_from_b > 0.8, "alice hears bob with similarity {a_from_b}");
    assert!(b_from_a > 0.8, "bob hears alice with similarity {b_from_a}");
    assert!(a_from_self < 0.4, "alice hears herself: {a_from_self}");
    // A clean network costs no redundancy: RED is negotiated but not sent, and packets are
    // 20 ms long.
    for s in mesh.peers.iter().flat_map(|p| p.call.stats()) {
        assert!(
            !s.sending_red && s.red_received == 0,
            "RED without loss: {s:?}"
        );
        assert_eq!(
            (s.sending_packet_ms, s.received_packet_ms),
            (20.0, 20.0),
            "packet length on a clean network: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_each_hear_both_others_mixed() {
    let freqs = [440.0, 660.0, 990.0];
    let names = ["ana", "ben", "cem"];
    let members = names
        .iter()
        .zip(freqs)
        .map(|(n, f)| (*n, with_lead_in(&sine(f, RATE, 8.0, 0.25))))
        .collect();
    let mesh = start_mesh(members, loopback_config(), None).await;
    run_for(LEAD_IN_SECS + 4.0).await;
    for (i, peer) in mesh.peers.iter().enumerate() {
        let heard = peer.recording.samples();
        // Judge the last two seconds, when every tone is surely flowing.
        let tail = &heard[heard.len().saturating_sub(2 * RATE as usize)..];
        for (j, f) in freqs.iter().enumerate() {
            // The median over 100 ms windows: a concealed or stretched frame breaks a tone's
            // phase, which would cancel a single long Goertzel sum though the tone is there.
            let mut windows: Vec<f32> = tail
                .chunks_exact(RATE as usize / 10)
                .map(|w| tone_power(w, RATE, *f))
                .collect();
            windows.sort_by(f32::total_cmp);
            let p = windows[windows.len() / 2];
            if i == j {
                assert!(p < 0.001, "{} hears its own {f} Hz tone: {p}", peer.name);
            } else {
                // A 0.25 sine has power 0.031; allow for the mixer and codec.
                assert!(
                    p > 0.015,
                    "{} hears {f} Hz from {} at power {p}",
                    peer.name,
                    names[j]
                );
            }
        }
    }
}

/// A talker sending a steady tone and a silent listener, both past the lead-in.
async fn talker_and_listener() -> Mesh {
    let mesh = start_mesh(
        vec![
            ("talker", with_lead_in(&sine(500.0, RATE, 10.0, 0.3))),
            ("listener", vec![0.0; RATE as usize * 14]),
        ],
        loopback_config(),
        None,
    )
    .await;
    run_for(LEAD_IN_SECS).await;
    mesh
}

/// Level (dBFS) of what `rec` plays over the next second, after 0.3 s for audio in flight
/// to drain.
async fn level_heard(rec: &voice::audio::wav::Recording) -> f32 {
    run_for(0.3).await;
    let before = rec.samples().len();
    run_for(1.0).await;
    level_dbfs(&rec.samples()[before..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muting_silences_the_peer_and_unmuting_restores_it() {
    let mesh = talker_and_listener().await;
    let (talker, rec) = (&mesh.peers[0].call, &mesh.peers[1].recording);
    let open = level_heard(rec).await;
    talker.set_muted(true);
    let muted = level_heard(rec).await;
    // The meter and speaking indicator keep working while muted ("you are muted" hints).
    let (meter, speaking) = (talker.input_level_db(), talker.is_speaking());
    talker.set_muted(false);
    let unmuted = level_heard(rec).await;
    assert!(open > -20.0, "before muting: {open} dBFS");
    assert!(muted < -60.0, "muted: {muted} dBFS");
    assert!(unmuted > -20.0, "unmuted: {unmuted} dBFS");
    assert!(
        meter > -20.0 && speaking,
        "muted meter {meter} dBFS, speaking {speaking}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_volume_scales_what_is_heard() {
    let mesh = talker_and_listener().await;
    let (listener, rec) = (&mesh.peers[1].call, &mesh.peers[1].recording);
    let full = level_heard(rec).await;
    listener.set_peer_volume("talker", 0.5).expect("known peer");
    let half = level_heard(rec).await;
    listener.set_peer_volume("talker", 0.0).expect("known peer");
    let off = level_heard(rec).await;
    assert!(
        (full - half - 6.0).abs() < 1.5,
        "full {full} dBFS, half volume {half} dBFS"
    );
    assert!(off < -60.0, "volume 0: {off} dBFS");
    assert!(listener.set_peer_volume("nobody", 1.0).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deafened_peer_hears_nothing_and_sends_nothing() {
    let mesh = talker_and_listener().await;
    let (talker, listener) = (&mesh.peers[0], &mesh.peers[1]);
    talker.call.set_deafened(true);
    listener.call.set_deafened(true);
    let listener_hears = level_heard(&listener.recording).await;
    listener.call.set_deafened(false);
    // The talker is still deafened, so still muted: the listener now plays its silence.
    let while_talker_deaf = level_heard(&listener.recording).await;
    talker.call.set_deafened(false);
    let after = level_heard(&listener.recording).await;
    assert!(
        listener_hears < -60.0,
        "deafened listener plays {listener_hears} dBFS"
    );
    assert!(
        while_talker_deaf < -60.0,
        "deafened talker sends {while_talker_deaf} dBFS"
    );
    assert!(after > -20.0, "after undeafening: {after} dBFS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_talk_sends_only_while_pressed() {
    let mesh = talker_and_listener().await;
    let (talker, rec) = (&mesh.peers[0].call, &mesh.peers[1].recording);
    talker.set_push_to_talk(true);
    let released = level_heard(rec).await;
    talker.ptt_press();
    let pressed = level_heard(rec).await;
    talker.ptt_release();
    let released_again = level_heard(rec).await;
    assert!(released < -60.0, "before pressing: {released} dBFS");
    assert!(pressed > -20.0, "pressed: {pressed} dBFS");
    assert!(
        released_again < -60.0,
        "after releasing: {released_again} dBFS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_leaving_is_noticed() {
    let silence = vec![0.0; RATE as usize * 10];
    let mut mesh = start_mesh(
        vec![
            ("stay", silence.clone()),
            ("go", silence.clone()),
            ("crash", silence),
        ],
        loopback_config(),
        None,
    )
    .await;
    let crash = mesh.peers.pop().expect("three peers");
    let go = mesh.peers.pop().expect("two peers");
    go.call.leave().await;
    let left = mesh.peers[0]
        .wait_event(
            Duration::from_secs(5),
            |e| matches!(e, CallEvent::PeerLeft { peer, .. } if peer == "go"),
        )
        .await;
    assert!(left.is_some(), "a peer saying bye was not noticed");
    // Without a bye: the process just goes away.
    drop(crash);
    let left = mesh.peers[0]
        .wait_event(
            Duration::from_secs(20),
            |e| matches!(e, CallEvent::PeerLeft { peer, .. } if peer == "crash"),
        )
        .await;
    assert!(left.is_some(), "a peer vanishing was not noticed");
    assert!(mesh.peers[0].call.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_survives_ten_percent_loss_and_thirty_ms_jitter() {
    let alice = with_lead_in(&synth_speech(3, RATE, 8.0));
    let bob = with_lead_in(&synth_speech(4, RATE, 8.0));
    let netem = relay::Netem {
        loss: 0.10,
        jitter: Duration::from_millis(30),
        seed: 7,
    };
    let mesh = start_mesh(
        vec![("alice", alice.clone()), ("bob", bob.clone())],
        loopback_config(),
        Some(netem),
    )
    .await;
    run_for(LEAD_IN_SECS + 8.5).await;
    let score = similarity(&alice, &mesh.peers[1].recording.samples());
    let stats = mesh.peers[1].call.stats();
    // What bob reports over RTCP is what alice's encoder sizes its FEC (and bitrate) by.
    let reported_to_alice = mesh.peers[0].call.stats()[0].remote_loss;
    eprintln!("similarity under loss {score:.3}; bob's stats {stats:#?}");
    assert!(
        (0.03..0.25).contains(&reported_to_alice),
        "alice hears of {reported_to_alice} loss over RTCP"
    );
    let s = &stats[0];
    assert!((0.05..0.2).contains(&s.loss), "measured loss {}", s.loss);
    assert!(
        s.jitter_buffer_ms >= 20.0,
        "jitter buffer did not grow: {}",
        s.jitter_buffer_ms
    );
    // Frames wait in the jitter buffer (the network's 0–20 ms spread at least), and the
    // receive side's share adds the playout queue (10 ms at least) to that wait.
    assert!(
        (5.0..200.0).contains(&s.jitter_buffer_delay_ms),
        "frames waited {} ms in the jitter buffer",
        s.jitter_buffer_delay_ms
    );
    assert!(
        s.receive_delay_ms >= s.jitter_buffer_delay_ms + 10.0,
        "receive delay {} ms for a jitter-buffer wait of {} ms",
        s.receive_delay_ms,
        s.jitter_buffer_delay_ms
    );
    // Lost frames come back from the RED copies once bob's reports ask for them, and from
    // in-band FEC before that or when every copy was lost too (which may not happen).
    assert!(
        s.red_frames + s.fec_frames > 0,
        "no lost frame was rebuilt (RED {}, FEC {})",
        s.red_frames,
        s.fec_frames
    );
    assert!(score > 0.6, "speech under loss scores {score}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_policy_never_reveals_a_host_candidate() {
    init_tracing();
    let start = |ice_servers: Vec<voice::IceServer>| async move {
        let (in_tx, in_rx) = tokio::sync::mpsc::channel(8);
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(64);
        let config = voice::CallConfig {
            ice_policy: voice::IcePolicy::Relay,
            ice_servers,
            ..loopback_config()
        };
        let (call, _events) = voice::Call::start(
            config,
            Box::new(voice::audio::wav::WavSource::from_samples(
                vec![0.0; 48_000],
                MONO,
            )),
            Box::new(voice::audio::wav::WavSink::new(MONO)),
            in_rx,
            out_tx,
        )
        .await
        .expect("call starts");
        (call, in_tx, out_rx)
    };
    // Relay-only with no TURN server: refused outright rather than falling back to host.
    let (call, _in, _out) = start(Vec::new()).await;
    assert!(call.connect("someone").await.is_err());

    // With a TURN server (here unreachable), the offer goes out and no host candidate does.
    let turn = voice::IceServer {
        urls: vec!["turn:127.0.0.1:9?transport=udp".to_owned()],
        username: "u".to_owned(),
        credential: "p".to_owned(),
    };
    let (call, _in, mut out_rx) = start(vec![turn]).await;
    call.connect("someone").await.expect("offer");
    let mut signals = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, out_rx.recv()).await {
        signals.push(m.signal);
    }
    assert!(
        matches!(signals.first(), Some(voice::Signal::Offer { sdp }) if !sdp.contains("typ host"))
    );
    let leaked: Vec<_> = signals
        .iter()
        .filter(|s| matches!(s, voice::Signal::Candidate { candidate, .. } if candidate.contains("typ host")))
        .collect();
    assert!(
        leaked.is_empty(),
        "relay-only call sent host candidates: {leaked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_signaling_is_an_error_not_a_panic() {
    use voice::{Signal, SignalMessage};
    let silence = vec![0.0; RATE as usize * 6];
    let mesh = start_mesh(
        vec![("a", silence.clone()), ("b", silence)],
        loopback_config(),
        None,
    )
    .await;
    let call = &mesh.peers[0].call;
    let bad = [
        Signal::Offer {
            sdp: "garbage".into(),
        },
        Signal::Offer {
            sdp: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".into(),
        },
        Signal::Answer { sdp: "v=0".into() },
        Signal::Candidate {
            candidate: "candidate:not a candidate".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        },
    ];
    for (i, signal) in bad.into_iter().enumerate() {
        let peer = if i == 3 { "b" } else { "mallory" };
        let result = call
            .handle_signal(SignalMessage {
                peer: peer.into(),
                signal,
            })
            .await;
        assert!(
            matches!(result, Err(voice::VoiceError::Signaling { .. })),
            "message {i} gave {result:?}"
        );
    }
    // The call with b is still up.
    assert_eq!(call.peers(), vec!["b".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_input_device_mid_call_changes_what_is_heard() {
    use voice::audio::wav::WavSource;
    use voice::audio::StreamFormat;
    let mesh = start_mesh(
        vec![
            ("talker", with_lead_in(&sine(440.0, RATE, 6.0, 0.3))),
            ("listener", vec![0.0; RATE as usize * 10]),
        ],
        loopback_config(),
        None,
    )
    .await;
    run_for(0.5).await;
    // A 44.1 kHz stereo "headset" playing 880 Hz.
    let stereo: Vec<f32> = sine(880.0, 44_100, 4.0, 0.3)
        .into_iter()
        .flat_map(|s| [s, s])
        .collect();
    let headset = WavSource::from_samples(
        stereo,
        StreamFormat {
            sample_rate: 44_100,
            channels: 2,
        },
    );
    mesh.peers[0]
        .call
        .set_input(Box::new(headset))
        .expect("switch input");
    run_for(0.5).await;
    let before = mesh.peers[1].recording.samples().len();
    run_for(1.5).await;
    let after = mesh.peers[1].recording.samples()[before..].to_vec();
    eprintln!(
        "listener stats {:#?} talker level {}",
        mesh.peers[1].call.stats(),
        mesh.peers[0].call.input_level_db()
    );
    eprintln!(
        "after switch: 880 Hz {} 440 Hz {} level {}",
        tone_power(&after, RATE, 880.0),
        tone_power(&after, RATE, 440.0),
        level_dbfs(&after)
    );
    // Judged per 100 ms: a tone's power over the whole window adds up coherently, so one
    // concealed or skipped frame (a phase jump, common on a loaded machine) could cancel half
    // of it; the median window is what the listener hears nearly all the time.
    let windowed = |freq: f32| {
        let mut p: Vec<f32> = after
            .chunks_exact(RATE as usize / 10)
            .map(|w| tone_power(w, RATE, freq))
            .collect();
        p.sort_by(f32::total_cmp);
        p.get(p.len() / 2).copied().unwrap_or(0.0)
    };
    eprintln!(
        "median 100 ms window: 880 Hz {} 440 Hz {}",
        windowed(880.0),
        windowed(440.0)
    );
    // A 0.3-peak sine has a power of 0.045.
    assert!(windowed(880.0) > 0.02, "new device not heard");
    assert!(windowed(440.0) < 0.001, "old device still heard");
}

/// Alice's speech to bob through `loss` each way and 0–20 ms of jitter, with RED allowed or
/// not; returns how well bob heard it, bob's view of alice and alice's view of bob.
async fn speech_through_loss(red: bool, loss: f64) -> (f32, voice::PeerStats, voice::PeerStats) {
    let alice = with_lead_in(&synth_speech(11, RATE, 8.0));
    let bob = with_lead_in(&synth_speech(12, RATE, 8.0));
    let netem = relay::Netem {
        loss,
        jitter: Duration::from_millis(20),
        seed: 5,
    };
    let config = voice::CallConfig {
        red,
        ..loopback_config()
    };
    let mesh = start_mesh(
        vec![("alice", alice.clone()), ("bob", bob)],
        config,
        Some(netem),
    )
    .await;
    run_for(LEAD_IN_SECS + 8.5).await;
    let score = similarity(&alice, &mesh.peers[1].recording.samples());
    let bob_sees = mesh.peers[1].call.stats().remove(0);
    let alice_sees = mesh.peers[0].call.stats().remove(0);
    (score, bob_sees, alice_sees)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_rebuilds_lost_frames_under_twenty_percent_loss() {
    let (with_red, rx, tx) = speech_through_loss(true, 0.20).await;
    let (without_red, plain_rx, plain_tx) = speech_through_loss(false, 0.20).await;
    eprintln!(
        "20 % loss: similarity with RED {with_red:.3}, without {without_red:.3}\n\
         with RED: {rx:?}\nwithout: {plain_rx:?}"
    );
    // Bob reported the loss, so alice sent RED, and bob played lost frames from its copies.
    assert!(tx.sending_red, "alice did not switch RED on: {tx:?}");
    // ... and with it 10 ms packets, so a lost packet's copy comes 10 ms after it; bob's
    // receiver played them as such.
    assert_eq!(
        (tx.sending_packet_ms, rx.received_packet_ms),
        (10.0, 10.0),
        "packet length under loss with RED: {tx:?} / {rx:?}"
    );
    let lost = rx.loss * (rx.packets_received as f64 / (1.0 - rx.loss).max(0.01));
    assert!(
        rx.red_received > 0 && rx.red_frames as f64 > 0.3 * lost,
        "{} of ~{lost:.0} lost frames rebuilt from RED: {rx:?}",
        rx.red_frames
    );
    assert!(
        with_red > 0.6,
        "speech with RED under 20 % loss scores {with_red}"
    );
    // With RED turned off the same loss gets plain Opus (FEC and concealment only).
    assert!(!plain_tx.sending_red && plain_rx.red_received == 0);
    // Without RED the packets stay 20 ms long: shorter ones only pay with RED's copies.
    assert_eq!(
        (plain_tx.sending_packet_ms, plain_rx.received_packet_ms),
        (20.0, 20.0),
        "packet length under loss without RED: {plain_tx:?} / {plain_rx:?}"
    );
    assert!(plain_rx.fec_frames > 0, "no FEC without RED: {plain_rx:?}");
}
