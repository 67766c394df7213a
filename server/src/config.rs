//! Typed configuration from flags, environment variables and a TOML file ([`file`]).
//!
//! Every setting is a flag of [`Settings`] with an environment variable; the config file
//! uses the same names in snake case (`session_ttl_secs = 3600`). Precedence: the file <
//! the environment < flags; `cli` assembles them.

pub mod file;

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use sqlx::postgres::PgConnectOptions;

use crate::{rate_limit::Rate, tls::CertStore};

/// A value that never prints (connection strings can carry passwords).
#[derive(Clone)]
pub struct Secret(pub String);

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting. `Serialize` prints the effective ones (`check-config`), secrets as `***`.
#[derive(Debug, Clone, Parser, serde::Serialize)]
#[command(name = "sohbet-server", version, about = "Sohbet chat server")]
pub struct Settings {
    /// PostgreSQL connection string (required). Its password may instead come from
    /// `--database-password-file`.
    // Not `required` for clap: it may come from the config file, which clap does not see;
    // `file::require` reports it missing by name.
    #[arg(long, env = "DATABASE_URL", required = false)]
    pub database_url: Secret,

    /// A PostgreSQL connection string for read-only load that may go to a replica: history
    /// pages and the group, friend and block lists. Unset: everything goes to `database_url`.
    /// A replica lags its primary (see the README on what that means).
    #[arg(long, env = "SOHBET_DATABASE_READ_URL")]
    pub database_read_url: Option<Secret>,

    /// A file holding the PostgreSQL password (one line), used instead of any password in
    /// the database URLs, so the URLs can live in a world-readable config file.
    #[arg(long, env = "SOHBET_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,

    /// The password read from `database_password_file`.
    #[arg(skip)]
    #[serde(skip)]
    pub database_password: Option<Secret>,

    /// Log lines as human-readable text, or as one JSON object per line for a log
    /// collector.
    #[arg(long, env = "SOHBET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Serve `GET /metrics` (Prometheus) on this address instead of the main one, so it is
    /// not public (e.g. `127.0.0.1:9090`). Unset: on the main address.
    #[arg(long, env = "SOHBET_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// A proxy or load balancer in front of the server, as a CIDR (`10.0.0.0/8`,
    /// `127.0.0.1/32`); repeatable. Only a request from one of these has its
    /// `X-Forwarded-For` believed for the client's address (sessions, rate limits, logs).
    #[arg(
        long = "trusted-proxy",
        env = "SOHBET_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Redis connection string (required): `redis://[user:password@]host:port[/db]` for one
    /// Redis, or `redis+cluster://[user:password@]host:port[,host:port…]` for a Redis Cluster
    /// (Redis 7 or later; any of its nodes as seeds, the rest are discovered).
    #[arg(long, env = "REDIS_URL", required = false)]
    pub redis_url: Secret,

    /// Address to listen on.
    #[arg(long, env = "SOHBET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// A PEM file with the server's certificate chain, leaf first (e.g. Let's Encrypt's
    /// `fullchain.pem`): serve `https://` and `wss://` on the listen address. Needs
    /// `--tls-key`. SIGHUP reloads both files, so a renewed certificate needs no restart.
    #[arg(long, env = "SOHBET_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// A PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SOHBET_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// The certificate and key read from `tls_cert` / `tls_key`, reloadable.
    #[arg(skip)]
    #[serde(skip)]
    pub tls: Option<Arc<CertStore>>,

    /// Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    /// Empty by default, giving the seed's `session:{token}`. On a cluster, keep `{` and `}`
    /// out of it: a hash tag there would put every key in one slot.
    #[arg(long, env = "SOHBET_REDIS_PREFIX", default_value = "")]
    pub redis_prefix: String,

    /// Seconds a session lives without use; every authenticated request renews it.
    #[arg(long, env = "SOHBET_SESSION_TTL", default_value_t = 3600)]
    pub session_ttl_secs: u64,

    /// PostgreSQL pool size.
    #[arg(long, env = "SOHBET_DB_POOL", default_value_t = 16)]
    pub db_pool_size: u32,

