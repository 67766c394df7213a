//! `cargo xtask bench desktop`: the desktop app's figures, measured on the real app in Xvfb
//! against a real server. Printed, never asserted (the machine is shared and noisy).
//!
//! - resident memory of all the app's processes (the app and WebKit's web and network
//!   processes), idle with 50 conversations listed: RSS and PSS (shared pages split);
//! - launch to an interactive conversation list: from the app process's start (its
//!   `/proc` start time) to the UI's `sohbet:interactive` performance mark;
//! - scrolling a 10,000-message conversation from end to start: frame times;
//! - resident memory during a call with one other participant (an SDK peer sending a tone),
//!   the app on the virtual sound card that `cargo xtask bench` starts.
//!
//! Built in the test profile like the end-to-end tests (one build for CI); a release
//! build's Rust side would be smaller and faster, the web view the same.

mod support;

use std::{path::Path, time::Duration};

use serde_json::json;
use sohbet_tests::{seed_messages, TestApp};
use support::webdriver::{descendants, Driver};

const APP: &str = env!("CARGO_BIN_EXE_sohbet-desktop");

/// Pages of the system's `/proc` in kB: (RSS, PSS) of a process.
fn memory_kb(pid: u32) -> (u64, u64) {
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&rollup, "Rss:"), field(&rollup, "Pss:"))
}

/// (RSS, PSS) in kB of a process tree, summed.
fn tree_memory_kb(tree: &[(u32, String)]) -> (u64, u64) {
    tree.iter().fold((0, 0), |(r, p), (pid, _)| {
        let (a, b) = memory_kb(*pid);
        (r + a, p + b)
    })
}

/// The app process (launched by WebKitWebDriver under tauri-driver) and all below it.
fn app_tree(driver_pid: u32) -> Vec<(u32, String)> {
    let comm = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let Some(app) = descendants(driver_pid)
        .into_iter()
        .find(|p| comm(*p).starts_with("sohbet-desktop"))
    else {
        return Vec::new();
    };
    std::iter::once(app)
        .chain(descendants(app))
        .map(|p| (p, comm(p)))
        .collect()
}

/// Milliseconds since the epoch at which process `pid` started.
fn start_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let ticks: f64 = after
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let hz = 100.0; // USER_HZ on Linux
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0);
    (boot + ticks / hz) * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo xtask bench desktop"]
