//! The WebSocket gateway: identify, heartbeats, close codes, presence, typing, backpressure
//! and two server instances working as one.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::gateway::{close, Event, Presence};
use reqwest::Method;
use serde_json::json;
use sohbet_tests::{presence_of, GatewayEvent, TestApp};
use tokio_tungstenite::tungstenite::Message;

/// Short heartbeats so timeouts and presence expiry happen within a test's patience.
const HEARTBEAT_MS: u64 = 300;

async fn app() -> TestApp {
    TestApp::spawn_with(|s| s.heartbeat_interval_ms = HEARTBEAT_MS).await
}

/// Asserts that nothing says `user_id` went offline within `window`.
async fn assert_stays_online(gw: &mut sohbet_tests::Gateway, user_id: i64, window: Duration) {
    let seen = gw.collect_for(window).await;
    let offline = seen.iter().any(|e| {
        matches!(e, GatewayEvent::Event(Event::PresenceUpdated { user_id: u, presence: Presence::Offline, .. }) if *u == user_id)
    });
    assert!(!offline, "{user_id} must stay online: {seen:?}");
}

type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw_socket(app: &TestApp) -> RawSocket {
    let url = app.client("x").gateway_url();
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let hello = socket.next().await.expect("hello").expect("frame");
    assert!(
        hello.to_text().expect("text").contains("\"op\":\"hello\""),
        "{hello:?}"
    );
    socket
}

