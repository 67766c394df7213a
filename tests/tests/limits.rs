//! Abuse limits: counted in Redis per user (per client IP for registration), answered with
//! 429 `rate_limited` and `Retry-After` over REST and with a `rate_limited` error frame on
//! the gateway. Each test sets tight limits of its own.

use protocol::{gateway::ClientFrame, voice::VoiceSignal};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sohbet_server::rate_limit::Rate;
use sohbet_tests::{code, TestApp};

/// Sends a request and returns its status, its `Retry-After` and its JSON body.
async fn call(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (StatusCode, Option<u64>, serde_json::Value) {
    let mut request = app.http.request(Method::POST, app.url(path)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry_after, response.json().await.expect("JSON"))
}

/// Asserts a 429 in the one error shape, with a `Retry-After` within the window.
fn assert_limited(answer: (StatusCode, Option<u64>, serde_json::Value), window_secs: u64) {
    let (status, retry_after, body) = answer;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "rate_limited", "{body}");
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=window_secs).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn registrations_are_limited_per_client_ip() {
    let app = TestApp::spawn_with(|s| s.limit_register = Rate::new(2, 3600)).await;
    app.register("alice").await;
    app.register("bob").await;
    let body = json!({"username": "carol", "email": "carol@example.org",
                      "password": "correct horse battery"});
    assert_limited(call(&app, "/api/auth/register", None, &body).await, 3600);
    // Refused before anything was written.
    let (count,): (i64,) = sqlx::query_as("select count(*) from users where username = 'carol'")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 0);
}

#[tokio::test]
async fn message_bursts_are_limited_per_user_and_nothing_refused_is_stored() {
    let app = TestApp::spawn_with(|s| s.limit_messages_burst = Rate::new(3, 60)).await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group = app.group_with(&alice, &[&bob]).await;
    for i in 0..3 {
        app.send(&alice, group, &format!("message {i}")).await;
    }
    let path = format!("/api/groups/{group}/messages");
    let flood = json!({"content": "one too many"});
    assert_limited(call(&app, &path, Some(&alice.token), &flood).await, 60);
    // Another user's sends are counted apart.
    app.send(&bob, group, "bob is fine").await;
    let (count,): (i64,) = sqlx::query_as("select count(*) from messages where content = $1")
        .bind("one too many")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 0);
}

#[tokio::test]
async fn sustained_sending_is_limited_over_the_long_window() {
    let app = TestApp::spawn_with(|s| s.limit_messages_sustained = Rate::new(4, 3600)).await;
    let alice = app.user("alice").await;
    let group = app.create_group(&alice, "notes").await;
    for i in 0..4 {
        app.send(&alice, group, &format!("note {i}")).await;
    }
    let path = format!("/api/groups/{group}/messages");
    assert_limited(
        call(&app, &path, Some(&alice.token), &json!({"content": "more"})).await,
        3600,
    );
}

#[tokio::test]
async fn friend_requests_and_group_creation_are_limited_per_user() {
    let app = TestApp::spawn_with(|s| {
        s.limit_friend_requests = Rate::new(1, 3600);
        s.limit_groups = Rate::new(1, 3600);
    })
    .await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let (status, body) = app
        .post(
            "/api/friends/requests",
            Some(&alice.token),
            &json!({"username": bob.user.username}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let second = json!({"username": carol.user.username});
    assert_limited(
        call(&app, "/api/friends/requests", Some(&alice.token), &second).await,
        3600,
    );

    app.create_group(&alice, "first").await;
    let group = json!({"name": "second"});
    assert_limited(
        call(&app, "/api/groups", Some(&alice.token), &group).await,
        3600,
    );
}

#[tokio::test]
async fn typing_voice_joins_and_signals_are_refused_as_rate_limited() {
    let app = TestApp::spawn_with(|s| {
        s.limit_typing = Rate::new(1, 60);
        s.limit_voice_joins = Rate::new(1, 60);
        s.limit_voice_signals = Rate::new(1, 60);
    })
    .await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut gw = app.online(&alice.token).await;

    let typing = |reference| ClientFrame::Typing {
        group_id: group,
        reference: Some(reference),
    };
    gw.handle.send(typing(1));
    gw.handle.send(typing(2));
    assert_eq!(gw.refusal(2).await, "rate_limited");

    let join = |reference| ClientFrame::VoiceJoin {
        group_id: group,
        muted: false,
        deafened: false,
        reference: Some(reference),
    };
    gw.handle.send(join(3));
    gw.answer(3, |e| {
        matches!(e, sohbet_tests::GatewayEvent::VoiceJoined { .. }).then_some(())
    })
    .await
    .expect("the first join");
    gw.handle.send(join(4));
    assert_eq!(gw.refusal(4).await, "rate_limited");

    let signal = |reference| ClientFrame::VoiceSignal {
        group_id: group,
        to: bob.user.user_id,
        signal: VoiceSignal::Bye,
        reference: Some(reference),
    };
    // The first is counted, whatever becomes of it (bob is not in the call).
    gw.handle.send(signal(5));
    assert_eq!(gw.refusal(5).await, "target_not_in_call");
    gw.handle.send(signal(6));
    assert_eq!(gw.refusal(6).await, "rate_limited");
}
