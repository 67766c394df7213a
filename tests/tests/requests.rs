//! Malformed requests: every one answers 4xx in the one error shape, never 500.

use reqwest::StatusCode;
use serde_json::Value;
use sohbet_tests::{code, TestApp};

async fn raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = app.http.post(app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    for body in [&b"{"[..], b"not json", b"{\"username\": }", b"\xff\xfe"] {
        let (status, answer) = raw(
            &app,
            "/api/auth/register",
            Some("application/json"),
            body.to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(code(&answer), "malformed_json");
    }
}

#[tokio::test]
async fn wrong_types_missing_and_unknown_fields_are_422() {
    let app = TestApp::spawn().await;
    for body in [
        r#"{"username": 5, "email": "a@b.co", "password": "longenough"}"#,
        r#"{"email": "a@b.co", "password": "longenough"}"#,
        r#"{"username": "abc", "email": "a@b.co", "password": "longenough", "admin": true}"#,
        r#"[1, 2, 3]"#,
        r#"null"#,
    ] {
        let (status, answer) = raw(
            &app,
            "/api/auth/register",
            Some("application/json"),
            body.into(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(code(&answer), "invalid_body", "{body}");
    }
}

#[tokio::test]
async fn a_body_without_json_content_type_is_415() {
    let app = TestApp::spawn().await;
    let (status, answer) = raw(&app, "/api/auth/login", Some("text/plain"), b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(code(&answer), "unsupported_media_type");
    let (status, _) = raw(&app, "/api/auth/login", None, b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn an_oversize_body_is_413() {
    let app = TestApp::spawn_with(|s| s.max_body_bytes = 4096).await;
    let big = format!(
        r#"{{"username": "abc", "email": "a@b.co", "password": "{}"}}"#,
        "x".repeat(10_000)
    );
    let (status, answer) = raw(
        &app,
        "/api/auth/register",
        Some("application/json"),
        big.into(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&answer), "payload_too_large");
}

#[tokio::test]
async fn an_unknown_route_is_404_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(app.url("/api/nothing/here"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(code(&body), "not_found");
}

#[tokio::test]
async fn health_reports_both_stores() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(app.url("/api/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"postgres": "ok", "redis": "ok"}));
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/health", "get"),
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/auth/sessions", "get"),
        ("/api/auth/sessions", "delete"),
        ("/api/auth/sessions/{session_id}", "delete"),
        ("/api/users/me", "get"),
        ("/api/users/me", "patch"),
        ("/api/users/me/friend-code", "post"),
        ("/api/friends", "get"),
        ("/api/friends/{user_id}", "delete"),
        ("/api/friends/requests", "get"),
        ("/api/friends/requests", "post"),
        ("/api/friends/requests/{user_id}", "delete"),
        ("/api/friends/requests/{user_id}/accept", "post"),
        ("/api/friends/requests/{user_id}/decline", "post"),
        ("/api/blocks", "get"),
        ("/api/blocks/{user_id}", "put"),
        ("/api/blocks/{user_id}", "delete"),
        ("/api/dms", "post"),
        ("/api/groups", "get"),
        ("/api/groups", "post"),
        ("/api/groups/{group_id}", "get"),
        ("/api/groups/{group_id}", "patch"),
        ("/api/groups/{group_id}", "delete"),
        ("/api/groups/{group_id}/members", "post"),
        ("/api/groups/{group_id}/members/{user_id}", "patch"),
        ("/api/groups/{group_id}/members/{user_id}", "delete"),
        ("/api/groups/{group_id}/leave", "post"),
        ("/api/groups/{group_id}/owner", "post"),
        ("/api/groups/{group_id}/messages", "get"),
        ("/api/groups/{group_id}/messages", "post"),
        ("/api/groups/{group_id}/messages/{message_id}", "patch"),
        ("/api/groups/{group_id}/messages/{message_id}", "delete"),
        (
            "/api/groups/{group_id}/messages/{message_id}/receipts",
            "get",
        ),
        ("/api/groups/{group_id}/read", "get"),
        ("/api/groups/{group_id}/read", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    for schema in [
        "Message",
        "GroupDetail",
        "GroupListItem",
        "FriendRequests",
        "ReadState",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    // The history documents its query cursors.
    let history = &paths["/api/groups/{group_id}/messages"]["get"]["parameters"];
    let names: Vec<&str> = history
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["group_id", "before", "after", "around", "limit"] {
        assert!(
            names.contains(&name),
            "history parameter {name} missing: {names:?}"
        );
    }
}

#[tokio::test]
async fn a_json_array_is_not_taken_for_an_object() {
    let app = TestApp::spawn().await;
    let user = app.user("ayla").await;
    let group_id = app.create_group(&user, "arrays").await;
    // serde fills struct fields from an array in order: these once logged in and sent.
    let (status, answer) = app
        .post(
            "/api/auth/login",
            None,
            &serde_json::json!(["ayla", sohbet_tests::PASSWORD]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(code(&answer), "invalid_body");
    let (status, answer) = app
        .post(
            &format!("/api/groups/{group_id}/messages"),
            Some(&user.token),
            &serde_json::json!(["text", "nonce-1"]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(code(&answer), "invalid_body");
}

#[tokio::test]
async fn a_wrong_method_is_405_in_the_error_shape_with_allow() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .put(app.url("/api/groups"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = resp
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(code(&body), "method_not_allowed");
}

#[tokio::test]
async fn a_plain_request_to_the_gateway_is_400_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(app.url("/api/gateway"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(code(&body), "websocket_required");
}
