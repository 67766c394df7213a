//! `sohbet-bench gateway`: messages fanned out over the gateway under load.
//!
//! The server runs as its own process (the release `sohbet-server` next to this binary) so
//! its CPU time and resident memory are its own. Users and sessions are written straight
//! into PostgreSQL and Redis (argon2 would otherwise dominate setting up thousands of
//! clients); everything measured goes through the real REST API and gateway.
//!
//! Figures: for groups of 2, 20 and 100 members, senders at fixed offered rates and at the
//! highest rate they can reach, the latency from just before the REST send to the
//! `message_created` frame at each member (p50/p95/p99), the REST acknowledgement latency,
//! server CPU and RSS; then the highest offered rate whose p99 stays under 50 ms, and the
//! resident memory per idle connection with 10,000 idle connections.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use protocol::gateway::{ClientFrame, Event, ServerFrame, GATEWAY_VERSION};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message;

use super::{print_table, Samples};
use crate::TestDatabase;
use sohbet_server::redis_conn::RedisConn;

/// How long each load step runs; long enough for a few thousand samples at modest rates.
const STEP: Duration = Duration::from_secs(4);
/// Latency target from the issue.
const TARGET_P99_MS: f64 = 50.0;
/// Idle connections for the per-connection memory figure.
const IDLE_CONNECTIONS: usize = 10_000;

pub(super) struct Server {
    child: Child,
    pub(super) base: String,
    pub(super) pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.with_file_name("sohbet-server")
}

/// CPU seconds used so far by every process named `name` (e.g. all PostgreSQL backends).
fn cpu_of_all(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(|pid| cpu_and_rss(pid).0)
        .sum()
}

/// CPU seconds so far of the parts sharing the machine: the server instances together,
/// PostgreSQL, Redis, and this load generator.
fn cpu_split(servers: &[&Server]) -> [f64; 4] {
    [
        servers.iter().map(|s| cpu_and_rss(s.pid).0).sum(),
        cpu_of_all("postgres"),
        cpu_of_all("redis-server"),
        cpu_and_rss(std::process::id()).0,
    ]
}

/// (utime + stime in seconds, RSS in KiB) of a process, from /proc.
pub(super) fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    let hz = 100.0;
    let cpu = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

/// Starts a server on `db` and the Redis (or Redis Cluster) of `redis_url`.
pub(super) async fn start_server(db: &TestDatabase, prefix: &str, redis_url: &str) -> Server {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let child = Command::new(server_binary())
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url)
        .env("SOHBET_LISTEN", format!("127.0.0.1:{port}"))
        .env("SOHBET_REDIS_PREFIX", prefix)
        .env("SOHBET_DB_POOL", "32")
        // A load generator sends far faster than a person: no abuse limits on messages.
        .env("SOHBET_LIMIT_MESSAGES_BURST", "1000000000/1")
        .env("SOHBET_LIMIT_MESSAGES_SUSTAINED", "1000000000/1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e} (build it with --release)", server_binary()));
    let pid = child.id();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        pid,
    };
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let health = http.get(format!("{}/api/health", server.base)).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sohbet-server did not become healthy");
}