async fn desktop_benchmark() {
    let server = TestApp::spawn().await;
    let [me, peer] = server.users(["bench", "peer"]).await;
    let mut big = 0;
    for i in 0..50 {
        let g = server.create_group(&me, &format!("group {i:02}")).await;
        server.send(&me, g, &format!("hello {i}")).await;
        if i == 0 {
            big = g;
        }
    }
    seed_messages(&server.db, big, me.user.user_id, 10_000).await;
    server.befriend(&me, &peer).await;
    server.add_member(&me, big, &peer).await;

    // A profile already logged in, as after a first run.
    let dir = std::env::temp_dir().join(format!("sohbet-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("profile");
    std::fs::write(
        dir.join("config.json"),
        json!({"server": server.base, "audio": {"input": "pulse", "output": "pulse",
            "noise_suppression": true, "push_to_talk": false, "ptt_key": "F8"}})
        .to_string(),
    )
    .expect("config");
    std::fs::write(dir.join("session-token"), &me.token).expect("token");

    let driver = Driver::start(Path::new(APP), &dir).await;
    let mut launches = Vec::new();
    let mut memory = (0, 0, 0);
    let mut in_call = (0, 0);
    for round in 0..3 {
        let s = driver.launch().await;
        s.until(
            "50 conversations",
            // The list can be drawn before the rest of start-up (friends, audio settings) is in,
            // and the mark is set only then.
            "return document.querySelectorAll('[data-testid=conversation]').length === 50 \
             && performance.getEntriesByName('sohbet:interactive').length > 0",
            json!([]),
        )
        .await;
        let mark = s
            .js(
                "const m = performance.getEntriesByName('sohbet:interactive')[0]; return m ? performance.timeOrigin + m.startTime : null",
                json!([]),
            )
            .await
            .as_f64()
            .expect("the interactive mark");
        let tree = app_tree(driver.pid());
        let app_pid = tree.first().map(|(p, _)| *p).expect("the app process");
        launches.push(mark - start_ms(app_pid));
        if round == 2 {
            // Idle: let start-up work settle before measuring.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let tree = app_tree(driver.pid());
            let (rss, pss) = tree_memory_kb(&tree);
            memory = (rss, pss, tree.len());
            println!(
                "processes: {}",
                tree.iter()
                    .map(|(p, n)| format!("{n}({p})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );

            // Scroll the 10,000-message conversation from its end to its start.
            s.click("[data-testid=conversation][data-title='group 00']")
                .await;
            s.find("[data-testid=timeline]").await;
            // Page the whole history in by scrolling to the top until the first message shows.
            let started = std::time::Instant::now();
            s.until_for(
                Duration::from_secs(600),
                "all 10,001 messages loaded",
                "const el = document.querySelector('[data-testid=timeline]'); el.scrollTop = 0;
                 const first = document.querySelector('[data-testid=message-text]');
                 return first && first.textContent === 'hello 0'",
                json!([]),
            )
            .await;
            println!(
                "loading 10,001 messages by scrolling up: {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let frames = s
                .js(
                    "const el = document.querySelector('[data-testid=timeline]');
                     el.scrollTop = el.scrollHeight;
                     return new Promise((resolve) => {
                       const times = []; let last = performance.now();
                       const step = () => {
                         const now = performance.now(); times.push(now - last); last = now;
                         el.scrollTop = Math.max(0, el.scrollTop - 400);
                         if (el.scrollTop > 0 && times.length < 5000) requestAnimationFrame(step); else resolve(times);
                       };
                       requestAnimationFrame(step);
                     });",
                    json!([]),
                )
                .await;
            let mut times: Vec<f64> = frames
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .unwrap_or_default();
            times.remove(0);
            times.sort_by(f64::total_cmp);
            let n = times.len().max(1);
            let mean = times.iter().sum::<f64>() / n as f64;
            let p95 = times.get(n * 95 / 100).copied().unwrap_or(0.0);
            let long = times.iter().filter(|t| **t > 33.4).count();
            println!("\nscrolling 10,000 messages end to start, 400 px a frame: {} frames, mean {mean:.1} ms, p95 {p95:.1} ms, max {:.1} ms, {long} frames over 33 ms", times.len(), times.last().copied().unwrap_or(0.0));

            // A call: the peer is in group 00's call; the app joins it.
            let gw = server.online(&peer.token).await;
            let _peer_call = server
                .join_call(&peer.token, &gw, big, 440.0)
                .await
                .expect("the peer joins the call");
            s.click("[data-testid=start-call]").await;
            s.until(
                "the peer connected in the call",
                "return document.querySelector('[data-testid=participant][data-name=peer][data-connected=true]')",
                json!([]),
            )
            .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            in_call = tree_memory_kb(&app_tree(driver.pid()));
            s.click("[data-testid=hang-up]").await;
        }
        s.quit().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    launches.sort_by(f64::total_cmp);
    println!(
        "\n| desktop app (test profile, Xvfb) | figure |\n|---|---|\n| launch to interactive list, median of 3 | {:.0} ms |\n| idle with 50 conversations, RSS of {} processes | {:.0} MB |\n| same, PSS (shared pages split) | {:.0} MB |\n| in a call with one peer, RSS / PSS | {:.0} / {:.0} MB |",
        launches[1],
        memory.2,
        memory.0 as f64 / 1024.0,
        memory.1 as f64 / 1024.0,
        in_call.0 as f64 / 1024.0,
        in_call.1 as f64 / 1024.0
    );
}