/// Reads until the server closes; returns its close code.
async fn close_code(socket: &mut RawSocket) -> Option<u16> {
    let read = async {
        while let Some(msg) = socket.next().await {
            match msg {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("server closes the socket")
}

async fn identify(socket: &mut RawSocket, token: &str) {
    let frame = json!({"op": "identify", "token": token, "version": 1});
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .expect("send identify");
}

#[tokio::test]
async fn identify_gets_ready_with_user_and_session() {
    let app = app().await;
    let alice = app.user("alice").await;
    let mut gw = app.gateway(&alice.token);
    let GatewayEvent::Ready {
        user,
        session_id,
        groups,
        ..
    } = gw.ready().await
    else {
        unreachable!()
    };
    assert_eq!(user.user_id, alice.user.user_id);
    let sessions = app.client(&alice.token).sessions().await.expect("sessions");
    assert_eq!(sessions[0].session_id, session_id);
    assert!(groups.is_empty());
    gw.expect("resumed", |e| {
        matches!(e, GatewayEvent::Resumed { replayed: 0, .. }).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_bad_token_closes_with_authentication_failed() {
    let app = app().await;
    let mut gw = app.gateway(&"ab".repeat(32));
    let code = gw
        .expect("closed", |e| match e {
            GatewayEvent::Closed { code } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, close::AUTHENTICATION_FAILED);
}

#[tokio::test]
async fn the_first_frame_must_be_identify() {
    let app = app().await;
    let mut socket = raw_socket(&app).await;
    socket
        .send(Message::Text(r#"{"op":"heartbeat"}"#.into()))
        .await
        .expect("send");
    assert_eq!(
        close_code(&mut socket).await,
        Some(close::NOT_AUTHENTICATED)
    );
}

#[tokio::test]
async fn an_invalid_frame_closes_with_invalid_frame() {
    let app = app().await;
    let alice = app.user("alice").await;
    let mut socket = raw_socket(&app).await;
    identify(&mut socket, &alice.token).await;
    socket
        .send(Message::Text("{not json".into()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut socket).await, Some(close::INVALID_FRAME));
}

#[tokio::test]
async fn a_voice_signal_that_is_not_a_typed_signal_is_an_invalid_frame() {
    let app = app().await;
    let alice = app.user("alice").await;
    let group = app.create_group(&alice, "g").await;
    let mut socket = raw_socket(&app).await;
    identify(&mut socket, &alice.token).await;
    let frame = json!({"op": "voice_signal", "group_id": group, "to": 1,
                       "signal": {"type": "launch_missiles"}});
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut socket).await, Some(close::INVALID_FRAME));
}

#[tokio::test]
async fn a_wrong_protocol_version_is_refused() {
    let app = app().await;
    let alice = app.user("alice").await;
    let mut socket = raw_socket(&app).await;
    let frame = json!({"op": "identify", "token": alice.token, "version": 99});
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
    assert_eq!(
        close_code(&mut socket).await,
        Some(close::UNSUPPORTED_VERSION)
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_two_heartbeat_intervals() {
    let app = app().await;
    let alice = app.user("alice").await;
    let mut socket = raw_socket(&app).await;
    identify(&mut socket, &alice.token).await;
    // Never send a heartbeat.
    assert_eq!(
        close_code(&mut socket).await,
        Some(close::HEARTBEAT_TIMEOUT)
    );
}

#[tokio::test]
async fn a_heartbeating_connection_stays_open_and_renews_its_session() {
    let app = TestApp::spawn_with(|s| {
        s.heartbeat_interval_ms = HEARTBEAT_MS;
        s.session_ttl_secs = 2;
    })
    .await;
    let alice = app.user("alice").await;
    let mut gw = app.online(&alice.token).await;
    // Three session lifetimes pass; the socket's heartbeats keep the session alive.
    let seen = gw.collect_for(Duration::from_millis(6500)).await;
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            GatewayEvent::Disconnected { .. } | GatewayEvent::Closed { .. }
        )),
        "{seen:?}"
    );
    assert_eq!(
        app.get("/api/users/me", &alice.token).await.0,
        reqwest::StatusCode::OK
    );
}

#[tokio::test]
async fn revoking_a_session_closes_its_socket_with_session_ended() {
    let app = app().await;
    let alice = app.user("alice").await;
    let other = app.login("alice").await.token;
    let mut gw = app.online(&other).await;
    let (status, _) = app
        .call(
            Method::DELETE,
            "/api/auth/sessions",
            Some(&alice.token),
            None,
        )
        .await;
    assert!(status.is_success());
    let code = gw
        .expect("closed", |e| match e {
            GatewayEvent::Closed { code } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, close::SESSION_ENDED);
}

#[tokio::test]
async fn an_expired_session_closes_its_socket_at_the_next_heartbeat() {
    let app = app().await;
    let alice = app.user("alice").await;
    let mut gw = app.online(&alice.token).await;
    // Expire the session behind the server's back (as Redis TTL expiry would).
    let _: i64 = app
        .redis_cmd(redis::cmd("DEL").arg(app.key(&format!("session:{}", alice.token))))
        .await;
    let code = gw
        .expect("closed", |e| match e {
            GatewayEvent::Closed { code } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, close::SESSION_ENDED);
}

#[tokio::test]
async fn friends_see_each_other_come_online_and_go_offline() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let mut a = app.online(&alice.token).await;

    let b = app.gateway(&bob.token);
    a.expect(
        "bob online",
        presence_of(bob.user.user_id, Presence::Online),
    )
    .await;
    b.handle.close().await;
    a.expect(
        "bob offline",
        presence_of(bob.user.user_id, Presence::Offline),
    )
    .await;
    let last_seen: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select last_seen from users where user_id = $1")
            .bind(bob.user.user_id)
            .fetch_one(&app.db)
            .await
            .expect("row");
    assert!(
        last_seen.is_some(),
        "last_seen is written when the last connection closes"
    );

    // Ready lists presences of friends.
    let mut a2 = app.gateway(&alice.token);
    let GatewayEvent::Ready { presences, .. } = a2.ready().await else {
        unreachable!()
    };
    assert_eq!(presences.len(), 1);
    assert_eq!(presences[0].user_id, bob.user.user_id);
    assert_eq!(presences[0].presence, Presence::Offline);
}

#[tokio::test]
async fn a_user_on_two_devices_stays_online_until_both_close() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let mut a = app.online(&alice.token).await;
    let second_token = app.login("bob").await.token;
    let phone = app.online(&bob.token).await;
    a.expect(
        "bob online",
        presence_of(bob.user.user_id, Presence::Online),
    )
    .await;
    let desktop = app.online(&second_token).await;
    phone.handle.close().await;
    assert_stays_online(&mut a, bob.user.user_id, Duration::from_millis(800)).await;
    desktop.handle.close().await;
    a.expect(
        "bob offline",
        presence_of(bob.user.user_id, Presence::Offline),
    )
    .await;
}

#[tokio::test]
async fn an_invisible_user_appears_offline() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/users/me",
            Some(&bob.token),
            Some(&json!({"status": "invisible"})),
        )
        .await;
    assert!(status.is_success());
    let mut a = app.online(&alice.token).await;
    let _b = app.online(&bob.token).await;
    let seen = a.collect_for(Duration::from_millis(800)).await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, GatewayEvent::Event(Event::PresenceUpdated { .. }))),
        "{seen:?}"
    );
    let mut a2 = app.gateway(&alice.token);
    let GatewayEvent::Ready { presences, .. } = a2.ready().await else {
        unreachable!()
    };
    assert_eq!(presences[0].presence, Presence::Offline);
}

#[tokio::test]
async fn a_status_change_is_announced_to_friends() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let mut a = app.online(&alice.token).await;
    let _b = app.online(&bob.token).await;
    a.expect(
        "bob online",
        presence_of(bob.user.user_id, Presence::Online),
    )
    .await;
    let body = json!({"status": "dnd"});
    app.call(
        Method::PATCH,
        "/api/users/me",
        Some(&bob.token),
        Some(&body),
    )
    .await;
    a.expect("bob dnd", presence_of(bob.user.user_id, Presence::Dnd))
        .await;
}