/// Creates `count` users with sessions directly in the stores; returns (user_id, token).
pub(super) async fn fabricate_users(
    db: &PgPool,
    redis_url: &str,
    prefix: &str,
    first: usize,
    count: usize,
) -> Vec<(i64, String)> {
    // Friend codes: the number in hex, each hex digit mapped to a distinct allowed letter.
    let ids: Vec<i64> = sqlx::query_scalar(
        "insert into users (username, email, password_hash, friend_code)
         select 'load' || n, 'load' || n || '@example.org', 'x',
                translate(lpad(to_hex(n), 8, '0'), '0123456789abcdef', '23456789ABCDEFGH')
           from generate_series($1::int, $1::int + $2::int - 1) n
         returning user_id",
    )
    .bind(first as i32)
    .bind(count as i32)
    .fetch_all(db)
    .await
    .expect("users");
    // One Redis or a Redis Cluster alike, through the server's own connection type.
    let conn = RedisConn::connect(redis_url).await.expect("redis");
    let mut out = Vec::with_capacity(count);
    for chunk in ids.chunks(500) {
        let mut cmds = Vec::with_capacity(chunk.len() * 2);
        for &id in chunk {
            let token = format!("{:064x}", rand::random::<u128>() ^ ((id as u128) << 64));
            let session = serde_json::json!({
                "user_id": id, "username": format!("load{id}"), "ip_address": "127.0.0.1",
                "device_info": "bench", "created_at": "2026-11-29T00:00:00Z"
            });
            let mut set = redis::cmd("SET");
            set.arg(format!("{prefix}session:{token}"))
                .arg(session.to_string())
                .arg("EX")
                .arg(7200);
            let mut index = redis::cmd("HSET");
            index
                .arg(format!("{prefix}user_sessions:{id}"))
                .arg(format!("s{id}"))
                .arg(&token);
            cmds.extend([set, index]);
            out.push((id, token));
        }
        let _: Vec<redis::Value> = conn.query_each(cmds).await.expect("sessions");
    }
    out
}

/// A group with the given members (first is owner), straight into the tables.
pub(super) async fn fabricate_group(db: &PgPool, members: &[i64]) -> i64 {
    let group_id: i64 =
        sqlx::query_scalar("insert into chat_groups (name) values ('load') returning group_id")
            .fetch_one(db)
            .await
            .expect("group");
    sqlx::query(
        "insert into group_members (group_id, user_id, role)
         select $1, u, case when ord = 1 then 'owner' else 'member' end
           from unnest($2::bigint[]) with ordinality as t(u, ord)",
    )
    .bind(group_id)
    .bind(members)
    .execute(db)
    .await
    .expect("members");
    group_id
}

pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a gateway connection and waits for `resumed`.
pub(super) async fn connect(base: &str, token: &str) -> Socket {
    let url = format!("{}/api/gateway", base.replacen("http", "ws", 1));
    // Small client buffers too, or 10,000 clients in this process cost gigabytes.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
        .await
        .expect("ws connect");
    let identify = ClientFrame::Identify {
        token: token.to_owned(),
        version: GATEWAY_VERSION,
        resume: None,
    };
    let text = serde_json::to_string(&identify).expect("json");
    socket
        .send(Message::Text(text.into()))
        .await
        .expect("identify");
    while let Some(Ok(msg)) = socket.next().await {
        if let Message::Text(t) = msg {
            if t.contains("\"op\":\"resumed\"") {
                break;
            }
        }
    }
    socket
}

/// Shared clock: latencies are measured against one `Instant` origin in this process.
pub(super) struct Clock(pub(super) Instant);

impl Clock {
    fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// Reads a member's socket, recording the delivery latency of each message sent during the
/// step (its content carries the send time), and heartbeating.
pub(super) fn spawn_reader(
    mut socket: Socket,
    clock: Arc<Clock>,
    sink: Arc<Mutex<Samples>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let heartbeat = serde_json::to_string(&ClientFrame::Heartbeat).unwrap_or_default();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                msg = socket.next() => {
                    let Some(Ok(Message::Text(text))) = msg else {
                        if msg.is_none() { return; }
                        continue;
                    };
                    if let Ok(ServerFrame::Event { event: Event::MessageCreated { message } }) = serde_json::from_str(&text) {
                        if let Some(sent_us) = message.content.strip_prefix("t=").and_then(|t| t.parse::<u64>().ok()) {
                            let latency = Duration::from_micros(clock.now_us().saturating_sub(sent_us));
                            if let Ok(mut s) = sink.lock() { s.push(latency); }
                        }
                    }
                }
                _ = tick.tick() => {
                    if socket.send(Message::Text(heartbeat.clone().into())).await.is_err() { return; }
                }
            }
        }
    })
}