    /// Milliseconds a request waits for a PostgreSQL connection before answering 503. While
    /// PostgreSQL is down every request waits this long (the pool keeps retrying to connect
    /// until then), so it is short: 2 s is hundreds of times a normal query, yet clients
    /// learn of an outage at once rather than after their own timeouts.
    #[arg(long, env = "SOHBET_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_acquire_timeout_ms: u64,

    /// PostgreSQL `statement_timeout` in milliseconds: no statement (or wait for a row or
    /// advisory lock) holds a pooled connection longer. Every query here is index-driven and
    /// takes milliseconds; 5 s bounds a request stuck behind a lock.
    #[arg(long, env = "SOHBET_DB_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_statement_timeout_ms: u64,

    /// Largest request body accepted, in bytes. Message bodies are at most 4000 characters,
    /// so 64 KiB leaves room without letting a client make the server buffer megabytes.
    #[arg(long, env = "SOHBET_MAX_BODY", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Login attempts allowed per client IP per window.
    #[arg(long, env = "SOHBET_LOGIN_IP_LIMIT", default_value_t = 30)]
    pub login_ip_limit: u64,

    /// Failed logins allowed per account from one client IP per window; that pair then waits.
    #[arg(long, env = "SOHBET_LOGIN_ACCOUNT_LIMIT", default_value_t = 10)]
    pub login_account_limit: u64,

    /// Length of the login rate-limit window, in seconds.
    #[arg(long, env = "SOHBET_LOGIN_WINDOW", default_value_t = 300)]
    pub login_window_secs: u64,

    /// Registrations allowed from one client IP, as COUNT/SECONDS. A household or office
    /// behind one address registers a handful a day; 30 an hour stops account farming.
    #[arg(long, env = "SOHBET_LIMIT_REGISTER", default_value_t = Rate::new(30, 3600))]
    pub limit_register: Rate,

    /// Friend requests one user may send, as COUNT/SECONDS: 50 an hour is a very social
    /// afternoon, and bounds spam by friend request.
    #[arg(long, env = "SOHBET_LIMIT_FRIEND_REQUESTS", default_value_t = Rate::new(50, 3600))]
    pub limit_friend_requests: Rate,

    /// Messages one user may send in a short window, as COUNT/SECONDS: 30 in 10 s is faster
    /// than anyone types, and stops a flood.
    #[arg(long, env = "SOHBET_LIMIT_MESSAGES_BURST", default_value_t = Rate::new(30, 10))]
    pub limit_messages_burst: Rate,

    /// Messages one user may send in a long window, as COUNT/SECONDS: one a second kept up for
    /// five minutes, past any conversation.
    #[arg(long, env = "SOHBET_LIMIT_MESSAGES_SUSTAINED", default_value_t = Rate::new(300, 300))]
    pub limit_messages_sustained: Rate,

    /// Typing frames one user may send, as COUNT/SECONDS. Clients repeat typing every ~3 s
    /// per group (20 a minute); 60 covers typing in three groups at once.
    #[arg(long, env = "SOHBET_LIMIT_TYPING", default_value_t = Rate::new(60, 60))]
    pub limit_typing: Rate,

    /// Voice joins one user may make, as COUNT/SECONDS: joining, leaving and rejoining a call
    /// takes seconds each; 20 a minute stops a join/leave storm ringing a group.
    #[arg(long, env = "SOHBET_LIMIT_VOICE_JOINS", default_value_t = Rate::new(20, 60))]
    pub limit_voice_joins: Rate,

    /// Voice signals one user may send, as COUNT/SECONDS. Joining an 8-person call sends an
    /// offer and ~10–20 trickled candidates to each of 7 peers (~150); 1000 a minute leaves
    /// room for several renegotiations.
    #[arg(long, env = "SOHBET_LIMIT_VOICE_SIGNALS", default_value_t = Rate::new(1000, 60))]
    pub limit_voice_signals: Rate,

