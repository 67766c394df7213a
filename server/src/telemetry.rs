//! Logging set-up. Handlers never log tokens or passwords; request logs carry the method,
//! the matched route and the status, never headers or bodies.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Text logs (what tests use).
pub fn init() {
    init_with(LogFormat::Text);
}

/// Logs to stderr in `format`, filtered by `RUST_LOG`.
pub fn init_with(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // stderr, as the README says: stdout is for what a command prints (`check-config`,
    // `user list`).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests starting several servers) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
