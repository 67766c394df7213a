//! Sessions in Redis: the seed's key and JSON, TTL and its renewal, listing, revocation,
//! expiry, and login rate limits.

use std::time::Duration;

use protocol::auth::SessionInfo;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sohbet_tests::{code, parse, TestApp, PASSWORD};

#[tokio::test]
async fn session_is_stored_as_the_seed_describes() {
    let app = TestApp::spawn().await;
    let user = app.register("ali").await;
    let login = app.login("ali").await;
    let key = app.key(&format!("session:{}", login.token));
    let raw: String = app.redis_cmd(redis::cmd("GET").arg(&key)).await;
    let value: Value = serde_json::from_str(&raw).expect("session JSON");
    let fields: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields.len(), 5, "{value}");
    assert_eq!(value["user_id"], user.user_id);
    assert_eq!(value["username"], "ali");
    assert_eq!(value["ip_address"], "127.0.0.1");
    assert_eq!(value["device_info"], "test");
    let created = chrono::DateTime::parse_from_rfc3339(value["created_at"].as_str().expect("str"))
        .expect("rfc3339");
    assert!(
        (chrono::Utc::now() - created.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            < 60
    );
    let ttl: i64 = app.redis_cmd(redis::cmd("TTL").arg(&key)).await;
    assert!((3590..=3600).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn using_a_session_renews_its_ttl() {
    let app = TestApp::spawn_with(|s| s.session_ttl_secs = 6).await;
    let user = app.user("bora").await;
    let key = app.key(&format!("session:{}", user.token));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let before: i64 = app.redis_cmd(redis::cmd("PTTL").arg(&key)).await;
    assert!(before <= 4000, "ttl should have run down, {before}");
    let (status, _) = app.get("/api/users/me", &user.token).await;
    assert_eq!(status, StatusCode::OK);
    let after: i64 = app.redis_cmd(redis::cmd("PTTL").arg(&key)).await;
    assert!(after > 5000, "ttl renewed to ~6 s, got {after} ms");
}

#[tokio::test]
async fn an_expired_session_is_401() {
    let app = TestApp::spawn_with(|s| s.session_ttl_secs = 1).await;
    let user = app.user("cem").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = app.get("/api/users/me", &user.token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthorized");
}

#[tokio::test]
async fn logout_ends_only_the_calling_session() {
    let app = TestApp::spawn().await;
    let first = app.user("deniz").await;
    let second = app.login("deniz").await.token;
    let (status, _) = app
        .call(Method::POST, "/api/auth/logout", Some(&first.token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/users/me", &first.token).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get("/api/users/me", &second).await.0, StatusCode::OK);
    let exists: i64 = app
        .redis_cmd(redis::cmd("EXISTS").arg(app.key(&format!("session:{}", first.token))))
        .await;
    assert_eq!(exists, 0);
}

async fn sessions(app: &TestApp, token: &str) -> Vec<SessionInfo> {
    let (status, body) = app.get("/api/auth/sessions", token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

#[tokio::test]
async fn sessions_are_listed_without_tokens_and_one_can_be_revoked() {
    let app = TestApp::spawn().await;
    let a = app.user("ece").await;
    let b = app.login("ece").await.token;
    let (_, raw) = app.get("/api/auth/sessions", &a.token).await;
    assert!(
        !raw.to_string().contains(&b),
        "another session's token is never listed"
    );
    let list = sessions(&app, &a.token).await;
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s.current).count(), 1);
    let other = list.iter().find(|s| !s.current).expect("other session");

    let path = format!("/api/auth/sessions/{}", other.session_id);
    let (status, _) = app.call(Method::DELETE, &path, Some(&a.token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/users/me", &b).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get("/api/users/me", &a.token).await.0, StatusCode::OK);
    assert_eq!(sessions(&app, &a.token).await.len(), 1);

    // Revoking it again, or an id that is not yours, is 404.
    let (status, body) = app.call(Method::DELETE, &path, Some(&a.token), None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn a_user_cannot_revoke_someone_elses_session() {
    let app = TestApp::spawn().await;
    let a = app.user("fatma").await;
    let b = app.user("gul").await;
    let theirs = sessions(&app, &b.token).await.remove(0);
    let path = format!("/api/auth/sessions/{}", theirs.session_id);
    let (status, _) = app.call(Method::DELETE, &path, Some(&a.token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/users/me", &b.token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn revoking_all_others_keeps_the_current_session() {
    let app = TestApp::spawn().await;
    let keep = app.user("hakan").await;
    let others = [
        app.login("hakan").await.token,
        app.login("hakan").await.token,
    ];
    let (status, body) = app
        .call(
            Method::DELETE,
            "/api/auth/sessions",
            Some(&keep.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"revoked": 2}));
    for t in &others {
        assert_eq!(
            app.get("/api/users/me", t).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.get("/api/users/me", &keep.token).await.0,
        StatusCode::OK
    );
    assert_eq!(sessions(&app, &keep.token).await.len(), 1);
}

#[tokio::test]
async fn expired_sessions_drop_out_of_the_list() {
    let app = TestApp::spawn_with(|s| s.session_ttl_secs = 2).await;
    let user = app.user("irem").await;
    app.login("irem").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Using the first keeps it alive; the second lapses.
    assert_eq!(sessions(&app, &user.token).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let list = sessions(&app, &user.token).await;
    assert_eq!(list.len(), 1);
    assert!(list[0].current);
}

#[tokio::test]
async fn failed_logins_are_limited_per_account() {
    let app = TestApp::spawn_with(|s| {
        s.login_account_limit = 3;
        s.login_ip_limit = 1000;
    })
    .await;
    app.register("kaan").await;
    for _ in 0..3 {
        assert_eq!(
            app.login_raw("kaan", "wrong password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right password waits: the account is locked for the window.
    let resp = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&json!({"login": "KAAN", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=300).contains(&retry), "{retry}");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(code(&body), "rate_limited");
    // Another account from the same IP is not affected.
    app.register("lale").await;
    app.login("lale").await;
}

#[tokio::test]
async fn failures_from_one_address_do_not_lock_the_owner_out_from_another() {
    let app = TestApp::spawn_with(|s| {
        s.login_account_limit = 3;
        s.login_ip_limit = 1000;
    })
    .await;
    app.register("defne").await;
    for _ in 0..3 {
        assert_eq!(
            app.login_raw("defne", "wrong password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // The guesser's address waits out the window...
    assert_eq!(
        app.login_raw("defne", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...but the owner, elsewhere, still logs in.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let resp = elsewhere
        .post(app.url("/api/auth/login"))
        .json(&json!({"login": "defne", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_control_character_in_the_login_is_422_not_500() {
    let app = TestApp::spawn().await;
    app.register("ece").await;
    for login in ["ece\u{0}", "e\u{0}ce@example.org", "ece\u{1b}"] {
        let (status, body) = app.login_raw(login, PASSWORD).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{login:?}: {body}"
        );
        assert_eq!(code(&body), "validation_failed");
    }
    let (status, _) = app.login_raw(&"e".repeat(255), PASSWORD).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn unknown_accounts_are_limited_like_real_ones() {
    let app = TestApp::spawn_with(|s| s.login_account_limit = 2).await;
    for _ in 0..2 {
        assert_eq!(
            app.login_raw("ghost", PASSWORD).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.login_raw("ghost", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn login_attempts_are_limited_per_ip() {
    let app = TestApp::spawn_with(|s| {
        s.login_ip_limit = 4;
        s.login_window_secs = 60;
    })
    .await;
    app.register("mert").await;
    for _ in 0..4 {
        assert_eq!(app.login_raw("mert", PASSWORD).await.0, StatusCode::OK);
    }
    let (status, body) = app.login_raw("mert", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code(&body), "rate_limited");
}

#[tokio::test]
async fn a_successful_login_clears_the_failure_count() {
    let app = TestApp::spawn_with(|s| s.login_account_limit = 3).await;
    app.register("nil").await;
    for _ in 0..2 {
        app.login_raw("nil", "wrong password").await;
    }
    app.login("nil").await;
    for _ in 0..2 {
        assert_eq!(
            app.login_raw("nil", "wrong password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    app.login("nil").await;
}
