//! Logging set-up. Handlers never log tokens or passwords; request logs carry the method,
//! the matched route and the status, never headers or bodies.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // A second init (tests starting several servers) is harmless: keep the first.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
