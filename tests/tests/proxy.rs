//! Behind a reverse proxy: `X-Forwarded-For` names the client only when the request comes
//! from a `--trusted-proxy`; from anyone else it is ignored.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sohbet_tests::{TestApp, PASSWORD};

/// Logs `login` in with `X-Forwarded-For: forwarded`; returns the status and body.
async fn login_via(app: &TestApp, login: &str, forwarded: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"login": login, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The `ip_address` recorded on the session holding `token`.
async fn session_ip(app: &TestApp, token: &str) -> String {
    let (status, sessions) = app.get("/api/auth/sessions", token).await;
    assert_eq!(status, StatusCode::OK);
    sessions
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["ip_address"].as_str())
        .expect("the current session")
        .to_owned()
}

#[tokio::test]
async fn a_forwarded_address_is_ignored_from_an_untrusted_peer() {
    let app = TestApp::spawn_with(|s| s.login_ip_limit = 2).await;
    app.register("dave").await;
    let (status, body) = login_via(&app, "dave", "198.51.100.7").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("token");
    assert_eq!(session_ip(&app, token).await, "127.0.0.1");
    // Changing the claimed address does not escape the per-IP limit.
    assert_eq!(
        login_via(&app, "dave", "198.51.100.8").await.0,
        StatusCode::OK
    );
    assert_eq!(
        login_via(&app, "dave", "198.51.100.9").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_trusted_proxy_passes_the_client_address_on() {
    let app = TestApp::spawn_with(|s| {
        s.login_ip_limit = 1;
        s.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    })
    .await;
    app.register("erin").await;
    // The client forged the first entry; the proxy appended the address it saw.
    let (status, body) = login_via(&app, "erin", "6.6.6.6, 198.51.100.7").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("token");
    assert_eq!(session_ip(&app, token).await, "198.51.100.7");
    // Rate limits are per client behind the proxy, not per proxy.
    assert_eq!(
        login_via(&app, "erin", "203.0.113.4").await.0,
        StatusCode::OK
    );
    assert_eq!(
        login_via(&app, "erin", "198.51.100.7").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}