pub(super) struct StepResult {
    pub(super) offered: String,
    pub(super) achieved: f64,
    pub(super) ack: Samples,
    pub(super) delivery: Samples,
    pub(super) expected_deliveries: usize,
    /// CPU % of the server instances together, PostgreSQL, Redis and load generator over
    /// the step.
    pub(super) cpu_pct: [f64; 4],
    /// Resident memory of the server instances together.
    pub(super) rss_mib: f64,
}

/// Sends for one step: at `rate` messages/s in total (None = as fast as `senders` can);
/// sender `i` sends through `servers[i % servers.len()]`.
pub(super) async fn run_step(
    servers: &[&Server],
    group_id: i64,
    senders: &[(i64, String)],
    rate: Option<f64>,
    clock: Arc<Clock>,
    deliveries: Arc<Mutex<Samples>>,
    members: usize,
) -> StepResult {
    if let Ok(mut d) = deliveries.lock() {
        *d = Samples::default();
    }
    let cpu0 = cpu_split(servers);
    let started = Instant::now();
    let deadline = started + STEP;
    let per_sender_interval = rate.map(|r| Duration::from_secs_f64(senders.len() as f64 / r));
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, (_, token))| {
            let server = servers[i % servers.len()];
            let url = format!("{}/api/groups/{group_id}/messages", server.base);
            let token = token.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let send = move |http: reqwest::Client, url: String, token: String, clock: Arc<Clock>| async move {
                    let t0 = Instant::now();
                    let body = serde_json::json!({"content": format!("t={}", clock.now_us())});
                    match http.post(&url).bearer_auth(&token).json(&body).send().await {
                        Ok(r) if r.status().is_success() => Some(t0.elapsed()),
                        _ => None,
                    }
                };
                let mut ack = Samples::default();
                let Some(interval) = per_sender_interval else {
                    // As fast as one sender can: one request at a time (closed loop).
                    while Instant::now() < deadline {
                        if let Some(d) = send(http.clone(), url.clone(), token.clone(), clock.clone()).await {
                            ack.push(d);
                        }
                    }
                    return ack;
                };
                // At a fixed rate: each send starts on time whether or not the previous one
                // was answered (open loop), as independent users would, so a slow server
                // shows as latency instead of silently lowering the offered rate.
                let mut next = Instant::now() + interval.mul_f64(i as f64 / 16.0);
                let mut in_flight = futures::stream::FuturesUnordered::new();
                while next < deadline {
                    tokio::select! {
                        _ = tokio::time::sleep_until(next.into()) => {
                            next += interval;
                            in_flight.push(send(http.clone(), url.clone(), token.clone(), clock.clone()));
                        }
                        Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                            if let Some(d) = done { ack.push(d); }
                        }
                    }
                }
                while let Some(done) = in_flight.next().await {
                    if let Some(d) = done {
                        ack.push(d);
                    }
                }
                ack
            })
        })
        .collect();
    let mut ack = Samples::default();
    for t in tasks {
        if let Ok(a) = t.await {
            ack.extend(a);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last deliveries land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu1 = cpu_split(servers);
    let rss: u64 = servers.iter().map(|s| cpu_and_rss(s.pid).1).sum();
    let delivery = deliveries
        .lock()
        .map(|mut d| std::mem::take(&mut *d))
        .unwrap_or_default();
    let sent = ack.len();
    StepResult {
        offered: rate.map_or("max".into(), |r| format!("{r:.0}")),
        achieved: sent as f64 / elapsed,
        ack,
        delivery,
        expected_deliveries: sent * members,
        cpu_pct: std::array::from_fn(|i| (cpu1[i] - cpu0[i]) / (elapsed + 0.5) * 100.0),
        rss_mib: rss as f64 / 1024.0,
    }
}

/// A database of its own, the server running on it, and a pool for seeding.
pub(super) struct Bench {
    /// Dropped (with the database) when the benchmark ends.
    pub(super) db: TestDatabase,
    pub(super) prefix: String,
    pub(super) server: Server,
    pub(super) pool: PgPool,
    pub(super) redis_url: String,
}

impl Bench {
    pub(super) async fn start() -> Self {
        let db = TestDatabase::create().await;
        let prefix = format!("bench:{}:", db.name);
        let redis_url = std::env::var("REDIS_URL").expect("REDIS_URL");
        let server = start_server(&db, &prefix, &redis_url).await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&db.url)
            .await
            .expect("pool");
        Self {
            db,
            prefix,
            server,
            pool,
            redis_url,
        }
    }
}

