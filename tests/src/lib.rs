//! Test harness: [`TestApp`] starts the real server on port 0 against the real PostgreSQL
//! and Redis named by `DATABASE_URL` / `REDIS_URL` (`cargo xtask test` starts private ones),
//! each app with its own database and its own Redis key prefix, so tests run in parallel
//! and clean up after themselves.
//!
//! [`bench`] holds the benchmark suites run by the `sohbet-bench` binary; [`calls`] makes
//! call participants whose audio tests can recognise.

pub mod bench;
pub mod calls;
pub mod services;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use protocol::{auth::LoginResponse, messages::Message, users::User};
use reqwest::{Method, StatusCode};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use sohbet_server::{config::Settings, rate_limit::Rate};
use sqlx::{postgres::PgPoolOptions, Connection, PgConnection, PgPool};
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse battery";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `cargo xtask test`, which starts PostgreSQL and Redis")
    })
}

fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// Lifts the abuse limits: tests and benchmarks send far faster than any person, and
/// measure behaviour, not the limiter (whose own tests set tight limits).
pub fn without_abuse_limits(settings: &mut Settings) {
    let unlimited = Rate::new(u64::MAX / 2, 1);
    settings.limit_register = unlimited;
    settings.limit_friend_requests = unlimited;
    settings.limit_messages_burst = unlimited;
    settings.limit_messages_sustained = unlimited;
    settings.limit_typing = unlimited;
    settings.limit_voice_joins = unlimited;
    settings.limit_voice_signals = unlimited;
    settings.limit_groups = unlimited;
}

