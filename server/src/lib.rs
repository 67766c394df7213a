//! `sohbet-server`: the Sohbet REST API and WebSocket gateway over PostgreSQL and Redis.
//!
//! - [`cli`]: the command line: settings from flags, environment and a config file
//!   ([`config`]), and the subcommands (`serve`, `migrate`, `check-config`, `user …`).
//! - [`config`]: typed settings from flags, environment and a TOML file.
//! - [`routes`]: one module per resource (auth, users, friends, groups, messages, health),
//!   merged with the OpenAPI document generated from the same route list. Handlers only
//!   parse (into [`domain::values`]), call the domain layer and answer; no route module
//!   uses another.
//! - [`domain`]: what the server does, shared by the routes and the gateway: validated
//!   values; accounts and users; friends and blocks; groups, members and the caller's
//!   membership; messages (the one send path) and read status (watermarks, unread counts,
//!   receipts, the group's read lock). See its module map.
//! - [`error`]: `ApiError`, the one error shape.
//! - [`extract`]: JSON, path and query extractors that reject in that shape.
//! - [`client_ip`]: the client's address, from `X-Forwarded-For` only behind a trusted proxy.
//! - [`metrics`]: Prometheus metrics (`GET /metrics`, optionally on a listener of its own).
//! - [`session`], [`auth`]: Redis sessions and the extractor that checks them.
//! - [`password`]: argon2id on a bounded blocking pool.
//! - [`redis_conn`]: the connection to one Redis or a Redis Cluster (`redis+cluster://`).
//! - [`rate_limit`], [`keys`]: Redis counters and key names (cluster-safe: see [`keys`]).
//! - [`events`]: the event bus between REST handlers and the gateway, across instances.
//! - [`gateway`]: the WebSocket gateway, presence, typing and voice state; it uses the
//!   domain layer, never a route.
//! - [`tls`]: https/wss with rustls (`--tls-cert`/`--tls-key`), the certificate reloaded on
//!   SIGHUP (without TLS, SIGHUP is logged and ignored).
//!
//! [`run`] is the whole server: tests start it on port 0 exactly as `main` does.

pub mod auth;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod extract;
pub mod gateway;
pub mod keys;
pub mod metrics;
pub mod password;
pub mod rate_limit;
pub mod redis_conn;
pub mod routes;
pub mod session;
pub mod state;
pub mod telemetry;
pub mod tls;

use std::{
    future::{Future, IntoFuture},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use axum::{extract::DefaultBodyLimit, response::IntoResponse, serve::ListenerExt, Router};
use futures::future::BoxFuture;
use sqlx::{
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
    Connection, PgPool,
};
use tokio::net::TcpListener;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

use crate::{
    config::Settings, error::ApiError, keys::Keys, password::PasswordHasher, redis_conn::RedisConn,
    session::SessionStore, state::AppState,
};

/// The migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Connects to the stores, migrates, and builds the shared state.
pub async fn build_state(settings: Settings) -> anyhow::Result<AppState> {
    build_state_with(settings, true).await
}

/// Applies pending migrations over a connection of its own: migrations may legitimately run
/// long, so they do without the statement timeout of the request pool.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let mut migrating = PgConnection::connect_with(&settings.pg_connect_options()?)
        .await
        .context("connecting to PostgreSQL")?;
    MIGRATOR
        .run(&mut migrating)
        .await
        .context("running migrations")?;
    migrating
        .close()
        .await
        .context("closing the migration connection")
}

/// Connects the request pool to PostgreSQL.
pub async fn connect_postgres(settings: &Settings) -> anyhow::Result<PgPool> {
    connect_pool(settings, settings.pg_connect_options()?).await
}

/// Connects the pool for read-only load: to `database_read_url` (e.g. a replica), or the
/// request pool itself when that is unset.
pub async fn connect_postgres_reads(
    settings: &Settings,
    primary: &PgPool,
) -> anyhow::Result<PgPool> {
    match settings.pg_read_connect_options()? {
        Some(options) => connect_pool(settings, options)
            .await
            .context("connecting to the read-only PostgreSQL (database_read_url)"),
        None => Ok(primary.clone()),
    }
}

