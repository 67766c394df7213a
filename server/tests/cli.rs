//! The `sohbet-server` binary as an operator runs it: settings from a file, the environment
//! and flags; the subcommands; bad input. Each test that needs PostgreSQL gets a database of
//! its own from `#[sqlx::test]` (created on `DATABASE_URL`'s server, dropped afterwards).

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sqlx::{ConnectOptions, PgPool};
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};

const BIN: &str = env!("CARGO_BIN_EXE_sohbet-server");
const PASSWORD: &str = "correct horse battery";

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL: run the tests with `cargo xtask test`")
}

/// The URL of the test's own database.
fn url_of(pool: &PgPool) -> String {
    pool.connect_options().to_url_lossy().to_string()
}

/// The binary with an empty environment (so the tests' own DATABASE_URL / REDIS_URL never
/// leak in) plus `env`.
fn sohbet(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(args).envs(env.iter().copied());
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    sohbet(args, env).output().expect("run sohbet-server")
}

fn run_with_stdin(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = sohbet(args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sohbet-server");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run failed as a usage or configuration error (status 2) saying `says`.
fn refused(out: &Output, says: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    assert!(stderr(out).contains(says), "{}", stderr(out));
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("sohbet.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sohbet-cli-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn rand_suffix() -> String {
    let mut buf = [0u8; 6];
    getrandom::fill(&mut buf).expect("random");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `check-config` prints the effective settings as TOML; this reads one.
fn effective(out: &Output, name: &str) -> String {
    let table: toml::Table = toml::from_str(&stdout(out)).expect("check-config prints TOML");
    match table.get(name) {
        Some(toml::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => panic!("no {name} in {table}"),
    }
}

const STORES: &str =
    "database_url = \"postgres://nobody@127.0.0.1:1/x\"\nredis_url = \"redis://127.0.0.1:1/\"\n";

#[test]
fn file_then_environment_then_flags_take_precedence() {
    let dir = temp_dir();
    let config = write_config(
        &dir,
        &format!("{STORES}session_ttl_secs = 111\nreplay_limit = 222\nmax_group_size = 333\n"),
    );
    let config = config.to_str().expect("utf-8 path");
    let out = run(
        &["check-config", "--config", config, "--max-group-size", "3"],
        &[
            ("SOHBET_REPLAY_LIMIT", "22"),
            ("SOHBET_MAX_GROUP_SIZE", "33"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(effective(&out, "session_ttl_secs"), "111", "from the file");
    assert_eq!(effective(&out, "replay_limit"), "22", "env beats the file");
    assert_eq!(
        effective(&out, "max_group_size"),
        "3",
        "a flag beats env and file"
    );
    assert_eq!(effective(&out, "login_window_secs"), "300", "the default");
}

#[test]
fn the_config_file_can_come_from_the_environment_and_settings_follow_the_subcommand() {
    let dir = temp_dir();
    let config = write_config(&dir, &format!("{STORES}voice_grace_ms = 1234\n"));
    let out = run(
        &["check-config", "--turn-ttl-secs", "60"],
        &[("SOHBET_CONFIG", config.to_str().expect("utf-8 path"))],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(effective(&out, "voice_grace_ms"), "1234");
    assert_eq!(effective(&out, "turn_ttl_secs"), "60");
}

#[test]
fn an_unknown_key_is_refused_by_name() {
    let dir = temp_dir();
    let config = write_config(&dir, &format!("{STORES}sesion_ttl_secs = 5\n"));
    let out = run(
        &["check-config", "--config", config.to_str().expect("path")],
        &[],
    );
    refused(&out, "unknown setting `sesion_ttl_secs`");
}

#[test]
fn an_invalid_value_is_refused_by_key() {
    let dir = temp_dir();
    for (line, key) in [
        ("session_ttl_secs = \"soon\"", "session_ttl_secs"),
        ("listen = \"nowhere\"", "listen"),
        ("max_group_size = [1, 2]", "max_group_size"),
        ("log_format = \"xml\"", "log_format"),
        ("stun_urls = [[\"a\"]]", "stun_urls"),
    ] {
        let config = write_config(&dir, &format!("{STORES}{line}\n"));
        let out = run(
            &["check-config", "--config", config.to_str().expect("path")],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{line}");
        assert!(
            stderr(&out).contains(&format!("invalid value for `{key}`")),
            "{line}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn broken_toml_a_missing_file_and_missing_stores_are_clear_errors() {
    let dir = temp_dir();
    let config = write_config(&dir, "listen = \n");
    let out = run(
        &["check-config", "--config", config.to_str().expect("path")],
        &[],
    );
    refused(&out, "is not valid TOML");

    let out = run(
        &["check-config", "--config", "/nonexistent/sohbet.toml"],
        &[],
    );
    refused(&out, "cannot read the config file");

    let out = run(&["check-config", "--redis-url", "redis://x/"], &[]);
    refused(&out, "missing setting `database_url`");
    refused(&out, "the environment variable DATABASE_URL");
}

#[test]
fn a_redis_cluster_url_is_checked_and_a_bad_one_refused_without_its_password() {
    let pg = ["--database-url", "postgres://sohbet@127.0.0.1/sohbet"];
    let good = "redis+cluster://:hunter2@10.0.0.1:6379,10.0.0.2:6379";
    let out = run(
        &[&pg[..], &["--redis-url", good, "check-config"]].concat(),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for (bad, says) in [
        (
            "redis+cluster://:hunter2@10.0.0.1:6379/3",
            "takes no database",
        ),
        ("redis+cluster://:hunter2@", "lists host:port"),
        (
            "redis+cluster://:hunter2@h1:6379,,h2:6379",
            "lists host:port",
        ),
        ("redis+cluster://:hunter2@h1:port", "lists host:port"),
    ] {
        let out = run(
            &[&pg[..], &["--redis-url", bad, "check-config"]].concat(),
            &[],
        );
        assert!(!out.status.success(), "{bad} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains("redis_url") && err.contains(says),
            "{bad}: {err}"
        );
        assert!(
            !err.contains("hunter2"),
            "{bad}: the password was printed: {err}"
        );
    }
}

#[test]
fn bad_arguments_fail_with_usage_errors() {
    for args in [
        vec!["frobnicate"],
        vec!["--no-such-flag"],
        vec!["user"],
        vec!["user", "disable"],
        vec!["--listen", "nowhere", "check-config"],
    ] {
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        // A usage error, or the subcommand's help when a subcommand is missing.
        let said = stderr(&out);
        assert!(
            said.contains("error:") || said.contains("Usage:"),
            "{args:?}: {said}"
        );
    }
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    for command in ["serve", "migrate", "check-config", "user"] {
        assert!(stdout(&out).contains(command), "help lists {command}");
    }
}

#[test]
fn secrets_come_from_files_and_never_print() {
    let dir = temp_dir();
    let secret = dir.join("turn-secret");
    std::fs::write(&secret, "s3cr3t-from-file\n").expect("write secret");
    let config = write_config(
        &dir,
        &format!("{STORES}turn_secret_file = \"{}\"\n", secret.display()),
    );
    let out = run(
        &["check-config", "--config", config.to_str().expect("path")],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(effective(&out, "turn_secret"), "***");
    assert_eq!(effective(&out, "database_url"), "***");
    assert!(!stdout(&out).contains("s3cr3t"));

    let out = run(
        &["check-config", "--config", config.to_str().expect("path")],
        &[("SOHBET_TURN_SECRET", "other")],
    );
    refused(&out, "`turn_secret` or `turn_secret_file`, not both");

    let out = run(
        &[
            "check-config",
            "--database-password-file",
            "/nonexistent/pw",
        ],
        &[
            ("DATABASE_URL", "postgres://a@b/c"),
            ("REDIS_URL", "redis://x/"),
        ],
    );
    refused(
        &out,
        "cannot read `database_password_file` from /nonexistent/pw",
    );
}

#[test]
fn the_example_file_lists_every_setting_with_its_default_and_loads() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sohbet.example.toml");
    let text = std::fs::read_to_string(example).expect("example file");
    let table: toml::Table = toml::from_str(&text).expect("example parses");
    let cmd = sohbet_server::cli::Cli::command_with_globals();
    for arg in sohbet_server::config::file::settings(&cmd) {
        let key = arg.get_id().as_str();
        let commented = text.lines().any(|l| l.starts_with(&format!("# {key} = ")));
        let value = table.get(key);
        assert!(
            value.is_some() || commented,
            "the example does not list `{key}`"
        );
        assert!(
            arg.get_env().is_some(),
            "`{key}` has no environment variable"
        );
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        if let (Some(value), false) = (value, defaults.is_empty()) {
            let shown = match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(
                vec![shown],
                defaults,
                "`{key}` in the example is not its default"
            );
        }
        let documented = text
            .lines()
            .take_while(|l| {
                !l.starts_with(&format!("{key} =")) && !l.starts_with(&format!("# {key} ="))
            })
            .last()
            .is_some_and(|l| l.starts_with('#'));
        assert!(documented, "`{key}` has no comment above it");
    }
    let out = run(&["check-config", "--config", example], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[sqlx::test(migrations = false)]
async fn migrate_applies_the_migrations_and_serve_can_skip_them(pool: PgPool) {
    let db = url_of(&pool);
    let redis = redis_url();
    let env = [("DATABASE_URL", db.as_str()), ("REDIS_URL", redis.as_str())];
    let out = run(&["migrate"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&pool)
        .await
        .expect("migrations table");
    assert_eq!(applied as usize, sohbet_server::MIGRATOR.iter().count());
    // Again: nothing to do, still success.
    assert!(run(&["migrate"], &env).status.success());
}

#[sqlx::test(migrations = false)]
async fn serve_no_migrate_leaves_the_schema_alone(pool: PgPool) {
    let db = url_of(&pool);
    let redis = redis_url();
    let server = Server::start(&db, &redis, &["serve", "--no-migrate"]);
    drop(server);
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_name = '_sqlx_migrations'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(tables, 0);
}

#[sqlx::test(migrations = false)]
async fn user_commands_create_list_reset_and_refuse_bad_input(pool: PgPool) {
    let stores = Stores::new(&pool);
    let env = stores.env();
    assert!(run(&["migrate"], &env).status.success());

    let out = run_with_stdin(
        &["user", "create", "alice", "--email", "alice@example.org"],
        &env,
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Bad input: clear errors, non-zero, nothing written.
    for (args, stdin, says) in [
        (
            vec!["user", "create", "alice", "--email", "a2@example.org"],
            PASSWORD,
            "username is taken",
        ),
        (
            vec!["user", "create", "Bob!", "--email", "b@example.org"],
            PASSWORD,
            "username",
        ),
        (
            vec!["user", "create", "bob", "--email", "not-an-email"],
            PASSWORD,
            "email",
        ),
        (
            vec!["user", "create", "bob", "--email", "b@example.org"],
            "short",
            "password must be",
        ),
        (vec!["user", "disable", "nobody"], "", "user not found"),
        (
            vec!["user", "reset-password", "nobody"],
            PASSWORD,
            "user not found",
        ),
    ] {
        let out = run_with_stdin(&args, &env, &format!("{stdin}\n"));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }

    let out = run(&["user", "list"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    assert_eq!(listed.lines().count(), 2, "a header and alice: {listed}");
    assert!(
        listed.contains("alice")
            && listed.contains("alice@example.org")
            && listed.contains("active")
    );

    let server = stores.serve();
    let old = server.login("alice", PASSWORD).await;
    assert_eq!(old.0, 200);
    let token = old.1["token"].as_str().expect("token").to_owned();
    let out = run_with_stdin(
        &["user", "reset-password", "alice"],
        &env,
        "a brand new passphrase\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.login("alice", PASSWORD).await.0, 401);
    assert_eq!(server.login("alice", "a brand new passphrase").await.0, 200);
    assert_eq!(
        server.me(&token).await,
        401,
        "the reset ended the old session"
    );
}

#[sqlx::test(migrations = false)]
async fn a_disabled_user_is_signed_out_at_once_and_cannot_log_in(pool: PgPool) {
    let stores = Stores::new(&pool);
    let env = stores.env();
    let server = stores.serve();
    let out = run_with_stdin(
        &["user", "create", "carol", "--email", "carol@example.org"],
        &env,
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, body) = server.login("carol", PASSWORD).await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().expect("token").to_owned();
    let mut socket = server.gateway(&token).await;

    let out = run(&["user", "disable", "carol"], &env);
    assert!(out.status.success(), "{}", stderr(&out));

    let close = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = socket.next().await {
            if let Ok(Message::Close(Some(frame))) = frame {
                return Some(frame.code);
            }
        }
        None
    })
    .await
    .expect("the socket closes");
    assert_eq!(close, Some(CloseCode::Library(4004)));
    assert_eq!(server.me(&token).await, 401);
    let (status, body) = server.login("carol", PASSWORD).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "account_disabled");
    // A wrong password still says nothing about the account.
    assert_eq!(server.login("carol", "wrong password!").await.0, 401);
    let listed = stdout(&run(&["user", "list"], &env));
    assert!(
        listed
            .lines()
            .any(|l| l.contains("carol") && l.ends_with("disabled")),
        "{listed}"
    );

    assert!(run(&["user", "enable", "carol"], &env).status.success());
    assert_eq!(server.login("carol", PASSWORD).await.0, 200);
}

/// The test's own database, the shared Redis and a key prefix of its own.
struct Stores {
    db: String,
    redis: String,
    prefix: String,
}

impl Stores {
    fn new(pool: &PgPool) -> Self {
        Self {
            db: url_of(pool),
            redis: redis_url(),
            prefix: format!("test:cli:{}:", rand_suffix()),
        }
    }

    /// The binary's environment for these stores.
    fn env(&self) -> [(&str, &str); 3] {
        [
            ("DATABASE_URL", self.db.as_str()),
            ("REDIS_URL", self.redis.as_str()),
            ("SOHBET_REDIS_PREFIX", self.prefix.as_str()),
        ]
    }

    /// The server on these stores.
    fn serve(&self) -> Server {
        Server::start(&self.db, &self.redis, &["--redis-prefix", &self.prefix])
    }
}

/// The real binary serving on a free loopback port, stopped (SIGKILL) when dropped.
struct Server {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Server {
    fn start(db: &str, redis: &str, args: &[&str]) -> Self {
        let mut child = sohbet(
            args,
            &[
                ("DATABASE_URL", db),
                ("REDIS_URL", redis),
                ("SOHBET_LISTEN", "127.0.0.1:0"),
                ("SOHBET_LOG_FORMAT", "json"),
            ],
        )
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sohbet-server");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .expect("read stderr");
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["message"] == "serving" {
                break entry["addr"].as_str().expect("addr").to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Self {
            child,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn login(&self, login: &str, password: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
            .expect("login request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn me(&self, token: &str) -> u16 {
        self.http
            .get(format!("{}/api/users/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("me request")
            .status()
            .as_u16()
    }

    async fn gateway(
        &self,
        token: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let url = format!("{}/api/gateway", self.base.replacen("http", "ws", 1));
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("gateway");
        socket
            .send(Message::text(
                json!({"op": "identify", "token": token, "version": 1}).to_string(),
            ))
            .await
            .expect("identify");
        // Wait for `ready`, so the session is known to the gateway before it is ended.
        while let Some(frame) = socket.next().await {
            if let Ok(Message::Text(text)) = frame {
                if text.contains("\"ready\"") {
                    break;
                }
            }
        }
        socket
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
