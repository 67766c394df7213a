//! `sohbet-bench auth`: login throughput and latency at 1, 8 and 64 concurrent clients, and
//! the latency of an authenticated `GET /api/users/me` alone and while logins run.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use reqwest::StatusCode;

use super::{print_table, Samples};
use crate::{TestApp, PASSWORD};

/// Long enough for dozens of argon2 hashes per client at 64 clients on 2 cores.
const PHASE: Duration = Duration::from_secs(6);

async fn login_loop(app: Arc<TestApp>, username: String, until: Instant) -> (Samples, usize) {
    let mut samples = Samples::default();
    let mut errors = 0;
    while Instant::now() < until {
        let start = Instant::now();
        let (status, _) = app.login_raw(&username, PASSWORD).await;
        if status == StatusCode::OK {
            samples.push(start.elapsed());
        } else {
            errors += 1;
        }
    }
    (samples, errors)
}

async fn me_loop(app: Arc<TestApp>, token: String, stop: Arc<AtomicBool>) -> Samples {
    let mut samples = Samples::default();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let (status, _) = app.get("/api/users/me", &token).await;
        if status == StatusCode::OK {
            samples.push(start.elapsed());
        }
        // A user's client polls, it does not spin: ~100 requests/s.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    samples
}

pub async fn run() {
    let app = Arc::new(
        TestApp::spawn_with(|s| {
            // The benchmark measures hashing and sessions, not the rate limiter.
            s.login_ip_limit = u64::MAX / 2;
            s.login_account_limit = u64::MAX / 2;
        })
        .await,
    );
    let users: Vec<String> = (0..64).map(|i| format!("bench{i}")).collect();
    for u in &users {
        app.register(u).await;
    }
    let watcher = app.user("watcher").await;

    let mut rows = Vec::new();
    for clients in [1usize, 8, 64] {
        let until = Instant::now() + PHASE;
        let tasks: Vec<_> = users[..clients]
            .iter()
            .map(|u| tokio::spawn(login_loop(app.clone(), u.clone(), until)))
            .collect();
        let started = Instant::now();
        let mut all = Samples::default();
        let mut errors = 0;
        for t in tasks {
            if let Ok((s, e)) = t.await {
                all.extend(s);
                errors += e;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        rows.push(vec![
            clients.to_string(),
            all.len().to_string(),
            format!("{:.1}", all.len() as f64 / secs),
            format!("{:.1}", all.percentile_ms(50.0)),
            format!("{:.1}", all.percentile_ms(99.0)),
            errors.to_string(),
        ]);
    }
    print_table(
        "Login (argon2id m=19MiB t=2 p=1, new Redis session each)",
        &[
            "clients", "logins", "logins/s", "p50 ms", "p99 ms", "errors",
        ],
        &rows,
    );

    // /users/me alone, then while 8 clients log in continuously.
    let mut me_rows = Vec::new();
    for (label, login_clients) in [("idle server", 0usize), ("during 8-client login load", 8)] {
        let stop = Arc::new(AtomicBool::new(false));
        let me = tokio::spawn(me_loop(app.clone(), watcher.token.clone(), stop.clone()));
        let until = Instant::now() + PHASE;
        let logins: Vec<_> = users[..login_clients]
            .iter()
            .map(|u| tokio::spawn(login_loop(app.clone(), u.clone(), until)))
            .collect();
        tokio::time::sleep_until(until.into()).await;
        for t in logins {
            let _ = t.await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut samples = me.await.unwrap_or_default();
        me_rows.push(vec![
            label.to_string(),
            samples.len().to_string(),
            format!("{:.2}", samples.percentile_ms(50.0)),
            format!("{:.2}", samples.percentile_ms(99.0)),
        ]);
    }
    print_table(
        "GET /api/users/me (session lookup + renewal + user row)",
        &["condition", "requests", "p50 ms", "p99 ms"],
        &me_rows,
    );
}
