//! The server in a process of its own, for tests that signal it (SIGTERM, SIGKILL): the
//! library's `run` until Ctrl-C or SIGTERM, exactly as `sohbet-server` runs it, so a test
//! sees what a real stop or crash does to connected clients.
//!
//! Settings come from the environment: `DATABASE_URL`, `REDIS_URL`, `SOHBET_REDIS_PREFIX`,
//! `SOHBET_LISTEN`, and optionally `SOHBET_HEARTBEAT_MS`.

use anyhow::Context;
use sohbet_server::config::Settings;

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sohbet_server::telemetry::init();
    let mut settings = Settings::new(var("DATABASE_URL")?, var("REDIS_URL")?);
    settings.redis_prefix = var("SOHBET_REDIS_PREFIX")?;
    settings.listen = var("SOHBET_LISTEN")?.parse()?;
    if let Ok(ms) = var("SOHBET_HEARTBEAT_MS") {
        settings.heartbeat_interval_ms = ms.parse()?;
    }
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    sohbet_server::run(listener, settings, sohbet_server::shutdown_signal()).await
}
