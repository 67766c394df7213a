//! `cargo xtask bench desktop`: the desktop app's figures, measured on the real app in Xvfb
//! against a real server. Printed as each phase ends, never asserted (the machine is shared
//! and noisy), so a run cut short still shows what it measured.
//!
//! - the floor: resident memory of the app on its first-run screen (an empty profile: the
//!   web view with the UI loaded and next to nothing on screen), what any window of this
//!   web view costs before Sohbet shows anything;
//! - launch to an interactive conversation list, median of several launches: from the app
//!   process's start (its `/proc` start time) to the UI's `sohbet:interactive` mark;
//! - resident memory of all the app's processes (the app and WebKit's web and network
//!   processes), idle with 50 conversations listed: RSS and PSS (shared pages split);
//! - resident memory during a call with one other participant (an SDK peer sending a tone),
//!   the app on the virtual sound card that `cargo xtask bench` starts;
//! - a 10,000-message conversation (seeded in one SQL statement): scrolling up from its end
//!   at a steady speed while its history pages in as the list nears the top (as a reader
//!   does), then all the way back down while the newer pages come back in; frame times from
//!   `requestAnimationFrame` in the web view, the waits at either end for a page, and the
//!   memory after.
//!
//! `SOHBET_BENCH_PHASES` (comma-separated: `floor`, `launch`, `idle`, `call`, `scroll`)
//! runs only those phases, each short enough for a quiet moment on a shared machine;
//! `SOHBET_BENCH_SCROLL_SECS` caps each scroll direction (default 300 s). Each launch also
//! prints where its time went: the app's own start-up marks (its log) and the UI's
//! (`sohbet:*` performance marks), from the process's start.
//!
//! The app binary is `SOHBET_DESKTOP_APP` when set (`cargo xtask bench desktop` builds and
//! passes the release binary, which is what users run), else the test build's.

mod support;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sohbet_tests::{seed_messages, TestApp};
use support::webdriver::{app_tree, Driver, Session};

/// Launches measured; the median is reported (the first one also pays for cold caches).
const LAUNCHES: usize = 5;
/// How far a frame scrolls up through the history: a brisk wheel or a flick (~6,000 px/s at
/// 60 frames a second), fast enough to reach the top of each page before the next is in.
const SCROLL_UP_PX: u32 = 100;
/// Scrolling back down: fast, to cross the conversation in a few hundred frames.
const SCROLL_DOWN_PX: u32 = 400;
/// Scrolling through the history either way stops here if it has not reached the end
/// (`SOHBET_BENCH_SCROLL_SECS` changes it).
const SCROLL_LIMIT: Duration = Duration::from_secs(300);
/// One display frame at 60 Hz, in ms: a frame interval over 1.5 of these missed a frame.
const FRAME_MS: f64 = 1000.0 / 60.0;

/// Whether `SOHBET_BENCH_PHASES` asks for phase `name` (unset: every phase).
fn phase(name: &str) -> bool {
    std::env::var("SOHBET_BENCH_PHASES").map_or(true, |v| v.split(',').any(|p| p.trim() == name))
}

fn scroll_limit() -> Duration {
    std::env::var("SOHBET_BENCH_SCROLL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(SCROLL_LIMIT, Duration::from_secs)
}

/// The UI's start-up marks and the page's own start, as ms since the epoch.
const UI_MARKS: &str = "
return performance.getEntriesByType('mark')
  .filter(m => m.name.startsWith('sohbet:'))
  .map(m => [m.name.slice(7), performance.timeOrigin + m.startTime])
  .concat([['page start', performance.timeOrigin]])";

/// The app's start-up marks (`start-up: <step> at_ms=<ms>` lines of its log) from `since`
/// (ms since the epoch) on.
fn app_marks(log: &std::path::Path, since: f64) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("start-up: ")?;
            let (step, at) = rest.split_once(" at_ms=")?;
            let at: f64 = at.split_whitespace().next()?.parse().ok()?;
            Some((format!("app {step}"), at))
        })
        .filter(|(_, at)| *at >= since - 20.0)
        .collect()
}