async fn connect_pool(settings: &Settings, options: PgConnectOptions) -> anyhow::Result<PgPool> {
    let statement_timeout = settings.db_statement_timeout_ms.to_string();
    // No separate connect timeout: the acquire timeout bounds connecting too (the pool
    // retries a refused connection until then), so a request never waits longer than it.
    let options = options.options([("statement_timeout", statement_timeout.as_str())]);
    PgPoolOptions::new()
        .max_connections(settings.db_pool_size)
        .acquire_timeout(Duration::from_millis(settings.db_acquire_timeout_ms))
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// Connects to the stores, applies pending migrations if `migrate`, and builds the shared
/// state.
pub async fn build_state_with(settings: Settings, migrate: bool) -> anyhow::Result<AppState> {
    if migrate {
        self::migrate(&settings).await?;
    }
    let db = connect_postgres(&settings).await?;
    let db_read = connect_postgres_reads(&settings, &db).await?;

    let redis = RedisConn::connect(settings.redis_url.expose()).await?;

    let keys = Keys::new(settings.redis_prefix.clone());
    let sessions = SessionStore::new(redis.clone(), keys.clone(), settings.session_ttl_secs);
    let concurrency = settings.hash_concurrency.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let passwords = PasswordHasher::new(concurrency).map_err(|e| anyhow::anyhow!("{e}"))?;
    let events = events::EventBus::new(redis.clone(), &keys);
    let instance = session::random_hex(8).map_err(|e| anyhow::anyhow!("{e}"))?;
    let presence_ttl_ms =
        i64::try_from(settings.heartbeat_interval().as_millis() * 3).unwrap_or(i64::MAX);
    let presence = gateway::presence::PresenceStore::new(
        gateway::membership::ExpiringSets::new(
            redis.clone(),
            keys.clone(),
            keys::SetFamily::Presence,
            presence_ttl_ms,
        ),
        instance,
    );
    let voice = gateway::voice::VoiceStore::new(
        gateway::membership::ExpiringSets::new(
            redis.clone(),
            keys.clone(),
            keys::SetFamily::Voice,
            presence_ttl_ms,
        ),
        keys.clone(),
    );
    let gateway = gateway::Gateway::new(presence, voice);
    Ok(AppState {
        db,
        db_read,
        redis,
        keys,
        sessions,
        passwords,
        settings: Arc::new(settings),
        events,
        gateway,
        sends: Default::default(),
    })
}

pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let mut router = routes::router();
    if state.settings.metrics_listen.is_none() {
        router = router.merge(metrics::router());
    }
    router
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(metrics::track_http))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then drains open requests.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(settings).await?;
    serve(listener, state, shutdown).await
}

/// What `sohbet-server serve` does: binds the configured address and serves until Ctrl-C or
/// SIGTERM.
pub async fn serve_settings(settings: Settings, migrate: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?,
        ),
        None => None,
    };
    let state = build_state_with(settings, migrate).await?;
    if let Some(listener) = metrics_listener {
        let router = metrics::router().with_state(state.clone());
        let stop = state.gateway.shutdown.clone();
        tracing::info!(addr = %listener.local_addr()?, "serving metrics");
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    serve(listener, state, shutdown_signal()).await
}

/// How long shutdown waits for open requests, then for the gateway's connections to close
/// and announce their users offline, before stopping anyway. A request takes milliseconds
/// and a connection's close a round trip or two; a peer that does not take its close frame
/// is dropped after 1 s. So 10 s is ample, and bounds the exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Sends small writes at once (see [`serve`]); a socket that refuses is served anyway.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// Serves an already built state (tests build it first to keep a handle on its parts).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    metrics::init();
    let (db, db_read) = (state.db.clone(), state.db_read.clone());
    gateway::start(&state)
        .await
        .context("starting the gateway")?;
    // On shutdown, close the gateway's sockets first: graceful shutdown waits for every
    // connection, and WebSockets would otherwise hold it open forever.
    let stop = state.gateway.shutdown.clone();
    let tasks = state.gateway.tasks.clone();
    let addr = listener.local_addr()?;
    let tls = state.settings.tls.clone();
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let until = stop.clone().cancelled_owned();
    #[cfg(unix)]
    tls::handle_sighup(tls.clone(), stop.clone()).context("listening for SIGHUP")?;
    let served: BoxFuture<'static, std::io::Result<()>> = match &tls {
        // TCP_NODELAY: a gateway event is one small write, and with Nagle's algorithm a
        // write behind an unacknowledged one waits for the peer's delayed ACK (up to 40 ms
        // on Linux) — a floor under every busy group's delivery latency.
        None => Box::pin(
            axum::serve(listener.tap_io(no_delay), app)
                .with_graceful_shutdown(until)
                .into_future(),
        ),
        Some(store) => {
            // `tap_io` also gives the client's address as connect info (axum provides it
            // for plain TCP and for tapped listeners).
            let listener =
                tls::listener(listener, Arc::clone(store))?.tap_io(|tls| no_delay(tls.get_mut().0));
            Box::pin(
                axum::serve(listener, app)
                    .with_graceful_shutdown(until)
                    .into_future(),
            )
        }
    };
    // Said once everything is up, SIGHUP handling included (tests and scripts wait for it).
    tracing::info!(%addr, tls = tls.is_some(), "serving");
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let grace = async {
        stop.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = served => served.context("serving")?,
        () = grace => tracing::warn!("requests still open after the grace period; stopping"),
    }
    // Upgraded connections outlive the HTTP server: wait for them to say goodbye (while the
    // pool is still open, so their users' going offline is announced).
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tasks.len(),
            "gateway connections still open; stopping"
        );
    }
    db.close().await;
    db_read.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