#[tokio::test]
async fn typing_reaches_other_members_once_per_throttle_window() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let outsider = app.user("carol").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    let c = app.online(&outsider.token).await;
    for _ in 0..3 {
        b.handle.typing(group);
    }
    // A non-member typing into the group: nothing happens.
    c.handle.typing(group);
    let seen = a.collect_for(Duration::from_millis(1000)).await;
    let typing: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            GatewayEvent::Event(Event::TypingStarted {
                group_id, user_id, ..
            }) => Some((*group_id, *user_id)),
            _ => None,
        })
        .collect();
    assert_eq!(typing, vec![(group, bob.user.user_id)]);
    let own = b.collect_for(Duration::from_millis(300)).await;
    assert!(
        !own.iter()
            .any(|e| matches!(e, GatewayEvent::Event(Event::TypingStarted { .. }))),
        "no echo to the typist"
    );
}

#[tokio::test]
async fn events_cross_server_instances() {
    let first = app().await;
    let second = first.spawn_peer().await;
    let alice = first.user("alice").await;
    let bob = first.user("bob").await;
    let group = first.group_with(&alice, &[&bob]).await;
    let mut a = first.online(&alice.token).await;
    let b = second.online(&bob.token).await;
    b.handle.typing(group);
    a.expect("typing from the other instance", |e| {
        matches!(e, GatewayEvent::Event(Event::TypingStarted { user_id, .. }) if *user_id == bob.user.user_id).then_some(())
    })
    .await;
}