/// Where a launch's time went: each mark in order, as ms from the process's start.
fn launch_breakdown(start: f64, mut marks: Vec<(String, f64)>) -> String {
    marks.sort_by(|a, b| a.1.total_cmp(&b.1));
    marks
        .iter()
        .map(|(name, at)| format!("{name} {:.0}", at - start))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn app_binary() -> (PathBuf, &'static str) {
    match std::env::var_os("SOHBET_DESKTOP_APP") {
        Some(path) => (PathBuf::from(path), "release build"),
        None => (
            PathBuf::from(env!("CARGO_BIN_EXE_sohbet-desktop")),
            "test build (debug Rust side)",
        ),
    }
}

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

/// (RSS, PSS) in MB of a process tree, summed.
fn tree_memory_mb(tree: &[(u32, String)]) -> (f64, f64) {
    let (rss, pss) = tree.iter().fold((0, 0), |(r, p), (pid, _)| {
        let (a, b) = memory_kb(*pid);
        (r + a, p + b)
    });
    (rss as f64 / 1024.0, pss as f64 / 1024.0)
}

fn describe_tree(tree: &[(u32, String)]) -> String {
    tree.iter()
        .map(|(pid, name)| {
            let (rss, _) = memory_kb(*pid);
            format!("{name} {:.0} MB", rss as f64 / 1024.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Measures and prints the memory of the app's processes now: (RSS, PSS) in MB and how
/// many processes.
fn report_memory(what: &str, driver_pid: u32) -> (f64, f64, usize) {
    let tree = app_tree(driver_pid);
    let (rss, pss) = tree_memory_mb(&tree);
    println!(
        "{what}: RSS {rss:.0} MB, PSS {pss:.0} MB over {} processes ({})",
        tree.len(),
        describe_tree(&tree)
    );
    (rss, pss, tree.len())
}

/// Milliseconds since the epoch at which process `pid` started (10 ms resolution).
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

/// The value at fraction `q` of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Frame intervals (ms) summarised: percentiles, and frames missed at 60 Hz.
fn frame_summary(intervals: &[f64]) -> String {
    let mut v = intervals.to_vec();
    v.sort_by(f64::total_cmp);
    let missed: f64 = v
        .iter()
        .filter(|t| **t > 1.5 * FRAME_MS)
        .map(|t| (t / FRAME_MS).round() - 1.0)
        .sum();
    format!(
        "{} frames; frame time p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         {} intervals over 25 ms, {missed:.0} frames missed at 60 Hz ({:.0} %)",
        v.len(),
        quantile(&v, 0.5),
        quantile(&v, 0.95),
        quantile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN),
        v.iter().filter(|t| **t > 1.5 * FRAME_MS).count(),
        100.0 * missed / (v.len() as f64 + missed).max(1.0),
    )
}

/// The waits at an edge for the next page, summarised.
fn wait_summary(waits: &[f64]) -> String {
    let mut v = waits.to_vec();
    v.sort_by(f64::total_cmp);
    format!(
        "{}, median {:.0} ms, p95 {:.0} ms, total {:.1} s",
        v.len(),
        quantile(&v, 0.5),
        quantile(&v, 0.95),
        v.iter().sum::<f64>() / 1000.0
    )
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Starts scrolling the timeline by `px` a frame (negative: up) in the page, recording each
/// frame's interval and, while the list sits at the edge it scrolls towards waiting for the
/// next page, how long each wait lasts. Runs until `window.__bench.stop`, or scrolling down,
/// until the conversation's latest message is at the bottom (the window holds no newer).
const SCROLL_LOOP: &str = "
const el = document.querySelector('[data-testid=timeline]');
const px = arguments[0];
const b = window.__bench = { frames: [], waits: [], waitingSince: null, stop: false, ended: false };
let last = null;
const step = (now) => {
  if (last !== null) b.frames.push(now - last);
  last = now;
  const atEdge = px < 0 ? el.scrollTop <= 0 : el.scrollTop + el.clientHeight >= el.scrollHeight - 1;
  if (atEdge && b.waitingSince === null) b.waitingSince = now;
  if (!atEdge && b.waitingSince !== null) { b.waits.push(now - b.waitingSince); b.waitingSince = null; }
  const latest = px > 0 && atEdge && document.querySelector('[data-has-newer=false]');
  if (b.stop || latest) { b.ended = true; return; }
  el.scrollTop = Math.max(0, el.scrollTop + px);
  requestAnimationFrame(step);
};
requestAnimationFrame(step);
return true";

/// Where the scroll is: the earliest seeded message on screen (`seeded message N`), whether
/// the conversation's first message is on screen, the frames so far, and the size of the
/// document (elements, messages rendered: the DOM should not grow with the distance).
const SCROLL_STATE: &str = "
const el = document.querySelector('[data-testid=timeline]');
const texts = [...document.querySelectorAll('[data-testid=message-text]')].map(e => e.textContent);
const seeded = texts.map(t => /^seeded message (\\d+)$/.exec(t)).filter(Boolean).map(m => Number(m[1]));
return { earliest: seeded.length ? Math.min(...seeded) : null, first: texts.includes('hello 0'),
         top: el.scrollTop <= 0, frames: window.__bench.frames.length, ended: window.__bench.ended,
         elements: document.getElementsByTagName('*').length, rendered: texts.length }";

async fn scroll_results(s: &Session) -> (Vec<f64>, Vec<f64>) {
    let v = s
        .js(
            "window.__bench.stop = true; return { frames: window.__bench.frames, waits: window.__bench.waits }",
            json!([]),
        )
        .await;
    (numbers(&v["frames"]), numbers(&v["waits"]))
}

/// Scrolls the timeline by `px` a frame until `done` says so of the scroll state, or for at
/// most [`scroll_limit`], printing the DOM's size and the memory every 15 s. Returns whether
/// `done` was reached, and how long it took in s.
async fn scroll_until(
    s: &Session,
    driver_pid: u32,
    px: i64,
    done: impl Fn(&Value) -> bool,
) -> (bool, f64) {
    s.js(SCROLL_LOOP, json!([px])).await;
    let (limit, started) = (scroll_limit(), Instant::now());
    let mut reported = Instant::now();
    let reached = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let state = s.js(SCROLL_STATE, json!([])).await;
        if done(&state) {
            break true;
        }
        if started.elapsed() > limit {
            break false;
        }
        if reported.elapsed() > Duration::from_secs(15) {
            reported = Instant::now();
            let (rss, _) = tree_memory_mb(&app_tree(driver_pid));
            println!(
                "  … {:.0} s: at seeded message {} ({} frames, {} DOM elements, {} messages rendered, RSS {rss:.0} MB)",
                started.elapsed().as_secs_f64(),
                state["earliest"],
                state["frames"],
                state["elements"],
                state["rendered"],
            );
        }
    };
    (reached, started.elapsed().as_secs_f64())
}

/// Scrolls up through the long conversation as its older pages come in, then back down as
/// the newer ones come back, each for at most [`scroll_limit`]; prints frame times, waits,
/// the DOM's size and memory on the way. Returns the frame intervals and memory after each.
async fn scroll_phase(
    s: &Session,
    driver_pid: u32,
) -> (Vec<f64>, (f64, f64, usize), Vec<f64>, (f64, f64, usize)) {
    let (reached_first, took) = scroll_until(s, driver_pid, -i64::from(SCROLL_UP_PX), |state| {
        state["first"].as_bool() == Some(true) && state["top"].as_bool() == Some(true)
    })
    .await;
    let (scroll_up, waits) = scroll_results(s).await;
    let earliest = s.js(SCROLL_STATE, json!([])).await["earliest"].clone();
    if reached_first {
        println!("scrolling up through 10,001 messages ({SCROLL_UP_PX} px a frame, pages of 100 loading on the way): reached the first message in {took:.1} s");
    } else {
        println!("scrolling up through 10,001 messages ({SCROLL_UP_PX} px a frame): stopped after {took:.0} s at seeded message {earliest}");
    }
    println!("  {}", frame_summary(&scroll_up));
    println!(
        "  waits at the top for the next page: {}",
        wait_summary(&waits)
    );
    let after_up = report_memory("at the top of the scroll", driver_pid);

    // And back down to the latest message, as the newer pages come back in.
    let (reached_latest, took) = scroll_until(s, driver_pid, i64::from(SCROLL_DOWN_PX), |state| {
        state["ended"].as_bool() == Some(true)
    })
    .await;
    let (scroll_down, waits) = scroll_results(s).await;
    println!(
        "scrolling down, {SCROLL_DOWN_PX} px a frame: {} in {took:.1} s:\n  {}",
        if reached_latest {
            "reached the latest message"
        } else {
            "stopped short of the latest message"
        },
        frame_summary(&scroll_down)
    );
    println!(
        "  waits at the bottom for the next page: {}",
        wait_summary(&waits)
    );
    let after_down = report_memory("after scrolling up and back down", driver_pid);
    // What of the growth is garbage not yet collected: memory after a pause, and after a
    // full collection of the JS heap where the engine offers one (`$vm.gc()`, which JSC
    // exposes to pages when run with `JSC_useDollarVM=1` and its build allows it).
    tokio::time::sleep(Duration::from_secs(10)).await;
    report_memory("  10 s later", driver_pid);
    let collected = s
        .js(
            "if (typeof $vm === 'undefined') return false; $vm.gc(); return true",
            json!([]),
        )
        .await;
    if collected.as_bool() == Some(true) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        report_memory("  after a full JS garbage collection", driver_pid);
    } else {
        println!("  (no JS garbage collection to force: $vm is not exposed)");
    }
    (scroll_up, after_up, scroll_down, after_down)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo xtask bench desktop"]
async fn desktop_benchmark() {
    let (app, build) = app_binary();
    println!("desktop benchmark: {} ({build})", app.display());

    // 50 conversations; the first one holds 10,001 messages, 10,000 of them seeded in bulk.
    let seeding = Instant::now();
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
    println!(
        "seeded 50 conversations and a 10,001-message one in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

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

    // The floor: the app on an empty profile, showing its first-run screen.
    let empty = dir.with_extension("empty");
    let _ = std::fs::remove_dir_all(&empty);
    std::fs::create_dir_all(&empty).expect("empty profile");
    let floor = if phase("floor") {
        let driver = Driver::start(&app, &empty).await;
        let s = driver.launch().await;
        s.find("[data-testid=server-form]").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let floor = report_memory("first-run screen (an empty profile)", driver.pid());
        s.quit().await;
        driver.wait_app_gone().await;
        floor
    } else {
        (f64::NAN, f64::NAN, 0)
    };

    let log = dir.with_extension("log");
    let driver = Driver::start_logging(&app, &dir, Some(&log)).await;

    // Launch to an interactive list, several times; the last launch stays for the rest.
    let mut launches = Vec::new();
    let mut session = None;
    let rounds = if phase("launch") { LAUNCHES } else { 1 };
    for round in 1..=rounds {
        driver.wait_app_gone().await;
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
        let start = start_ms(app_pid);
        let launch = mark - start;
        let mut marks: Vec<(String, f64)> = s
            .js(UI_MARKS, json!([]))
            .await
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| Some((m[0].as_str()?.to_owned(), m[1].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        marks.extend(app_marks(&log, start));
        println!(
            "launch {round}: {launch:.0} ms to an interactive list of 50 conversations\n  ms from the process's start: {}",
            launch_breakdown(start, marks)
        );
        launches.push(launch);
        if round == rounds {
            session = Some(s);
        } else {
            s.quit().await;
        }
    }
    launches.sort_by(f64::total_cmp);
    let launch_median = quantile(&launches, 0.5);
    println!(
        "launch to interactive list: median {launch_median:.0} ms of {rounds} (min {:.0}, max {:.0})",
        launches[0],
        launches[launches.len() - 1]
    );
    let s = session.expect("the last launch");

    // Idle: let start-up work settle before measuring.
    let nan = (f64::NAN, f64::NAN, 0);
    let idle = if phase("idle") {
        tokio::time::sleep(Duration::from_secs(5)).await;
        report_memory("idle with 50 conversations", driver.pid())
    } else {
        nan
    };

    if phase("call") || phase("scroll") {
        // The long conversation, opened at its end, its latest page loaded.
        s.click("[data-testid=conversation][data-title='group 00']")
            .await;
        s.until(
            "the end of the long conversation",
            "return [...document.querySelectorAll('[data-testid=message-text]')].some(e => e.textContent === 'seeded message 10000')",
            json!([]),
        )
        .await;
    }

    // A call in it: the peer is in group 00's call; the app joins it.
    let in_call = if phase("call") {
        let gw = server.online(&peer.token).await;
        let peer_call = server
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
        let in_call = report_memory("in a call with one peer", driver.pid());
        s.click("[data-testid=hang-up]").await;
        drop(peer_call);
        in_call
    } else {
        nan
    };

    let (scroll_up, after_up, scroll_down, after_down) = if phase("scroll") {
        scroll_phase(&s, driver.pid()).await
    } else {
        (Vec::new(), nan, Vec::new(), nan)
    };
    s.quit().await;

    let p = |v: &[f64], q: f64| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        quantile(&v, q)
    };
    println!(
        "\n| desktop app ({build}, Xvfb) | figure |\n|---|---|\n\
         | launch to interactive list, median of {rounds} | {launch_median:.0} ms |\n\
         | first-run screen (the floor), RSS / PSS of {} processes | {:.0} / {:.0} MB |\n\
         | idle with 50 conversations, RSS / PSS of {} processes | {:.0} / {:.0} MB |\n\
         | in a call with one peer, RSS / PSS | {:.0} / {:.0} MB |\n\
         | scrolling up 10,001 messages as pages load: frame p50 / p95 / p99 | {:.1} / {:.1} / {:.1} ms |\n\
         | at the top of them, RSS / PSS | {:.0} / {:.0} MB |\n\
         | scrolling back down as pages load: frame p50 / p95 / p99 | {:.1} / {:.1} / {:.1} ms |\n\
         | after scrolling up and down, RSS / PSS | {:.0} / {:.0} MB |",
        floor.2,
        floor.0,
        floor.1,
        idle.2,
        idle.0,
        idle.1,
        in_call.0,
        in_call.1,
        p(&scroll_up, 0.5),
        p(&scroll_up, 0.95),
        p(&scroll_up, 0.99),
        after_up.0,
        after_up.1,
        p(&scroll_down, 0.5),
        p(&scroll_down, 0.95),
        p(&scroll_down, 0.99),
        after_down.0,
        after_down.1,
    );
}
