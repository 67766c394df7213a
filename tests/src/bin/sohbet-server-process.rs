//! The server in a process of its own, for tests that signal it (SIGTERM, SIGKILL, SIGHUP):
//! exactly what `sohbet-server` runs (its command line, settings and `serve`), built with
//! the tests so a test sees what a real stop, crash or reload does to connected clients.
//!
//! Settings come from the environment as for `sohbet-server` (`DATABASE_URL`, `REDIS_URL`,
//! `SOHBET_REDIS_PREFIX`, `SOHBET_LISTEN`, `SOHBET_HEARTBEAT_MS`, `SOHBET_TLS_CERT`, …) or
//! from its flags.

use sohbet_server::{cli::Cli, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::load(std::env::args_os()).unwrap_or_else(|e| e.exit());
    telemetry::init_with(cli.settings.log_format);
    cli.run().await
}
