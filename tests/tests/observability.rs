//! What an operator watches: Prometheus metrics, liveness and readiness.

use protocol::gateway::{ClientFrame, Event};
use reqwest::StatusCode;
use serde_json::json;
use sohbet_client::gateway::GatewayEvent;
use sohbet_tests::{TestApp, PASSWORD};

/// The exposition text of `/metrics`.
async fn scrape(app: &TestApp) -> String {
    let resp = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    let kind = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    resp.text().await.expect("body")
}

/// The value of the series `name` whose labels include every one of `labels` (`key="v"`),
/// summed over the matching series; 0 when there is none.
fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|want| rest.contains(want))
        })
        .map(|(_, v)| v.parse::<f64>().expect("a number"))
        .sum()
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_status_with_latency() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let before = scrape(&app).await;
    let series = [
        "method=\"GET\"",
        "route=\"/api/groups/{group_id}/messages\"",
        "status=\"404\"",
    ];
    for id in [424_242, 434_343] {
        let (status, _) = app
            .get(&format!("/api/groups/{id}/messages"), &alice.token)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let after = scrape(&app).await;
    let counted = value(&after, "sohbet_http_requests_total", &series)
        - value(&before, "sohbet_http_requests_total", &series);
    assert_eq!(counted, 2.0, "both ids under one route template");
    assert!(
        !after.contains("/api/groups/424242"),
        "raw paths never become labels"
    );
    let timed = value(
        &after,
        "sohbet_http_request_duration_seconds_count",
        &series,
    ) - value(
        &before,
        "sohbet_http_request_duration_seconds_count",
        &series,
    );
    assert_eq!(timed, 2.0);
    let slowest_bucket = [series[0], series[1], series[2], "le=\"+Inf\""];
    assert!(
        value(
            &after,
            "sohbet_http_request_duration_seconds_bucket",
            &slowest_bucket
        ) >= 2.0
    );
    // An unknown route is one series, not one per path.
    app.get("/api/no/such/route", &alice.token).await;
    let text = scrape(&app).await;
    assert!(
        value(
            &text,
            "sohbet_http_requests_total",
            &["route=\"unmatched\"", "status=\"404\""]
        ) >= 1.0
    );
}

#[tokio::test]
async fn login_failures_and_rate_limit_hits_are_counted() {
    let app = TestApp::spawn_with(|s| s.login_ip_limit = 2).await;
    app.user("bob").await;
    let before = scrape(&app).await;
    let (status, _) = app.login_raw("bob", "not the password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.login_raw("bob", PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "user() logged in once already"
    );
    let after = scrape(&app).await;
    let delta = |name| value(&after, name, &[]) - value(&before, name, &[]);
    assert_eq!(delta("sohbet_login_failures_total"), 1.0);
    assert_eq!(delta("sohbet_rate_limit_hits_total"), 1.0);
}

#[tokio::test]
async fn gateway_connections_events_and_calls_are_reported() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let before = scrape(&app).await;
    let mut gw_alice = app.online(&alice.token).await;
    let mut gw_bob = app.online(&bob.token).await;
    app.send(&alice, group_id, "counted").await;
    gw_bob
        .expect("the message", |e| match e {
            GatewayEvent::Event(Event::MessageCreated { message })
                if message.content == "counted" =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    let reference = gw_alice.handle.next_ref();
    gw_alice.handle.send(ClientFrame::VoiceJoin {
        group_id,
        muted: true,
        deafened: false,
        reference: Some(reference),
    });
    gw_alice
        .answer(reference, |e| {
            matches!(e, GatewayEvent::VoiceJoined { reference: Some(r), .. } if *r == reference)
                .then_some(())
        })
        .await
        .expect("joined the call");

    let text = scrape(&app).await;
    assert_eq!(value(&text, "sohbet_gateway_connections", &[]), 2.0);
    let delivered = value(&text, "sohbet_gateway_events_delivered_total", &[])
        - value(&before, "sohbet_gateway_events_delivered_total", &[]);
    assert!(
        delivered >= 2.0,
        "the message reached both sockets: {delivered}"
    );
    assert_eq!(value(&text, "sohbet_calls_active", &[]), 1.0);
    assert_eq!(value(&text, "sohbet_call_participants", &[]), 1.0);
    // The pool's connections are idle or in use; which one at the scrape's instant depends
    // on what the server's background tasks are doing, so the test checks their sum.
    let open = value(
        &text,
        "sohbet_postgres_pool_connections",
        &["state=\"idle\""],
    ) + value(
        &text,
        "sohbet_postgres_pool_connections",
        &["state=\"in_use\""],
    );
    assert!(
        (1.0..=5.0).contains(&open),
        "the pool's open connections are reported: {open}"
    );
    assert_eq!(
        value(&text, "sohbet_postgres_pool_max_connections", &[]),
        5.0
    );
    assert!(
        text.contains("sohbet_gateway_queue_closes_total"),
        "queue closes are reported"
    );
    drop(gw_bob);
}

#[tokio::test]
async fn liveness_is_not_readiness() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .call(reqwest::Method::GET, "/api/health/live", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
    let (status, body) = app
        .call(reqwest::Method::GET, "/api/health", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"postgres": "ok", "redis": "ok"}));
}
