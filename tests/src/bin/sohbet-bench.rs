//! `sohbet-bench [SUITE...]`: runs the named benchmark suites (all when none is named) and
//! prints their tables. Needs `DATABASE_URL` and `REDIS_URL`; `cargo xtask bench` sets
//! them up and builds in release mode.

use sohbet_tests::bench;

const SUITES: &[&str] = &["auth", "calls", "gateway", "idle", "messaging"];

#[tokio::main]
async fn main() {
    // In-process servers log at info by default; a benchmark wants only its tables.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        args = SUITES.iter().map(|s| s.to_string()).collect();
    }
    for suite in args {
        match suite.as_str() {
            "auth" => bench::auth::run().await,
            "calls" => bench::calls::run().await,
            "gateway" => bench::gateway::run().await,
            "idle" => bench::gateway::idle().await,
            "messaging" => bench::messaging::run().await,
            other => {
                eprintln!("unknown suite {other}; suites: {}", SUITES.join(", "));
                std::process::exit(2);
            }
        }
    }
}