    /// Groups one user may create, as COUNT/SECONDS.
    #[arg(long, env = "SOHBET_LIMIT_GROUPS", default_value_t = Rate::new(20, 3600))]
    pub limit_groups: Rate,

    /// Most frames one gateway connection may send per second, averaged over 10 s; past
    /// that it is closed with 4029. Heartbeats and typing are one every few seconds; joining
    /// an 8-person call sends ~150 signals at once, well inside 500 per 10 s.
    #[arg(long, env = "SOHBET_GATEWAY_FRAME_RATE", default_value_t = 50)]
    pub gateway_frame_rate: u32,

    /// Milliseconds between a gateway client's heartbeats; a connection silent for two
    /// intervals is closed, so a dead peer is noticed within ~10 s by default (each heartbeat
    /// costs one Redis round trip: 10,000 clients make 2,000 a second). Also the period at which an instance renews its connections'
    /// presence, which expires after three intervals if the instance dies.
    #[arg(long, env = "SOHBET_HEARTBEAT_MS", default_value_t = 5_000)]
    pub heartbeat_interval_ms: u64,

    /// Events queued for one gateway connection before it counts as too slow and is closed
    /// (resumably). 1024 events is minutes of a busy group for a healthy client, and bounds
    /// a stuck client's memory to ~1 MB.
    #[arg(long, env = "SOHBET_GATEWAY_QUEUE", default_value_t = 1024)]
    pub gateway_queue: usize,

    /// Most messages replayed per group on resume; a larger gap is answered with "resync
    /// over REST" for that group.
    #[arg(long, env = "SOHBET_REPLAY_LIMIT", default_value_t = 1000)]
    pub replay_limit: i64,

    /// Concurrent password hashes. Each argon2id hash holds 19 MiB and a core for tens of
    /// milliseconds; more than the core count only queues inside the OS instead of here.
    #[arg(long, env = "SOHBET_HASH_CONCURRENCY")]
    pub hash_concurrency: Option<usize>,

    /// Most members a group may have. Every message fans out to each member's gateway and
    /// read status is kept per member, so this bounds the work one send or read causes.
    #[arg(long, env = "SOHBET_MAX_GROUP_SIZE", default_value_t = 250)]
    pub max_group_size: i64,

    /// Most participants in one voice call. Calls are a full mesh: each participant sends
    /// its audio to every other one, so upload grows with the call (8 → 7 streams of
    /// ~40 kbit/s each, ~0.3 Mbit/s up and down).
    #[arg(long, env = "SOHBET_MAX_CALL_PARTICIPANTS", default_value_t = 8)]
    pub max_call_participants: u32,

    /// How long a DM call rings before it counts as missed, in seconds.
    #[arg(long, env = "SOHBET_RING_TIMEOUT", default_value_t = 30)]
    pub ring_timeout_secs: u64,

    /// How long a call participant whose gateway connection dropped stays in the call, in
    /// milliseconds: a client that reconnects within it resumes without the others noticing
    /// (its peer connections do not depend on the gateway). A crashed client leaves the call
    /// this long after its socket closed.
    #[arg(long, env = "SOHBET_VOICE_GRACE_MS", default_value_t = 5_000)]
    pub voice_grace_ms: u64,

    /// A STUN server URL handed to clients (`stun:host:port`); repeatable.
    #[arg(long = "stun-url", env = "SOHBET_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,

    /// A TURN server URL handed to clients (`turn:host:port?transport=udp`); repeatable.
    /// Needs `--turn-secret`.
    #[arg(long = "turn-url", env = "SOHBET_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,

    /// The TURN server's shared secret (coturn's `static-auth-secret` with
    /// `use-auth-secret`): clients get time-limited credentials derived from it.
    #[arg(long, env = "SOHBET_TURN_SECRET")]
    pub turn_secret: Option<Secret>,

    /// A file holding the TURN shared secret (one line), instead of `--turn-secret`.
    #[arg(long, env = "SOHBET_TURN_SECRET_FILE")]
    pub turn_secret_file: Option<PathBuf>,

