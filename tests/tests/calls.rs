//! Calls through the server, end to end: the SDK's calls API with real webrtc-rs peers over
//! loopback, real Opus, the real server with PostgreSQL and Redis. Each participant's
//! microphone plays a tone of its own, so what each one hears is judged by its content.

use std::{process::Stdio, time::Duration};

use protocol::voice::RingEnd;
use sohbet_client::calls::{CallEvent, EndReason};
use sohbet_tests::{
    calls::{InCall, AUDIBLE, SILENT},
    Gateway, GatewayEvent, TestApp,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Short enough to keep the tests quick, long enough that a loaded machine does not miss
/// heartbeats (a reconnect would be survived, but would muddle what a test shows).
const HEARTBEAT_MS: u64 = 1_000;
const GRACE_MS: u64 = 1_500;
/// Media connects in well under a second on loopback; generous for a loaded machine.
const CONNECT: Duration = Duration::from_secs(20);
/// The stretch of playout a check listens to.
const LISTEN: Duration = Duration::from_millis(1000);
/// Audio from a freshly connected peer reaches the playout after the jitter buffer fills.
const SETTLE: Duration = Duration::from_millis(1500);

const ALICE_HZ: f32 = 440.0;
const BOB_HZ: f32 = 660.0;
const CAROL_HZ: f32 = 880.0;

async fn app() -> TestApp {
    app_with(|_| {}).await
}

async fn app_with(configure: impl FnOnce(&mut sohbet_server::config::Settings)) -> TestApp {
    TestApp::spawn_with(|s| {
        s.heartbeat_interval_ms = HEARTBEAT_MS;
        s.voice_grace_ms = GRACE_MS;
        configure(s);
    })
    .await
}

fn assert_hears(who: &str, call: &InCall, present: &[f32], absent: &[f32]) {
    for &f in present {
        let p = call.hears(f, LISTEN);
        assert!(p > AUDIBLE, "{who} should hear {f} Hz: power {p}");
    }
    for &f in absent {
        let p = call.hears(f, LISTEN);
        assert!(p < SILENT, "{who} should not hear {f} Hz: power {p}");
    }
}

#[tokio::test]
async fn a_dm_call_rings_and_both_hear_each_other_once_answered() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;

    let mut alice_call = app
        .join_call(&alice.token, &a, dm, ALICE_HZ)
        .await
        .expect("ring");
    let caller = b
        .expect("ringing", |e| match e {
            GatewayEvent::Event(protocol::gateway::Event::CallRinging { caller_id, .. }) => {
                Some(*caller_id)
            }
            _ => None,
        })
        .await;
    assert_eq!(caller, alice.user.user_id);
    let mut bob_call = app
        .join_call(&bob.token, &b, dm, BOB_HZ)
        .await
        .expect("accept");
    bob_call.connected_to(&[alice.user.user_id], CONNECT).await;
    alice_call.connected_to(&[bob.user.user_id], CONNECT).await;
    tokio::time::sleep(SETTLE).await;
    assert_hears("alice", &alice_call, &[BOB_HZ], &[ALICE_HZ]);
    assert_hears("bob", &bob_call, &[ALICE_HZ], &[BOB_HZ]);

    bob_call.handle.leave().await;
    let left = alice_call
        .wait(CONNECT, |e| matches!(e, CallEvent::ParticipantLeft { .. }))
        .await;
    assert_eq!(
        left,
        Some(CallEvent::ParticipantLeft {
            user_id: bob.user.user_id
        })
    );
}

#[tokio::test]
async fn a_declined_call_ends_for_the_caller() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    let mut alice_call = app
        .join_call(&alice.token, &a, dm, ALICE_HZ)
        .await
        .expect("ring");
    b.expect("ringing", |e| {
        matches!(
            e,
            GatewayEvent::Event(protocol::gateway::Event::CallRinging { .. })
        )
        .then_some(())
    })
    .await;
    app.client(&bob.token)
        .decline(&b.handle, dm)
        .await
        .expect("decline");
    let ended = alice_call
        .wait(CONNECT, |e| matches!(e, CallEvent::Ended { .. }))
        .await;
    assert_eq!(
        ended,
        Some(CallEvent::Ended {
            reason: EndReason::Ring {
                outcome: RingEnd::Declined
            }
        })
    );
    // Declining what no longer rings is refused, not ignored.
    let again = app.client(&bob.token).decline(&b.handle, dm).await;
    assert_eq!(
        again
            .err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("not_ringing")
    );
}

