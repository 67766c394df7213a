//! Surviving a dependency's failure while clients are connected.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use protocol::gateway::Event;
use reqwest::StatusCode;
use serde_json::json;
use sohbet_server::config::Secret;
use sohbet_tests::{
    code,
    services::{PrivatePostgres, PrivateRedis},
    GatewayEvent, TestApp, EVENT_WAIT,
};

#[tokio::test]
async fn live_delivery_comes_back_after_redis_restarts() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = TestApp::spawn_with(|s| s.redis_url = Secret(url)).await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let mut gw = app.online(&bob.token).await;

    // Off the runtime's thread, so the server lives through the outage as it would.
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .expect("restart");

    // The server resubscribes, then closes its sockets so clients resume what the gap may
    // have held back; bob's client reconnects by itself.
    gw.expect("a close with going away", |e| {
        matches!(e, GatewayEvent::Disconnected { code: Some(1001) }).then_some(())
    })
    .await;
    gw.ready().await;

    // Sent after the restart: must arrive live, not only on some later resume.
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        let (status, body) = app
            .post(
                &format!("/api/groups/{group_id}/messages"),
                Some(&alice.token),
                &json!({"content": "after the restart"}),
            )
            .await;
        if status == StatusCode::CREATED {
            break;
        }
        // The REST side's connection to Redis may need a moment to come back.
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "sending kept failing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.expect("the message sent after the restart", |e| match e {
        GatewayEvent::Event(Event::MessageCreated { message })
            if message.content == "after the restart" =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    drop(redis);
}

/// What one send during the PostgreSQL outage test got back.
struct SendOutcome {
    status: StatusCode,
    body: serde_json::Value,
    /// The stored message's id when acknowledged (201).
    message_id: Option<i64>,
    /// When the answer came.
    answered_at: tokio::time::Instant,
}

