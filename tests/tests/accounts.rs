//! Accounts: registration, login, profile, friend codes, validation of every field.

use protocol::users::User;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sohbet_tests::{code, parse, TestApp, PASSWORD};

#[tokio::test]
async fn register_returns_the_new_user_with_a_friend_code() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/api/auth/register",
            None,
            &json!({"username": "Ada.L_1", "email": "ada@example.org", "password": PASSWORD, "display_name": "Ada"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let user: User = parse(body);
    assert_eq!(user.username, "ada.l_1", "usernames are stored lower-case");
    assert_eq!(user.display_name.as_deref(), Some("Ada"));
    assert_eq!(user.friend_code.len(), 8);
    assert!(user
        .friend_code
        .chars()
        .all(|c| "23456789ABCDEFGHJKMNPQRSTUVWXYZ".contains(c)));
    let hash: String = sqlx::query_scalar("select password_hash from users where user_id = $1")
        .bind(user.user_id)
        .fetch_one(&app.db)
        .await
        .expect("row");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
}

#[tokio::test]
async fn login_works_by_username_and_by_email_in_any_case() {
    let app = TestApp::spawn().await;
    let user = app.register("grace").await;
    for login in ["grace", "GRACE", "grace@example.org", "Grace@Example.ORG"] {
        let resp = app.login(login).await;
        assert_eq!(resp.user.user_id, user.user_id);
        assert_eq!(resp.token.len(), 64, "256-bit token, hex");
        assert!(resp.expires_at > chrono::Utc::now() + chrono::Duration::seconds(3500));
    }
}

#[tokio::test]
async fn every_login_gets_a_distinct_token() {
    let app = TestApp::spawn().await;
    app.register("hopper").await;
    let a = app.login("hopper").await.token;
    let b = app.login("hopper").await.token;
    assert_ne!(a, b);
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_identical_errors() {
    let app = TestApp::spawn().await;
    app.register("turing").await;
    let wrong = app.login_raw("turing", "not the password").await;
    let unknown = app.login_raw("nobody_here", PASSWORD).await;
    let unknown_email = app.login_raw("nobody@example.org", PASSWORD).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, unknown_email);
    assert_eq!(code(&wrong.1), "invalid_credentials");
}

#[tokio::test]
async fn me_returns_the_caller_and_requires_a_token() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let (status, body) = app.get("/api/users/me", &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(parse::<User>(body), alice.user);
    let (status, body) = app.call(Method::GET, "/api/users/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthorized");
    let (status, _) = app.get("/api/users/me", "not-a-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.get("/api/users/me", &"0".repeat(64)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn profile_update_sets_and_clears_fields() {
    let app = TestApp::spawn().await;
    let bob = app.user("bob").await;
    let patch = |body| app.call(Method::PATCH, "/api/users/me", Some(&bob.token), Some(body));

    let first = json!({
        "display_name": "  Bob B.  ", "profile_pic": "https://img.example.org/b.png", "status": "dnd"
    });
    let (status, body) = patch(&first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user: User = parse(body);
    assert_eq!(user.display_name.as_deref(), Some("Bob B."));
    assert_eq!(
        user.profile_pic.as_deref(),
        Some("https://img.example.org/b.png")
    );
    assert_eq!(user.status, protocol::users::UserStatus::Dnd);
    assert!(user.updated_at > bob.user.updated_at);

    // Absent fields stay; null clears.
    let clear = json!({"display_name": null});
    let (status, body) = patch(&clear).await;
    assert_eq!(status, StatusCode::OK);
    let user: User = parse(body);
    assert_eq!(user.display_name, None);
    assert_eq!(
        user.profile_pic.as_deref(),
        Some("https://img.example.org/b.png")
    );
    assert_eq!(user.status, protocol::users::UserStatus::Dnd);
}

#[tokio::test]
async fn profile_update_rejects_bad_values_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let carol = app.user("carol").await;
    let cases = [
        (json!({"display_name": ""}), "display_name"),
        (json!({"display_name": "x".repeat(65)}), "display_name"),
        (json!({"profile_pic": "javascript:alert(1)"}), "profile_pic"),
        (
            json!({"profile_pic": "ftp://example.org/x.png"}),
            "profile_pic",
        ),
        (
            json!({"display_name": "ok", "profile_pic": "not a url"}),
            "profile_pic",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app
            .call(
                Method::PATCH,
                "/api/users/me",
                Some(&carol.token),
                Some(&body),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(code(&answer), "validation_failed");
        assert_eq!(answer["error"]["field"], field);
    }
    for body in [
        json!({"status": "offline"}),
        json!({"status": 3}),
        json!({"nickname": "x"}),
    ] {
        let (status, answer) = app
            .call(
                Method::PATCH,
                "/api/users/me",
                Some(&carol.token),
                Some(&body),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(code(&answer), "invalid_body");
    }
    let (_, body) = app.get("/api/users/me", &carol.token).await;
    assert_eq!(parse::<User>(body), carol.user, "nothing was half-written");
}

#[tokio::test]
async fn friend_code_can_be_regenerated_by_its_owner() {
    let app = TestApp::spawn().await;
    let dan = app.user("dan").await;
    let (status, body) = app
        .post("/api/users/me/friend-code", Some(&dan.token), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let new_code = body["friend_code"].as_str().expect("code").to_owned();
    assert_ne!(new_code, dan.user.friend_code);
    let (_, me) = app.get("/api/users/me", &dan.token).await;
    assert_eq!(me["friend_code"], new_code.as_str());
    let (status, _) = app
        .call(Method::POST, "/api/users/me/friend-code", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn duplicate_username_or_email_is_a_conflict_regardless_of_case() {
    let app = TestApp::spawn().await;
    app.register("erin").await;
    let (status, body) = app
        .register_raw("ERIN", "other@example.org", PASSWORD)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "username_taken");
    let (status, body) = app
        .register_raw("erin2", "Erin@EXAMPLE.org", PASSWORD)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "email_taken");
    let count: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_create_one_account() {
    let app = TestApp::spawn().await;
    let emails: Vec<String> = (0..4).map(|i| format!("frank{i}@example.org")).collect();
    let attempts = emails
        .iter()
        .map(|e| app.register_raw("frank", e, PASSWORD));
    let results = futures::future::join_all(attempts).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let conflicts = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && code(b) == "username_taken")
        .count();
    assert_eq!((created, conflicts), (1, 3), "{results:?}");
}

#[tokio::test]
async fn registration_validates_every_field() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(33);
    let long_pw = "p".repeat(129);
    let long_display = "d".repeat(65);
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"username": "ab", "email": "a@b.co", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": long, "email": "a@b.co", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "has space", "email": "a@b.co", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "dash-name", "email": "a@b.co", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "émile", "email": "a@b.co", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "good", "email": "no-at-sign", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"username": "good", "email": "a@nodot", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"username": "good", "email": "a b@c.de", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"username": "good", "email": "a@b.co", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "good", "email": "a@b.co", "password": long_pw}),
            "password",
        ),
        (
            json!({"username": "good", "email": "a@b.co", "password": PASSWORD, "display_name": long_display}),
            "display_name",
        ),
        (
            json!({"username": "good", "email": "a@b.co", "password": PASSWORD, "display_name": "   "}),
            "display_name",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post("/api/auth/register", None, &body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(code(&answer), "validation_failed", "{body}");
        assert_eq!(answer["error"]["field"], field, "{body}");
    }
    // Limits are inclusive: 3 and 32 characters, 8 and 128 characters.
    let (status, body) = app
        .register_raw("abc", "abc@example.org", &"p".repeat(8))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .register_raw(&"b".repeat(32), "b@example.org", &"p".repeat(128))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let count: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 2, "no rejected registration left a row");
}