#[tokio::test]
async fn an_unanswered_call_is_missed_and_the_callee_can_see_it() {
    let app = app_with(|s| s.ring_timeout_secs = 1).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let a = app.online(&alice.token).await;
    let mut alice_call = app
        .join_call(&alice.token, &a, dm, ALICE_HZ)
        .await
        .expect("ring");
    let ended = alice_call
        .wait(CONNECT, |e| matches!(e, CallEvent::Ended { .. }))
        .await;
    assert_eq!(
        ended,
        Some(CallEvent::Ended {
            reason: EndReason::Ring {
                outcome: RingEnd::Missed
            }
        })
    );
    // Bob was offline the whole time: he finds it afterwards.
    let missed = app
        .client(&bob.token)
        .missed_calls()
        .await
        .expect("missed calls");
    assert_eq!(missed.missed_calls.len(), 1);
    assert_eq!(missed.missed_calls[0].caller_id, alice.user.user_id);
}

#[tokio::test]
async fn three_in_a_group_call_each_hear_both_others_and_mute_silences() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.group_with(&alice, &[&bob, &carol]).await;
    let (a, b, c) = (
        app.online(&alice.token).await,
        app.online(&bob.token).await,
        app.online(&carol.token).await,
    );
    let mut ac = app
        .join_call(&alice.token, &a, group, ALICE_HZ)
        .await
        .expect("alice");
    let mut bc = app
        .join_call(&bob.token, &b, group, BOB_HZ)
        .await
        .expect("bob");
    let mut cc = app
        .join_call(&carol.token, &c, group, CAROL_HZ)
        .await
        .expect("carol");
    let (ai, bi, ci) = (alice.user.user_id, bob.user.user_id, carol.user.user_id);
    ac.connected_to(&[bi, ci], CONNECT).await;
    bc.connected_to(&[ai, ci], CONNECT).await;
    cc.connected_to(&[ai, bi], CONNECT).await;
    tokio::time::sleep(SETTLE).await;
    assert_hears("alice", &ac, &[BOB_HZ, CAROL_HZ], &[ALICE_HZ]);
    assert_hears("bob", &bc, &[ALICE_HZ, CAROL_HZ], &[BOB_HZ]);
    assert_hears("carol", &cc, &[ALICE_HZ, BOB_HZ], &[CAROL_HZ]);

    ac.handle.set_muted(true).expect("mute");
    let seen = bc
        .wait(CONNECT, |e| {
            matches!(e, CallEvent::ParticipantUpdated { participant } if participant.user_id == ai && participant.muted)
        })
        .await;
    assert!(seen.is_some(), "bob sees alice muted");
    tokio::time::sleep(SETTLE).await;
    assert_hears("bob", &bc, &[CAROL_HZ], &[ALICE_HZ]);
    assert_hears("carol", &cc, &[BOB_HZ], &[ALICE_HZ]);

    // Speaking indicators come from the received audio: Carol is heard, so she speaks.
    let speaking = ac
        .saw(
            CONNECT,
            |e| matches!(e, CallEvent::Speaking { user_id, speaking: true } if *user_id == ci),
        )
        .await;
    assert!(speaking, "alice sees carol speaking");
    // ... and Alice, muted, stops speaking for Bob (her audio no longer reaches him).
    let stopped = bc
        .saw(
            CONNECT,
            |e| matches!(e, CallEvent::Speaking { user_id, speaking: false } if *user_id == ai),
        )
        .await;
    assert!(stopped, "bob sees alice stop speaking");
}

#[tokio::test]
async fn a_non_member_gets_a_refusal_not_a_call() {
    let app = app().await;
    let alice = app.user("alice").await;
    let mallory = app.user("mallory").await;
    let group = app.create_group(&alice, "private").await;
    let m = app.online(&mallory.token).await;
    let refused = app.join_call(&mallory.token, &m, group, ALICE_HZ).await;
    assert_eq!(
        refused
            .err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("not_found")
    );
}

#[tokio::test]
async fn glare_two_joining_at_once_still_connect_once() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let a = app.online(&alice.token).await;
    let b = app.online(&bob.token).await;
    let (ac, bc) = tokio::join!(
        app.join_call(&alice.token, &a, group, ALICE_HZ),
        app.join_call(&bob.token, &b, group, BOB_HZ)
    );
    let (mut ac, mut bc) = (ac.expect("alice"), bc.expect("bob"));
    ac.connected_to(&[bob.user.user_id], CONNECT).await;
    bc.connected_to(&[alice.user.user_id], CONNECT).await;
    tokio::time::sleep(SETTLE).await;
    assert_hears("alice", &ac, &[BOB_HZ], &[]);
    assert_hears("bob", &bc, &[ALICE_HZ], &[]);
    // One connection each way: no second connect, no drop.
    let extra = ac
        .wait(Duration::from_millis(500), |e| {
            matches!(
                e,
                CallEvent::PeerConnected { .. } | CallEvent::PeerDisconnected { .. }
            )
        })
        .await;
    assert_eq!(extra, None);
}