#[tokio::test]
async fn presence_spans_instances_and_expires_when_an_instance_dies() {
    let first = app().await;
    let second = first.spawn_peer().await;
    let alice = first.user("alice").await;
    let bob = first.user("bob").await;
    first.befriend(&alice, &bob).await;
    let mut a = first.online(&alice.token).await;
    // Bob on both instances: closing one device keeps him online.
    let phone_token = first.login("bob").await.token;
    let _on_second = second.online(&bob.token).await;
    a.expect(
        "bob online",
        presence_of(bob.user.user_id, Presence::Online),
    )
    .await;
    let on_first = first.online(&phone_token).await;
    on_first.handle.close().await;
    assert_stays_online(&mut a, bob.user.user_id, Duration::from_millis(600)).await;

    // The second instance dies without cleaning up: its connection's presence expires and
    // the surviving instance announces bob offline.
    second.gateway.crash();
    a.expect(
        "bob offline after expiry",
        presence_of(bob.user.user_id, Presence::Offline),
    )
    .await;
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_closed_without_delaying_others() {
    let app = TestApp::spawn_with(|s| {
        s.heartbeat_interval_ms = 60_000;
        s.gateway_queue = 64;
    })
    .await;
    let alice = app.user("alice").await;
    let slow = app.user("slowpoke").await;
    let mut a = app.online(&alice.token).await;
    let mut socket = raw_socket(&app).await;
    identify(&mut socket, &slow.token).await;
    // Let the slow connection register, then flood both users with events while the slow
    // one reads nothing at all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Paced in batches that the healthy client drains before the next, ~110 bytes a frame,
    // until the slow connection's socket buffers (a few MB) and then its queue are full.
    const BATCH: usize = 50;
    let mut sent = 0;
    while app
        .gateway
        .hub
        .kicked_slow
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(sent < 400_000, "the slow connection was never closed");
        let mut pipe = redis::pipe();
        for i in 0..BATCH {
            let envelope = json!({
                "recipients": [alice.user.user_id, slow.user.user_id],
                "event": {"type": "typing_started", "group_id": sent + i, "user_id": 0, "expires_in_ms": 1}
            });
            pipe.cmd("PUBLISH")
                .arg(app.key("events"))
                .arg(envelope.to_string())
                .ignore();
        }
        let () = pipe
            .query_async(&mut app.redis.clone())
            .await
            .expect("publish");
        for i in 0..BATCH {
            let expected = (sent + i) as i64;
            let got = a
                .expect("flood event", |e| match e {
                    GatewayEvent::Event(Event::TypingStarted { group_id, .. }) => Some(*group_id),
                    GatewayEvent::Disconnected { .. } => Some(-1),
                    _ => None,
                })
                .await;
            assert_eq!(
                got, expected,
                "the healthy client gets every event, in order, undisturbed"
            );
        }
        sent += BATCH;
    }
    assert_eq!(close_code(&mut socket).await, Some(close::TOO_SLOW));
}

#[tokio::test]
async fn shutting_a_server_down_closes_sockets_as_going_away() {
    let mut app = app().await;
    let alice = app.user("alice").await;
    let mut socket = raw_socket(&app).await;
    identify(&mut socket, &alice.token).await;
    let _ready = socket.next().await;
    app.stop().await;
    assert_eq!(close_code(&mut socket).await, Some(close::GOING_AWAY));
}

#[tokio::test]
async fn a_frame_sent_as_a_json_array_closes_with_invalid_frame() {
    let app = app().await;
    let alice = app.user("alice").await;
    // As the first frame: serde would read `identify`'s fields by position.
    let mut socket = raw_socket(&app).await;
    let frame = json!(["identify", alice.token, 1]);
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut socket).await, Some(close::INVALID_FRAME));
    // And once identified.
    let mut socket = raw_socket(&app).await;
    identify(&mut socket, &alice.token).await;
    socket
        .send(Message::Text(r#"["heartbeat"]"#.into()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut socket).await, Some(close::INVALID_FRAME));
}

#[tokio::test]
async fn a_frame_over_the_size_cap_closes_with_too_big() {
    let app = app().await;
    let alice = app.user("alice").await;
    let mut socket = raw_socket(&app).await;
    identify(&mut socket, &alice.token).await;
    let frame = json!({"op": "typing", "group_id": 1, "padding": "x".repeat(70 * 1024)});
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut socket).await, Some(close::TOO_BIG));
}

#[tokio::test]
async fn a_connection_sending_frames_too_fast_is_closed_as_rate_limited() {
    // One frame a second on average: ten per ten-second window.
    let app = TestApp::spawn_with(|s| s.gateway_frame_rate = 1).await;
    let alice = app.user("alice").await;
    let mut socket = raw_socket(&app).await;
    identify(&mut socket, &alice.token).await;
    for _ in 0..11 {
        socket
            .send(Message::Text(json!({"op": "heartbeat"}).to_string().into()))
            .await
            .expect("send");
    }
    assert_eq!(close_code(&mut socket).await, Some(close::RATE_LIMITED));
}