pub async fn run() {
    let Bench {
        db: _db,
        prefix,
        server,
        pool,
        redis_url,
    } = Bench::start().await;
    let users = fabricate_users(&pool, &redis_url, &prefix, 0, 300).await;
    let clock = Arc::new(Clock(Instant::now()));

    let mut rows = Vec::new();
    let mut best: Vec<Vec<String>> = Vec::new();
    let mut offset = 0;
    for (size, rates) in [
        (2usize, vec![100.0, 500.0, 1000.0, 2000.0]),
        (
            20,
            vec![100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0],
        ),
        (100, vec![20.0, 50.0, 100.0, 200.0]),
    ] {
        let members = &users[offset..offset + size];
        offset += size;
        let ids: Vec<i64> = members.iter().map(|(id, _)| *id).collect();
        let group_id = fabricate_group(&pool, &ids).await;
        let deliveries = Arc::new(Mutex::new(Samples::default()));
        let mut readers = Vec::new();
        for (_, token) in members {
            let socket = connect(&server.base, token).await;
            readers.push(spawn_reader(socket, clock.clone(), deliveries.clone()));
        }
        // Up to 8 members send (both members of a DM).
        let senders: Vec<(i64, String)> = members.iter().take(8).cloned().collect();
        let mut best_rate: Option<f64> = None;
        let steps: Vec<Option<f64>> = rates.iter().copied().map(Some).chain([None]).collect();
        for rate in steps {
            let mut r = run_step(
                &[&server],
                group_id,
                &senders,
                rate,
                clock.clone(),
                deliveries.clone(),
                size,
            )
            .await;
            let p99 = r.delivery.percentile_ms(99.0);
            if rate.is_some()
                && p99 < TARGET_P99_MS
                && r.delivery.len() * 100 >= r.expected_deliveries * 99
            {
                best_rate = Some(r.achieved);
            }
            rows.push(vec![
                size.to_string(),
                r.offered.clone(),
                format!("{:.0}", r.achieved),
                format!("{:.0}", r.achieved * size as f64),
                format!("{}/{}", r.delivery.len(), r.expected_deliveries),
                format!("{:.1}", r.ack.percentile_ms(50.0)),
                format!("{:.1}", r.ack.percentile_ms(99.0)),
                format!("{:.1}", r.delivery.percentile_ms(50.0)),
                format!("{:.1}", r.delivery.percentile_ms(95.0)),
                format!("{:.1}", p99),
                r.cpu_pct
                    .iter()
                    .map(|c| format!("{c:.0}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                format!("{:.0}", r.rss_mib),
            ]);
        }
        best.push(vec![
            size.to_string(),
            best_rate.map_or("none of the steps".into(), |r| {
                format!("{r:.0} msg/s ({:.0} deliveries/s)", r * size as f64)
            }),
        ]);
        for r in readers {
            r.abort();
        }
    }
    print_table(
        "Gateway fan-out: REST send → message_created at every member (server in its own process)",
        &[
            "members",
            "offered msg/s",
            "achieved msg/s",
            "deliveries/s",
            "delivered",
            "ack p50 ms",
            "ack p99 ms",
            "delivery p50 ms",
            "p95 ms",
            "p99 ms",
            "CPU % server / postgres / redis / load gen",
            "server RSS MiB",
        ],
        &rows,
    );
    print_table(
        "Highest offered rate with delivery p99 under 50 ms (and ≥ 99% delivered within the step)",
        &["members", "rate"],
        &best,
    );
}

/// How many users register and log in at once before the idle measurement: each costs the
/// server one argon2 hash and one verification of 19 MiB.
const LOGIN_BURST: usize = 20;

/// Registers and logs in `n` users at once through the API, as a crowd arriving would.
async fn login_burst(base: &str, n: usize) {
    let http = reqwest::Client::new();
    futures::future::join_all((0..n).map(|i| {
        let http = http.clone();
        async move {
            let name = format!("burst{i}");
            let password = "a long enough password";
            let registered = http
                .post(format!("{base}/api/auth/register"))
                .json(&serde_json::json!({
                    "username": name, "email": format!("{name}@example.org"), "password": password
                }))
                .send()
                .await
                .expect("register");
            assert!(registered.status().is_success(), "{}", registered.status());
            let login = http
                .post(format!("{base}/api/auth/login"))
                .json(&serde_json::json!({"login": name, "password": password}))
                .send()
                .await
                .expect("login");
            assert!(login.status().is_success(), "{}", login.status());
        }
    }))
    .await;
}

/// `sohbet-bench idle`: resident memory after a burst of logins, and per idle gateway
/// connection with 10,000 of them.
pub async fn idle() {
    let Bench {
        db: _db,
        prefix,
        server,
        pool,
        redis_url,
    } = Bench::start().await;
    let clock = Arc::new(Clock(Instant::now()));
    // Memory kept after a login burst: argon2's 19 MiB per hash must not stay resident.
    let (_, rss_start) = cpu_and_rss(server.pid);
    login_burst(&server.base, LOGIN_BURST).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, rss_after_logins) = cpu_and_rss(server.pid);
    print_table(
        "Login burst",
        &[
            "registrations and logins",
            "server RSS at start MiB",
            "2 s after MiB",
        ],
        &[vec![
            LOGIN_BURST.to_string(),
            format!("{:.0}", rss_start as f64 / 1024.0),
            format!("{:.0}", rss_after_logins as f64 / 1024.0),
        ]],
    );
    // Memory per idle connection.
    let (_, rss_before) = cpu_and_rss(server.pid);
    // Ten connections a user, as ten devices would.
    let idle_users = fabricate_users(&pool, &redis_url, &prefix, 0, IDLE_CONNECTIONS / 10).await;
    let started = Instant::now();
    // Connect 64 at a time, as a crowd reconnecting after a restart would.
    let sockets: Vec<_> = futures::stream::iter(0..IDLE_CONNECTIONS)
        .map(|i| {
            let (_, token) = &idle_users[i % idle_users.len()];
            connect(&server.base, token)
        })
        .buffer_unordered(64)
        .map(|socket| {
            spawn_reader(
                socket,
                clock.clone(),
                Arc::new(Mutex::new(Samples::default())),
            )
        })
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, rss_after) = cpu_and_rss(server.pid);
    print_table(
        "Idle connections",
        &[
            "connections",
            "connect time s",
            "server RSS before MiB",
            "after MiB",
            "KiB per connection",
        ],
        &[vec![
            IDLE_CONNECTIONS.to_string(),
            format!("{connect_secs:.1}"),
            format!("{:.0}", rss_before as f64 / 1024.0),
            format!("{:.0}", rss_after as f64 / 1024.0),
            format!(
                "{:.1}",
                (rss_after.saturating_sub(rss_before)) as f64 / IDLE_CONNECTIONS as f64
            ),
        ]],
    );
    for s in sockets {
        s.abort();
    }
}
