//! Surviving a dependency's failure while clients are connected.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use protocol::gateway::Event;
use reqwest::StatusCode;
use serde_json::json;
use sohbet_server::config::Secret;
use sohbet_tests::{GatewayEvent, TestApp, EVENT_WAIT};

/// A Redis of this test's own, with persistence on (as self-hosters should run it), so it
/// can be restarted without disturbing the shared test Redis of every other test.
struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("sohbet-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.spawn();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        // Ready once it answers.
        for _ in 0..200 {
            let ping = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("private redis did not start");
    }

    /// Stops Redis as an operator's restart does (SHUTDOWN writes the append-only file),
    /// then starts it again on the same port and data.
    fn restart(&mut self) {
        if let Ok(mut conn) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut conn);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.spawn();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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

#[tokio::test]
async fn readiness_fails_while_redis_is_down_and_liveness_does_not() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let app = TestApp::spawn_with(|s| s.redis_url = Secret(url)).await;
    let health = |path: &'static str| {
        let app = &app;
        async move { app.call(reqwest::Method::GET, path, None, None).await }
    };
    assert_eq!(health("/api/health").await.0, StatusCode::OK);

    drop(redis);

    let (status, body) = health("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, json!({"postgres": "ok", "redis": "unreachable"}));
    let (status, body) = health("/api/health/live").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