    /// How long the TURN credentials handed out stay valid, in seconds.
    #[arg(long, env = "SOHBET_TURN_TTL", default_value_t = 86_400)]
    pub turn_ttl_secs: u64,
}

impl Settings {
    /// Settings for a server on the given stores, with defaults for everything else.
    pub fn new(database_url: impl Into<String>, redis_url: impl Into<String>) -> Self {
        Self {
            database_url: Secret(database_url.into()),
            database_read_url: None,
            database_password_file: None,
            database_password: None,
            log_format: LogFormat::Text,
            metrics_listen: None,
            trusted_proxies: Vec::new(),
            redis_url: Secret(redis_url.into()),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            tls: None,
            redis_prefix: String::new(),
            session_ttl_secs: 3600,
            db_pool_size: 16,
            db_acquire_timeout_ms: 2_000,
            db_statement_timeout_ms: 5_000,
            max_body_bytes: 64 * 1024,
            login_ip_limit: 30,
            login_account_limit: 10,
            login_window_secs: 300,
            limit_register: Rate::new(30, 3600),
            limit_friend_requests: Rate::new(50, 3600),
            limit_messages_burst: Rate::new(30, 10),
            limit_messages_sustained: Rate::new(300, 300),
            limit_typing: Rate::new(60, 60),
            limit_voice_joins: Rate::new(20, 60),
            limit_voice_signals: Rate::new(1000, 60),
            limit_groups: Rate::new(20, 3600),
            gateway_frame_rate: 50,
            hash_concurrency: None,
            heartbeat_interval_ms: 5_000,
            gateway_queue: 1024,
            replay_limit: 1000,
            max_group_size: 250,
            max_call_participants: 8,
            ring_timeout_secs: 30,
            voice_grace_ms: 5_000,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_secret_file: None,
            turn_ttl_secs: 86_400,
        }
    }

    /// Reads the secrets given as file paths (`database_password_file`, `turn_secret_file`).
    /// The file's content without its trailing newline is the secret.
    pub fn read_secret_files(&mut self) -> Result<(), file::ConfigError> {
        if let Some(path) = &self.database_password_file {
            self.database_password = Some(file::read_secret("database_password_file", path)?);
        }
        if let Some(path) = &self.turn_secret_file {
            if self.turn_secret.is_some() {
                return Err(file::ConfigError::Conflict(
                    "turn_secret",
                    "turn_secret_file",
                ));
            }
            self.turn_secret = Some(file::read_secret("turn_secret_file", path)?);
        }
        Ok(())
    }

    /// Reads the TLS certificate and key named by `tls_cert` / `tls_key`, if any.
    pub fn load_tls(&mut self) -> Result<(), file::ConfigError> {
        self.tls = match (&self.tls_cert, &self.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(Arc::new(CertStore::load(cert, key)?)),
            _ => return Err(file::ConfigError::Together("tls_cert", "tls_key")),
        };
        Ok(())
    }

    /// How to reach PostgreSQL: the URL, with the password from its file if one is given.
    pub fn pg_connect_options(&self) -> anyhow::Result<PgConnectOptions> {
        self.pg_options(&self.database_url, "database_url")
    }

    /// How to reach the PostgreSQL that serves read-only load, if it is not the primary.
    pub fn pg_read_connect_options(&self) -> anyhow::Result<Option<PgConnectOptions>> {
        self.database_read_url
            .as_ref()
            .map(|url| self.pg_options(url, "database_read_url"))
            .transpose()
    }

    fn pg_options(&self, url: &Secret, key: &str) -> anyhow::Result<PgConnectOptions> {
        // JIT off: every query here is short and index-driven, but PostgreSQL's cost estimate
        // for one with correlated subqueries (the group list's unread counts) can pass the JIT
        // threshold, and compiling then takes ~0.4 s for a query that runs in ~20 ms.
        let options = PgConnectOptions::from_str(url.expose())
            .with_context(|| format!("parsing {key}"))?
            .options([("jit", "off")]);
        Ok(match &self.database_password {
            Some(password) => options.password(password.expose()),
            None => options,
        })
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_secs)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.max(50))
    }
}
