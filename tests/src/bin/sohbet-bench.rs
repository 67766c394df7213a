//! `sohbet-bench [SUITE...]`: runs the named benchmark suites (all when none is named) and
//! prints their tables. Needs `DATABASE_URL` and `REDIS_URL`; `cargo xtask bench` sets
//! them up and builds in release mode.
//!
//! `sohbet-bench soak [--minutes N] [--users N]` (not part of "all"; `cargo xtask soak`)
//! runs simulated users against two instances and exits 1 if a message was lost or
//! duplicated.

use sohbet_tests::bench;

const SUITES: &[&str] = &["auth", "calls", "gateway", "idle", "messaging", "scaleout"];

#[tokio::main]
async fn main() {
    // In-process servers log at info by default; a benchmark wants only its tables.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("soak") {
        let (minutes, users) = soak_options(&args[1..]);
        if !bench::soak::run(minutes, users).await {
            std::process::exit(1);
        }
        return;
    }
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
            "scaleout" => bench::scaleout::run().await,
            other => {
                eprintln!("unknown suite {other}; suites: {}", SUITES.join(", "));
                std::process::exit(2);
            }
        }
    }
}

/// `--minutes N` (default 5) and `--users N` (default 60); anything else is a usage error.
fn soak_options(args: &[String]) -> (u64, usize) {
    let (mut minutes, mut users) = (5, 60);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0);
        match (arg.as_str(), value) {
            ("--minutes", Some(v)) => minutes = v,
            ("--users", Some(v)) if v >= 2 => users = v as usize,
            _ => {
                eprintln!("usage: sohbet-bench soak [--minutes N] [--users N (at least 2)]");
                std::process::exit(2);
            }
        }
    }
    (minutes, users)
}
