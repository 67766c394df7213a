//! `--database-read-url`: history pages and the group and friend lists read through a second
//! pool, which in production points at a streaming replica. Here it is a read-only role of
//! the test's PostgreSQL (`default_transaction_read_only = on`, SELECT only), so a write that
//! went there would fail; while that role cannot connect, only those reads fail (503) and
//! they come back with it.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sohbet_server::config::Secret;
use sohbet_tests::{code, TestApp};
use sqlx::{Connection, PgConnection};

/// `url` with its user and password replaced.
fn as_role(url: &str, role: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host_and_more = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    format!("{scheme}://{role}:{password}@{host_and_more}")
}

async fn admin(app: &TestApp, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn contents(page: &Value) -> Vec<&str> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect()
}

#[tokio::test]
async fn reads_go_through_the_read_url_and_writes_to_the_primary() {
    let primary = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let role = format!(
        "reader_{}",
        std::process::id() ^ u32::from(sohbet_tests::services::free_port())
    );
    let mut cluster = PgConnection::connect(&primary).await.expect("connect");
    for sql in [
        format!("create role {role} login password 'replica'"),
        format!("alter role {role} set default_transaction_read_only = on"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut cluster)
            .await
            .expect("reader role");
    }
    let mut app = TestApp::spawn_with(|s| {
        s.database_read_url = Some(Secret(as_role(s.database_url.expose(), &role, "replica")))
    })
    .await;
    admin(
        &app,
        &format!("grant select on all tables in schema public to {role}"),
    )
    .await;

    // Writes (registration, a group, messages) work: none went to the read-only role.
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    // Befriends them, then makes the group.
    let group = app.group_with(&ada, &[&bob]).await;
    for text in ["one", "two", "three"] {
        app.send(&ada, group, text).await;
    }
    // Reads through it work.
    let (status, page) = app
        .get(&format!("/api/groups/{group}/messages"), &bob.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(contents(&page), ["one", "two", "three"]);
    let (status, groups) = app.get("/api/groups", &bob.token).await;
    assert_eq!(status, StatusCode::OK, "{groups}");
    assert!(groups
        .as_array()
        .expect("groups")
        .iter()
        .any(|g| g["group"]["group_id"] == json!(group)));
    let (status, friends) = app.get("/api/friends", &bob.token).await;
    assert_eq!(status, StatusCode::OK, "{friends}");
    assert_eq!(friends.as_array().expect("friends").len(), 1);

    // The replica becomes unreachable: those reads answer 503; sends and the rest go on.
    admin(&app, &format!("alter role {role} connection limit 0")).await;
    admin(
        &app,
        &format!("select pg_terminate_backend(pid) from pg_stat_activity where usename = '{role}'"),
    )
    .await;
    let (status, body) = app
        .get(&format!("/api/groups/{group}/messages"), &bob.token)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "unavailable");
    app.send(&ada, group, "four").await;
    let (status, detail) = app.get(&format!("/api/groups/{group}"), &bob.token).await;
    assert_eq!(status, StatusCode::OK, "{detail}");

    // Back: the page has everything acknowledged meanwhile.
    admin(&app, &format!("alter role {role} connection limit -1")).await;
    let (status, page) = app
        .get(&format!("/api/groups/{group}/messages"), &bob.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(contents(&page), ["one", "two", "three", "four"]);

    app.stop().await;
    admin(&app, &format!("drop owned by {role}")).await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("drop role {role}")))
        .execute(&mut cluster)
        .await;
}