/// Alice (on `first`) and Bob (on `second`, which may be the same instance) in a group
/// call, connected and hearing each other.
async fn alice_and_bob_in_a_call(
    first: &TestApp,
    second: &TestApp,
) -> (Gateway, Gateway, InCall, InCall) {
    let alice = first.user("alice").await;
    let bob = first.user("bob").await;
    let group = first.group_with(&alice, &[&bob]).await;
    let a = first.online(&alice.token).await;
    let b = second.online(&bob.token).await;
    let mut ac = first
        .join_call(&alice.token, &a, group, ALICE_HZ)
        .await
        .expect("alice");
    let mut bc = second
        .join_call(&bob.token, &b, group, BOB_HZ)
        .await
        .expect("bob");
    ac.connected_to(&[bob.user.user_id], CONNECT).await;
    bc.connected_to(&[alice.user.user_id], CONNECT).await;
    tokio::time::sleep(SETTLE).await;
    assert_hears("alice", &ac, &[BOB_HZ], &[]);
    assert_hears("bob", &bc, &[ALICE_HZ], &[]);
    (a, b, ac, bc)
}

#[tokio::test]
async fn participants_on_two_server_instances_hear_each_other() {
    let first = app().await;
    let second = first.spawn_peer().await;
    alice_and_bob_in_a_call(&first, &second).await;
}