/// Replaces the database name at the end of a PostgreSQL URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A database of its own for one test, dropped (forcibly) when the guard goes.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        Self::create_on(&env("DATABASE_URL")).await
    }

    /// A database on the PostgreSQL server of `server_url` (any database's URL on it).
    pub async fn create_on(server_url: &str) -> Self {
        let admin_url = with_database(server_url, "postgres");
        let name = format!("t_{}", random_suffix());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = with_database(server_url, &name);
        Self {
            name,
            url,
            admin_url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "drop database if exists {name} with (force)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A running server with its own database and Redis prefix.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub db: PgPool,
    /// The server's own kind of connection: to one Redis or to a Redis Cluster.
    pub redis: sohbet_server::redis_conn::RedisConn,
    pub prefix: String,
    pub settings: Settings,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// This instance's gateway, to simulate a crash.
    pub gateway: sohbet_server::gateway::Gateway,
    /// Owned by the first instance; peers share it.
    database: Option<Arc<TestDatabase>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `configure` has adjusted its settings (short TTLs, limits...).
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_on(&env("DATABASE_URL"), configure).await
    }

    /// Like [`spawn_with`](Self::spawn_with), on the PostgreSQL server of `postgres_url`
    /// (a private one a fault test may stop).
    pub async fn spawn_on(postgres_url: &str, configure: impl FnOnce(&mut Settings)) -> Self {
        let database = TestDatabase::create_on(postgres_url).await;
        let prefix = format!("test:{}:", database.name);
        let mut settings = Settings::new(database.url.clone(), env("REDIS_URL"));
        settings.redis_prefix = prefix.clone();
        settings.db_pool_size = 5;
        without_abuse_limits(&mut settings);
        configure(&mut settings);
        Self::start(Arc::new(database), settings).await
    }

    /// Another server instance on the same database and Redis prefix: two instances that
    /// must behave as one server.
    pub async fn spawn_peer(&self) -> Self {
        let database = self
            .database
            .clone()
            .expect("the first instance owns the database");
        Self::start(database, self.settings.clone()).await
    }

    async fn start(database: Arc<TestDatabase>, settings: Settings) -> Self {
        sohbet_server::telemetry::init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = sohbet_server::build_state(settings.clone())
            .await
            .expect("server state");
        let gateway = state.gateway.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(sohbet_server::serve(listener, state, async move {
            let _ = rx.await;
        }));
        let db = PgPoolOptions::new()
            .max_connections(3)
            .connect(&database.url)
            .await
            .expect("test pool");
        let redis = sohbet_server::redis_conn::RedisConn::connect(settings.redis_url.expose())
            .await
            .expect("redis connection");
        Self {
            addr,
            base: match settings.tls {
                Some(_) => format!("https://{addr}"),
                None => format!("http://{addr}"),
            },
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            db,
            redis,
            prefix: settings.redis_prefix.clone(),
            settings,
            shutdown: Some(tx),
            server: Some(server),
            gateway,
            database: Some(database),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and the
    /// JSON answer (`Value::Null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(token), None).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Makes `a` and `b` friends: `a` asks by username, `b` accepts.
    pub async fn befriend(&self, a: &TestUser, b: &TestUser) {
        let (status, body) = self
            .post(
                "/api/friends/requests",
                Some(&a.token),
                &serde_json::json!({"username": b.user.username}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "request: {body}");
        let (status, body) = self
            .post(
                &format!("/api/friends/requests/{}/accept", a.user.user_id),
                Some(&b.token),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "accept: {body}");
    }

    /// Creates a group owned by `owner`; returns its id.
    pub async fn create_group(&self, owner: &TestUser, name: &str) -> i64 {
        let (status, body) = self
            .post(
                "/api/groups",
                Some(&owner.token),
                &serde_json::json!({ "name": name }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create group: {body}");
        body["group"]["group_id"].as_i64().expect("group_id")
    }

    /// Befriends and adds each of `members` to a new group of `owner`.
    pub async fn group_with(&self, owner: &TestUser, members: &[&TestUser]) -> i64 {
        let group_id = self.create_group(owner, "team").await;
        for m in members {
            self.befriend(owner, m).await;
            self.add_member(owner, group_id, m).await;
        }
        group_id
    }

    pub async fn add_member(&self, admin: &TestUser, group_id: i64, user: &TestUser) {
        let (status, body) = self
            .post(
                &format!("/api/groups/{group_id}/members"),
                Some(&admin.token),
                &serde_json::json!({"user_id": user.user.user_id}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "add member: {body}");
    }

    /// Gets or creates the DM of `a` with `b` (who must be friends); returns its id.
    pub async fn dm(&self, a: &TestUser, b: &TestUser) -> i64 {
        let (status, body) = self
            .post(
                "/api/dms",
                Some(&a.token),
                &serde_json::json!({"user_id": b.user.user_id}),
            )
            .await;
        assert!(status.is_success(), "dm: {status} {body}");
        body["group"]["group_id"].as_i64().expect("group_id")
    }

    /// Sends `content` to a group; returns the stored message.
    /// POST /api/groups/{group_id}/messages with any body, as `user`.
    pub async fn send_raw(
        &self,
        user: &TestUser,
        group_id: i64,
        body: Value,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/api/groups/{group_id}/messages"),
            Some(&user.token),
            &body,
        )
        .await
    }

    pub async fn send(&self, user: &TestUser, group_id: i64, content: &str) -> Message {
        let (status, body) = self
            .post(
                &format!("/api/groups/{group_id}/messages"),
                Some(&user.token),
                &serde_json::json!({ "content": content }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "send: {body}");
        parse(body)
    }

    pub async fn register_raw(
        &self,
        username: &str,
        email: &str,
        password: &str,
    ) -> (StatusCode, Value) {
        let body = serde_json::json!({"username": username, "email": email, "password": password});
        self.post("/api/auth/register", None, &body).await
    }

    pub async fn register(&self, username: &str) -> User {
        let (status, body) = self
            .register_raw(username, &format!("{username}@example.org"), PASSWORD)
            .await;
        assert_eq!(status, StatusCode::CREATED, "register {username}: {body}");
        parse(body)
    }

    pub async fn login_raw(&self, login: &str, password: &str) -> (StatusCode, Value) {
        let body = serde_json::json!({"login": login, "password": password, "device_info": "test"});
        self.post("/api/auth/login", None, &body).await
    }

    pub async fn login(&self, login: &str) -> LoginResponse {
        let (status, body) = self.login_raw(login, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "login {login}: {body}");
        parse(body)
    }

    /// Registers and logs in each of `names`, in order.
    pub async fn users<const N: usize>(&self, names: [&str; N]) -> [TestUser; N] {
        let mut users = Vec::with_capacity(N);
        for name in names {
            users.push(self.user(name).await);
        }
        match users.try_into() {
            Ok(users) => users,
            Err(_) => unreachable!("exactly N users were pushed"),
        }
    }

    /// Registers `username` and logs in: the usual first step of a test.
    pub async fn user(&self, username: &str) -> TestUser {
        let user = self.register(username).await;
        let login = self.login(username).await;
        TestUser {
            user,
            token: login.token,
        }
    }

    /// A REST client of the SDK for this server, logged in with `token`.
    pub fn client(&self, token: &str) -> sohbet_client::Client {
        sohbet_client::Client::new(self.base.clone())
            .expect("client")
            .with_token(token)
    }

    /// Connects `token` to this instance's gateway with the SDK.
    pub fn gateway(&self, token: &str) -> Gateway {
        gateway_at(&self.base, token)
    }

    /// Joins `group_id`'s call over `gw` with a microphone playing a `freq` Hz tone.
    pub async fn join_call(
        &self,
        token: &str,
        gw: &Gateway,
        group_id: i64,
        freq: f32,
    ) -> Result<calls::InCall, sohbet_client::ClientError> {
        let (options, recording) = calls::tone_options(freq);
        let (handle, events) = self
            .client(token)
            .join_call(&gw.handle, group_id, options)
            .await?;
        Ok(calls::InCall {
            handle,
            events,
            recording,
            history: Vec::new(),
        })
    }

    /// Connects `token` to the gateway and waits for its ready payload.
    pub async fn online(&self, token: &str) -> Gateway {
        let mut gw = self.gateway(token);
        gw.ready().await;
        gw
    }

    /// The Redis key the server uses for `suffix` (e.g. `session:{token}`).
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    pub async fn redis_cmd<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        cmd.query_async(&mut self.redis.clone())
            .await
            .expect("redis command")
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let url = self.settings.redis_url.expose().to_owned();
        // A test's own Redis Cluster goes away with the test, keys and all.
        if url.starts_with(sohbet_server::redis_conn::CLUSTER_SCHEME) {
            return;
        }
        let pattern = format!("{}*", self.prefix);
        let cleanup = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(url) else {
                return;
            };
            let Ok(mut conn) = client.get_connection() else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        });
        let _ = cleanup.join();
    }
}

/// Connects `token` with the SDK to the gateway of the server at `base` (e.g. a server
/// process of a test's own), reconnecting quickly as tests want.
pub fn gateway_at(base: &str, token: &str) -> Gateway {
    gateway_of(
        &sohbet_client::Client::new(base.to_owned())
            .expect("client")
            .with_token(token),
    )
}

/// Connects the session of `client` (logged in) to its server's gateway, trusting what the
/// client trusts, reconnecting quickly as tests want.
pub fn gateway_of(client: &sohbet_client::Client) -> Gateway {
    let options = sohbet_client::gateway::GatewayOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(500),
        buffer: 100_000,
        tls: client.tls().clone(),
    };
    let (handle, events) = sohbet_client::gateway::connect(
        client.gateway_url(),
        client.token().expect("a logged-in client").to_owned(),
        options,
    );
    Gateway { handle, events }
}

/// Registers `name` through the SDK client `anon` and logs in: the client of the session.
pub async fn sdk_sign_up(anon: &sohbet_client::Client, name: &str) -> sohbet_client::Client {
    use protocol::auth::{LoginRequest, RegisterRequest};
    let password = "a long enough password".to_owned();
    anon.register(&RegisterRequest {
        username: name.into(),
        email: format!("{name}@example.org"),
        password: password.clone(),
        display_name: None,
    })
    .await
    .expect("register");
    let (client, _) = anon
        .login(&LoginRequest {
            login: name.into(),
            password,
            device_info: Some("sdk test".into()),
        })
        .await
        .expect("login");
    client
}

/// A gateway connection of the SDK, with helpers to wait for what it receives.
pub struct Gateway {
    pub handle: sohbet_client::gateway::GatewayHandle,
    pub events: tokio::sync::mpsc::Receiver<GatewayEvent>,
}

pub use sohbet_client::gateway::GatewayEvent;

/// How long a test waits for something that should arrive within milliseconds.
pub const EVENT_WAIT: Duration = Duration::from_secs(10);

impl Gateway {
    /// The next item matching `pred`, skipping others; panics after [`EVENT_WAIT`].
    pub async fn expect<T>(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&GatewayEvent) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => {
                    if let Some(v) = pred(&ev) {
                        return v;
                    }
                }
                Ok(None) => panic!("gateway stream ended while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Waits for the answer to the frame sent with `reference`: what `pred` takes from it,
    /// or the code of the server's refusal.
    pub async fn answer<T>(
        &mut self,
        reference: u64,
        mut pred: impl FnMut(&GatewayEvent) -> Option<T>,
    ) -> Result<T, String> {
        self.expect("an answer", |e| match e {
            GatewayEvent::Refused {
                code,
                reference: Some(r),
                ..
            } if *r == reference => Some(Err(code.clone())),
            other => pred(other).map(Ok),
        })
        .await
    }

    /// Waits for the refusal of the frame sent with `reference`; returns its code.
    pub async fn refusal(&mut self, reference: u64) -> String {
        self.answer(reference, |_| None::<()>)
            .await
            .expect_err("only a refusal answers this")
    }

    /// Everything already received, without waiting.
    pub fn drain(&mut self) -> Vec<GatewayEvent> {
        let mut out = Vec::new();
        while let Ok(ev) = self.events.try_recv() {
            out.push(ev);
        }
        out
    }

    /// Waits for the ready payload.
    pub async fn ready(&mut self) -> GatewayEvent {
        self.expect("ready", |e| {
            matches!(e, GatewayEvent::Ready { .. }).then(|| e.clone())
        })
        .await
    }

    /// Everything that arrives within `window`.
    pub async fn collect_for(&mut self, window: Duration) -> Vec<GatewayEvent> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            out.push(ev);
        }
        out
    }
}

/// Matches a presence update saying `user_id` is now `presence`.
pub fn presence_of(
    user_id: i64,
    presence: protocol::gateway::Presence,
) -> impl FnMut(&GatewayEvent) -> Option<()> {
    move |e| match e {
        GatewayEvent::Event(protocol::gateway::Event::PresenceUpdated {
            user_id: u,
            presence: p,
            ..
        }) if *u == user_id && *p == presence => Some(()),
        _ => None,
    }
}

/// Appends `count` messages from `sender` to a group in one statement (far faster than the
/// API), continuing its sequence, as a long history for tests and benchmarks.
pub async fn seed_messages(db: &PgPool, group_id: i64, sender: i64, count: i64) {
    sqlx::query(
        "with g as (
             update chat_groups set last_seq = last_seq + $3, last_message_at = now()
              where group_id = $1 returning last_seq - $3 as first)
         insert into messages (group_id, sender_id, content, seq)
         select $1, $2, 'seeded message ' || n, g.first + n
           from g, generate_series(1::bigint, $3) n",
    )
    .bind(group_id)
    .bind(sender)
    .bind(count)
    .execute(db)
    .await
    .expect("seed messages");
}

pub struct TestUser {
    pub user: User,
    pub token: String,
}

pub fn parse<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("unexpected body {v}: {e}"))
}

pub fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serializable")
}

/// The `code` of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}