/// Sends numbered messages as fast as answers come, until `stop`, reporting each outcome.
async fn send_until_stopped(
    http: reqwest::Client,
    url: String,
    token: String,
    name: &'static str,
    stop: Arc<AtomicBool>,
    outcomes: tokio::sync::mpsc::UnboundedSender<SendOutcome>,
) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let answer = http
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"content": format!("{name} {n}")}))
            .send()
            .await;
        // A request the server never answers within the client's timeout fails the test.
        let response = answer.unwrap_or_else(|e| panic!("{name} {n}: no answer: {e}"));
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("a JSON answer");
        let message_id = (status == StatusCode::CREATED)
            .then(|| body["message_id"].as_i64().expect("message_id"));
        let outcome = SendOutcome {
            status,
            body,
            message_id,
            answered_at: tokio::time::Instant::now(),
        };
        if outcomes.send(outcome).is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn acknowledged_messages_survive_a_postgres_outage() {
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .expect("private PostgreSQL");
    let app = TestApp::spawn_on(&pg.url(), |_| {}).await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group_id = app.group_with(&alice, &[&bob, &carol]).await;
    let mut receivers = Vec::new();
    for member in [&alice, &bob, &carol] {
        receivers.push(app.online(&member.token).await);
    }

    // Well past the server's own bounds (2 s pool acquire, 5 s statement): a request
    // still unanswered then has hung.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client");
    let url = app.url(&format!("/api/groups/{group_id}/messages"));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let senders: Vec<_> = [("alice", &alice), ("bob", &bob)]
        .into_iter()
        .map(|(name, user)| {
            tokio::spawn(send_until_stopped(
                http.clone(),
                url.clone(),
                user.token.clone(),
                name,
                stop.clone(),
                tx.clone(),
            ))
        })
        .collect();
    drop(tx);

    // Load before, ~5 s of outage, then until sends succeed again for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        std::thread::sleep(Duration::from_secs(5));
        pg.start_again();
        pg
    })
    .await
    .expect("PostgreSQL restarted");
    let restarted = tokio::time::Instant::now();

    let mut results = Vec::new();
    let recovery_deadline = restarted + Duration::from_secs(30);
    loop {
        let recovered = results
            .iter()
            .filter(|o: &&SendOutcome| o.message_id.is_some() && o.answered_at > restarted)
            .count();
        if recovered >= 20 {
            break;
        }
        match tokio::time::timeout_at(recovery_deadline, outcomes.recv()).await {
            Ok(Some(outcome)) => results.push(outcome),
            Ok(None) => panic!("the senders stopped"),
            Err(_) => panic!("sending did not recover within 30 s of PostgreSQL's return"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.await.expect("sender");
    }
    while let Ok(outcome) = outcomes.try_recv() {
        results.push(outcome);
    }

    // During the outage: 503 in the one error shape, nothing else.
    let mut unavailable = 0;
    for outcome in &results {
        match outcome.status {
            StatusCode::CREATED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(code(&outcome.body), "unavailable", "{}", outcome.body);
                unavailable += 1;
            }
            other => panic!("unexpected answer {other}: {}", outcome.body),
        }
    }
    assert!(unavailable > 0, "the outage was never noticed");
    let acknowledged: Vec<i64> = results.iter().filter_map(|o| o.message_id).collect();

    // Nothing half-written: the group's sequence has no gap or duplicate, and holds every
    // acknowledged message.
    let (last_seq,): (i64,) =
        sqlx::query_as("select last_seq from chat_groups where group_id = $1")
            .bind(group_id)
            .fetch_one(&app.db)
            .await
            .expect("group");
    let stored: Vec<(i64, i64)> =
        sqlx::query_as("select message_id, seq from messages where group_id = $1 order by seq")
            .bind(group_id)
            .fetch_all(&app.db)
            .await
            .expect("messages");
    let seqs: Vec<i64> = stored.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
    let stored_ids: HashSet<i64> = stored.iter().map(|(id, _)| *id).collect();
    for id in &acknowledged {
        assert!(
            stored_ids.contains(id),
            "acknowledged message {id} not stored"
        );
    }

    // Every member gets every acknowledged message exactly once (live, or on resuming).
    for (member, gw) in ["alice", "bob", "carol"].iter().zip(&mut receivers) {
        let mut seen: HashMap<i64, usize> = HashMap::new();
        let mut missing: HashSet<i64> = acknowledged.iter().copied().collect();
        while !missing.is_empty() {
            let id = gw
                .expect(
                    &format!("{member}: {} more messages", missing.len()),
                    |e| match e {
                        GatewayEvent::Event(Event::MessageCreated { message })
                            if message.group_id == group_id =>
                        {
                            Some(message.message_id)
                        }
                        _ => None,
                    },
                )
                .await;
            *seen.entry(id).or_default() += 1;
            missing.remove(&id);
        }
        // Whatever is still on its way: a duplicate would show here.
        for event in gw.collect_for(Duration::from_millis(500)).await {
            if let GatewayEvent::Event(Event::MessageCreated { message }) = event {
                *seen.entry(message.message_id).or_default() += 1;
            }
        }
        let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            duplicated.is_empty(),
            "{member} got duplicates: {duplicated:?}"
        );
    }
    drop(app);
    drop(pg);
}

#[tokio::test]
async fn redis_outage_fails_fast_and_sessions_survive_its_restart() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = TestApp::spawn_with(|s| s.redis_url = Secret(url)).await;
    let alice = app.user("alice").await;

    let mut redis = tokio::task::spawn_blocking(move || {
        redis.stop();
        redis
    })
    .await
    .expect("redis stopped");

    // Answered with 503 in the error shape, well before a client gives up (the redis
    // client's retries once took 7–9 s here).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    for _ in 0..3 {
        let response = http
            .get(app.url("/api/users/me"))
            .bearer_auth(&alice.token)
            .send()
            .await
            .expect("an answer within 5 s");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(code(&body), "unavailable", "{body}");
    }

    // A gateway identify is told to try again later (and the SDK backs off and retries).
    let mut gw = app.gateway(&alice.token);
    gw.expect("a close with try again later", |e| {
        matches!(e, GatewayEvent::Disconnected { code: Some(1013) }).then_some(())
    })
    .await;

    // Redis is back with its append-only file: the session is still valid, and the waiting
    // gateway client gets in by itself.
    let redis = tokio::task::spawn_blocking(move || {
        redis.start_again();
        redis
    })
    .await
    .expect("redis started");
    gw.ready().await;
    let (status, body) = app.get("/api/users/me", &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(app);
    drop(redis);
}