/// Waits until `call` hears `freq` (or, with `false`, no longer hears it); fails after
/// `CONNECT`.
async fn until_hears(who: &str, call: &InCall, freq: f32, audible: bool) {
    let started = std::time::Instant::now();
    loop {
        let p = call.hears(freq, LISTEN);
        if (audible && p > AUDIBLE) || (!audible && p < SILENT) {
            return;
        }
        assert!(
            started.elapsed() < CONNECT,
            "{who} should {}hear {freq} Hz: power {p}",
            if audible { "" } else { "not " }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn send_settings_changed_mid_call_apply_to_the_call_in_progress() {
    let app = app().await;
    let (_a, _b, ac, bc) = alice_and_bob_in_a_call(&app, &app).await;

    // No input gain silences Alice's microphone for Bob, without muting her.
    let silent = voice::dsp::SendSettings {
        input_gain: 0.0,
        ..Default::default()
    };
    ac.handle.set_send_settings(silent).expect("in a call");
    until_hears("bob", &bc, ALICE_HZ, false).await;
    assert_hears("alice", &ac, &[BOB_HZ], &[]);

    ac.handle
        .set_send_settings(Default::default())
        .expect("in a call");
    until_hears("bob", &bc, ALICE_HZ, true).await;
}

#[tokio::test]
async fn a_gateway_reconnect_mid_call_keeps_the_audio_flowing() {
    let app = app().await;
    let (a, _b, mut ac, mut bc) = alice_and_bob_in_a_call(&app, &app).await;

    a.handle.drop_connection();
    let resumed = ac
        .wait(CONNECT, |e| matches!(e, CallEvent::Resumed { .. }))
        .await;
    assert_eq!(
        resumed,
        Some(CallEvent::Resumed {
            renegotiated: false
        })
    );
    // Past the grace period, nobody left and both still hear each other.
    tokio::time::sleep(Duration::from_millis(GRACE_MS * 2)).await;
    assert_hears("alice", &ac, &[BOB_HZ], &[]);
    assert_hears("bob", &bc, &[ALICE_HZ], &[]);
    let left = bc
        .wait(Duration::from_millis(100), |e| {
            matches!(e, CallEvent::ParticipantLeft { .. })
        })
        .await;
    assert_eq!(left, None);
}

#[tokio::test]
async fn a_killed_participant_leaves_everyones_call_and_the_rest_go_on() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.group_with(&alice, &[&bob, &carol]).await;
    let a = app.online(&alice.token).await;
    let b = app.online(&bob.token).await;
    let mut ac = app
        .join_call(&alice.token, &a, group, ALICE_HZ)
        .await
        .expect("alice");
    let mut bc = app
        .join_call(&bob.token, &b, group, BOB_HZ)
        .await
        .expect("bob");

    let mut carol_process = tokio::process::Command::new(env!("CARGO_BIN_EXE_sohbet-call-peer"))
        .env("SOHBET_BASE", &app.base)
        .env("SOHBET_TOKEN", &carol.token)
        .env("SOHBET_GROUP", group.to_string())
        .env("SOHBET_TONE_HZ", CAROL_HZ.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the call peer");
    let stdout = carol_process.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let joined = tokio::time::timeout(CONNECT, lines.next_line()).await;
    assert!(
        matches!(joined, Ok(Ok(Some(ref l))) if l == "joined"),
        "{joined:?}"
    );
    let (ai, bi, ci) = (alice.user.user_id, bob.user.user_id, carol.user.user_id);
    ac.connected_to(&[bi, ci], CONNECT).await;
    bc.connected_to(&[ai, ci], CONNECT).await;
    tokio::time::sleep(SETTLE).await;
    assert_hears("alice", &ac, &[BOB_HZ, CAROL_HZ], &[]);

    // SIGKILL: no bye, no leave, the socket just dies with the process.
    carol_process.start_kill().expect("kill");
    let _ = carol_process.wait().await;
    for (who, call) in [("alice", &mut ac), ("bob", &mut bc)] {
        let left = call
            .wait(
                CONNECT,
                |e| matches!(e, CallEvent::ParticipantLeft { user_id } if *user_id == ci),
            )
            .await;
        assert!(left.is_some(), "{who} saw carol leave");
    }
    tokio::time::sleep(SETTLE).await;
    assert_hears("alice", &ac, &[BOB_HZ], &[CAROL_HZ]);
    assert_hears("bob", &bc, &[ALICE_HZ], &[CAROL_HZ]);
}

/// coturn from Debian on a loopback port of its own, with the TURN REST scheme's shared
/// secret; killed when dropped.
struct Coturn {
    port: u16,
    _dir: TempDir,
    _process: tokio::process::Child,
}

/// A folder removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Coturn {
    async fn start(secret: &str) -> Self {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("sohbet-turn-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let process = tokio::process::Command::new("turnserver")
            .args([
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                "--realm=sohbet.test",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-tcp-relay",
                // Test peers live on loopback, which coturn refuses to relay to by default.
                "--allow-loopback-peers",
                "--simple-log",
                &format!("--log-file={}", dir.join("turn.log").display()),
                &format!("--pidfile={}", dir.join("turn.pid").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("turnserver (Debian package coturn) starts");
        // Ready when it answers on its port: wait for the UDP listener to appear.
        for _ in 0..100 {
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            port,
            _dir: TempDir(dir),
            _process: process,
        }
    }
}

#[tokio::test]
async fn a_relay_only_call_goes_through_coturn_with_the_servers_credentials() {
    let secret = "the-shared-turn-secret";
    let turn = Coturn::start(secret).await;
    let app = app_with(|s| {
        s.turn_urls = vec![format!("turn:127.0.0.1:{}?transport=udp", turn.port)];
        s.turn_secret = Some(sohbet_server::config::Secret(secret.into()));
    })
    .await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let a = app.online(&alice.token).await;
    let b = app.online(&bob.token).await;
    let join = |token: String, gw: &sohbet_tests::Gateway, freq: f32| {
        let (mut options, recording) = sohbet_tests::calls::tone_options(freq);
        // Only relay candidates: if media flows at all, it flows through coturn.
        options.config.ice_policy = voice::IcePolicy::Relay;
        let client = app.client(&token);
        let sender = gw.handle.sender();
        async move {
            let (handle, events) = client
                .join_call(&sender, group, options)
                .await
                .expect("join");
            InCall {
                handle,
                events,
                recording,
                history: Vec::new(),
            }
        }
    };
    let mut ac = join(alice.token.clone(), &a, ALICE_HZ).await;
    let mut bc = join(bob.token.clone(), &b, BOB_HZ).await;
    ac.connected_to(&[bob.user.user_id], CONNECT).await;
    bc.connected_to(&[alice.user.user_id], CONNECT).await;
    tokio::time::sleep(SETTLE).await;
    assert_hears("alice", &ac, &[BOB_HZ], &[]);
    assert_hears("bob", &bc, &[ALICE_HZ], &[]);

    // The media path each side selected is its TURN relay.
    for (who, call) in [("alice", &mut ac), ("bob", &mut bc)] {
        let stats = call
            .wait(CONNECT, |e| {
                matches!(e, CallEvent::Stats { peers } if peers.iter().any(|p| p.route.is_some()))
            })
            .await;
        let Some(CallEvent::Stats { peers }) = stats else {
            panic!("{who}: no stats with a selected route");
        };
        assert_eq!(peers[0].route.as_deref(), Some("relay"), "{who}: {peers:?}");
    }
}
