//! Server instances stopping (SIGTERM) or dying (SIGKILL) as real processes, next to an
//! instance that stays: what their connected clients and the users' friends see.

use std::{collections::HashMap, process::Stdio, time::Duration};

use protocol::gateway::{ClientFrame, Event, Presence};
use sohbet_tests::{gateway_at, presence_of, services::free_port, GatewayEvent, TestApp};

/// A `sohbet-server` process on the database and Redis prefix of `app`, so it is one more
/// instance of the same server.
struct ServerProcess {
    child: tokio::process::Child,
    base: String,
}

impl ServerProcess {
    async fn start(app: &TestApp) -> Self {
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sohbet-server-process"))
            .env("DATABASE_URL", app.settings.database_url.expose())
            .env("REDIS_URL", app.settings.redis_url.expose())
            .env("SOHBET_REDIS_PREFIX", &app.prefix)
            .env("SOHBET_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "SOHBET_HEARTBEAT_MS",
                app.settings.heartbeat_interval_ms.to_string(),
            )
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start a server process");
        let base = format!("http://127.0.0.1:{port}");
        // Up once it answers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while app
            .http
            .get(format!("{base}/api/health"))
            .send()
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server process did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, base }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

#[tokio::test]
async fn sigterm_closes_every_socket_as_going_away_and_announces_users_offline() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let mut bob_gw = app.online(&bob.token).await;
    let server = ServerProcess::start(&app).await;

    // Twenty devices of alice's on the instance that is about to stop.
    let mut devices = vec![gateway_at(&server.base, &alice.token)];
    for _ in 1..20 {
        let token = app.login("alice").await.token;
        devices.push(gateway_at(&server.base, &token));
    }
    for device in &mut devices {
        device.ready().await;
    }
    bob_gw
        .expect(
            "alice online",
            presence_of(alice.user.user_id, Presence::Online),
        )
        .await;

    server.signal("TERM");
    let mut child = server.child;
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the server exits within its grace period")
        .expect("exit status");
    assert!(exit.success(), "{exit}");

    // Each socket got a close frame saying "going away", not a dropped connection.
    for (n, device) in devices.iter_mut().enumerate() {
        let code = device
            .expect("the first disconnect", |e| match e {
                GatewayEvent::Disconnected { code } => Some(*code),
                _ => None,
            })
            .await;
        assert_eq!(code, Some(1001), "device {n}");
    }
    // Announced before the instance closed its pool.
    bob_gw
        .expect(
            "alice offline",
            presence_of(alice.user.user_id, Presence::Offline),
        )
        .await;
}

#[tokio::test]
async fn after_sigkill_clients_resume_elsewhere_and_presence_and_calls_expire() {
    // One-second heartbeats: a dead instance's connections expire within 2–4 s.
    let app = TestApp::spawn_with(|s| s.heartbeat_interval_ms = 1_000).await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group = app.group_with(&alice, &[&bob, &carol]).await;
    let mut a = app.online(&alice.token).await;
    let server = ServerProcess::start(&app).await;
    let mut b = gateway_at(&server.base, &bob.token);
    b.ready().await;
    let mut c = gateway_at(&server.base, &carol.token);
    c.ready().await;
    c.handle.send(ClientFrame::VoiceJoin {
        group_id: group,
        muted: false,
        deafened: false,
        reference: Some(1),
    });
    c.answer(1, |e| {
        matches!(e, GatewayEvent::VoiceJoined { .. }).then_some(())
    })
    .await
    .expect("carol joins the call");
    let carol_id = carol.user.user_id;
    a.expect("carol in the call", |e| match e {
        GatewayEvent::Event(Event::VoiceStateUpdated {
            user_id,
            in_call: true,
            ..
        }) if *user_id == carol_id => Some(()),
        _ => None,
    })
    .await;

    // Bob has seen the first messages when his instance dies.
    let mut last_seen = 0;
    for i in 0..3 {
        let sent = app.send(&alice, group, &format!("before {i}")).await;
        let seq = b
            .expect("a message before the crash", |e| match e {
                GatewayEvent::Event(Event::MessageCreated { message }) => Some(message.seq),
                _ => None,
            })
            .await;
        assert_eq!(seq, sent.seq);
        last_seen = seq;
    }
    let killed_at = std::time::Instant::now();
    server.signal("KILL");
    let mut child = server.child;
    child.wait().await.expect("killed");
    // Carol was only on the dead instance: she goes offline and leaves the call (in
    // either order), as README says: her connection was last renewed at most one interval
    // before the crash and expires three intervals after that renewal, and the survivor
    // sweeps every interval, so two to four intervals after the crash. The upper bound
    // gets one interval of slack for a loaded machine; the lower bound needs none (load
    // only makes things later).
    let (mut offline, mut left) = (false, false);
    while !(offline && left) {
        let (is_offline, has_left) = a
            .expect("carol offline and out of the call", |e| match e {
                GatewayEvent::Event(Event::PresenceUpdated {
                    user_id,
                    presence: Presence::Offline,
                    ..
                }) if *user_id == carol_id => Some((true, false)),
                GatewayEvent::Event(Event::VoiceStateUpdated {
                    user_id,
                    in_call: false,
                    ..
                }) if *user_id == carol_id => Some((false, true)),
                _ => None,
            })
            .await;
        offline |= is_offline;
        left |= has_left;
    }
    let after = killed_at.elapsed();
    let interval = Duration::from_millis(app.settings.heartbeat_interval_ms);
    assert!(
        after >= interval * 2 && after <= interval * 5,
        "carol expired {after:?} after the crash, not within 2–4 heartbeat intervals ({interval:?})"
    );
    drop(b);
    drop(c);
    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(
            app.send(&alice, group, &format!("after {i}"))
                .await
                .message_id,
        );
    }

    // Bob's client comes back through the surviving instance from where it was, and gets
    // exactly what it missed.
    let (handle, events) = sohbet_client::gateway::connect_from(
        app.client(&bob.token).gateway_url(),
        bob.token.clone(),
        sohbet_client::gateway::GatewayOptions::default(),
        HashMap::from([(group, last_seen)]),
    );
    let mut b = sohbet_tests::Gateway { handle, events };
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            b.expect("a missed message", |e| match e {
                GatewayEvent::Event(Event::MessageCreated { message }) => Some(message.message_id),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(got, missed);
    let again = b.collect_for(Duration::from_millis(500)).await;
    assert!(
        !again
            .iter()
            .any(|e| matches!(e, GatewayEvent::Event(Event::MessageCreated { .. }))),
        "a message came twice: {again:?}"
    );
}
