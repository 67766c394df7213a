//! `cargo xtask`: the project's two commands and its benchmarks.
//!
//! - `cargo xtask up`    installs missing system packages, starts a private PostgreSQL
//!   cluster and Redis under `.data/`, and runs the server.
//! - `cargo xtask test`  the same set-up plus the desktop app's (UI packages and build,
//!   Xvfb, tauri-driver), then the UI's unit tests and every test of the workspace.
//! - `cargo xtask bench` the same set-up, then the benchmarks (release builds; the desktop
//!   app's benchmark is a test of the test build driving the release app).
//! - `cargo xtask soak [--minutes N] [--users N]` runs simulated users against two server
//!   instances and reports lost or duplicated messages, latency and memory over time.
//! - `cargo xtask services` only starts PostgreSQL and Redis and prints their URLs.
//! - `cargo xtask package` builds the server's Debian package from the binary of the last
//!   test build and checks it (see `package`); `test` does the same after the tests.
//! - `cargo xtask prepare` rewrites the offline query data (`.sqlx/`) after a query or a
//!   migration changed; `test` fails while it is stale.
//! - `cargo xtask fuzz [--seconds N] [target…]` runs the fuzz targets (`fuzz/`) longer than
//!   `test` does (5 minutes each by default).
//!
//! `DATABASE_URL` and `REDIS_URL`, when set, are used as they are instead of the private
//! services.

mod desktop;
mod fuzz;
mod package;
mod queries;
mod services;
mod system;

use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args
        .split_first()
        .map(|(t, r)| (t.as_str(), r))
        .unwrap_or(("help", &[]));
    // `cargo xtask up -- --listen …` and `cargo xtask up --listen …` mean the same.
    let rest = rest.strip_prefix(&["--".to_owned()][..]).unwrap_or(rest);
    match task {
        "up" => up(rest),
        "test" => test(rest),
        "bench" => bench(rest),
        "soak" => soak(rest),
        "services" => {
            let env = prepare(false)?;
            for (k, v) in &env.vars {
                println!("export {k}={v}");
            }
            Ok(())
        }
        "package" => {
            let env = prepare(false)?;
            package::test(&system::repo_root()?, &env)
        }
        "fuzz" => fuzz::command(&system::repo_root()?, rest),
        "prepare" => {
            let env = prepare(false)?;
            queries::prepare(&system::repo_root()?, env.var("DATABASE_URL")?)
        }
        "stop" => {
            let root = system::repo_root()?;
            desktop::stop_display(&root);
            services::stop(&root)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <up|test|bench|soak|services|package|prepare|fuzz|stop>\n\
                 \n  up        start PostgreSQL + Redis under .data/ and run the server\
                 \n  test      start them and run every test (extra args go to the test runner)\
                 \n  bench     start them and run the benchmarks\
                 \n  soak      simulated users on two instances [--minutes N] [--users N] [--release]\
                 \n  services  start them and print DATABASE_URL / REDIS_URL\
                 \n  package   build and check the Debian package from the last test build's server\
                 \n  prepare   rewrite the offline query data (.sqlx/) from a migrated database\
                 \n  fuzz      run the fuzz targets [--seconds N per target] [target…]\
                 \n  stop      stop the private PostgreSQL and Redis"
            );
            Ok(())
        }
    }
}

/// Environment the server, tests and benchmarks run with.
struct Prepared {
    vars: Vec<(String, String)>,
}

impl Prepared {
    fn var(&self, name: &str) -> Result<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .with_context(|| format!("{name} is not set"))
    }

    fn apply(&self, cmd: &mut Command) {
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
    }
}

fn prepare(for_tests: bool) -> Result<Prepared> {
    prepare_with(for_tests, true)
}

/// `prepare`, starting PostgreSQL and Redis only when `services` (the voice benchmark needs
/// neither, and services left running by one checkout hold the ports another one wants).
fn prepare_with(for_tests: bool, services: bool) -> Result<Prepared> {
    let root = system::repo_root()?;
    system::ensure_packages(for_tests)?;
    let mut vars = if services {
        services::ensure(&root, for_tests)?
    } else {
        Vec::new()
    };
    if for_tests {
        vars.extend(system::test_environment(&root)?);
    }
    Ok(Prepared { vars })
}

fn up(rest: &[String]) -> Result<()> {
    let env = prepare(false)?;
    let root = system::repo_root()?;
    let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    if has_display {
        desktop::install_ui(&root)?;
        desktop::build_ui(&root)?;
    }
    // One build of the server and the app together: built one by one, each would unify
    // the shared dependencies' features differently and rebuild hundreds of crates.
    step(if has_display {
        "building sohbet-server and the desktop app (release)"
    } else {
        "building sohbet-server (release)"
    });
    let mut build = Command::new(cargo());
    build.args(["build", "--release", "-p", "sohbet-server"]);
    if has_display {
        build.args(["-p", "sohbet-desktop"]);
    }
    run(&mut build)?;
    let release = target_dir()?.join("release");
    step("starting sohbet-server (Ctrl-C stops it)");
    let mut cmd = Command::new(release.join("sohbet-server"));
    cmd.args(rest);
    env.apply(&mut cmd);
    let mut server = desktop::Stopped(cmd.spawn().context("starting sohbet-server")?);
    let url = server_url(rest);
    // The app starts once the server answers, so its first screen can reach it; without a
    // display, the way to start it is said then, under the server's start-up lines.
    desktop::wait_until_listening(&url, &mut server.0)?;
    let _app = if has_display {
        step(&format!(
            "sohbet-server answers on {url}; starting the desktop app, preset to it (a \
             profile that already has a server keeps it)"
        ));
        Some(desktop::launch_app(&release.join("sohbet-desktop"), &url)?)
    } else {
        step(&format!(
            "sohbet-server answers on {url}. No display (DISPLAY/WAYLAND_DISPLAY unset): to \
             use the desktop app, run on a machine with one `npm --prefix ui ci && npm \
             --prefix ui run build && SOHBET_SERVER={url} cargo run --release -p \
             sohbet-desktop`, or enter {url} on its first screen"
        ));
        None
    };
    let status = server.0.wait().context("waiting for the server")?;
    if !status.success() {
        bail!("sohbet-server stopped: {status}");
    }
    Ok(())
}

/// The server's address as a client reaches it: `--listen` among the arguments (or
/// `SOHBET_LISTEN`), a wildcard address replaced by loopback; `https` when it is given a
/// certificate (`--tls-cert` or `SOHBET_TLS_CERT`).
fn server_url(args: &[String]) -> String {
    let listen = listen_addr(args);
    let reachable = listen
        .strip_prefix("0.0.0.0:")
        .map(|port| format!("127.0.0.1:{port}"))
        .or_else(|| {
            listen
                .strip_prefix("[::]:")
                .map(|port| format!("[::1]:{port}"))
        })
        .unwrap_or(listen);
    let tls = args
        .iter()
        .any(|a| a == "--tls-cert" || a.starts_with("--tls-cert="))
        || std::env::var_os("SOHBET_TLS_CERT").is_some_and(|v| !v.is_empty());
    format!("{}://{reachable}", if tls { "https" } else { "http" })
}

/// The address `up` starts the server on (`--listen` among the arguments, if given).
fn listen_addr(args: &[String]) -> String {
    args.iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--listen=").map(str::to_owned))
        })
        .or_else(|| std::env::var("SOHBET_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:8080".into())
}

fn test(rest: &[String]) -> Result<()> {
    let mut env = prepare(true)?;
    let root = system::repo_root()?;
    // First, as it is quick to fail: the build reads the schema from .sqlx/, which must
    // match the migrations and the queries.
    queries::check(&root, env.var("DATABASE_URL")?)?;
    fuzz::run_targets(&root, fuzz::TARGETS, fuzz::TEST_SECONDS)?;
    // The desktop binary embeds ui/dist when compiled, so the UI is built before cargo
    // builds the workspace; its end-to-end tests drive that binary in Xvfb.
    desktop::install_ui(&root)?;
    desktop::test_ui(&root)?;
    desktop::build_ui(&root)?;
    desktop::ensure_tauri_driver()?;
    env.vars.extend(desktop::display(&root)?);
    let mut cmd = Command::new(cargo());
    if system::has_nextest() {
        step("running every test with cargo nextest");
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(rest);
    } else {
        step("cargo-nextest not found: running every test with cargo test");
        cmd.args(["test", "--workspace", "--no-fail-fast"])
            .args(rest);
    }
    env.apply(&mut cmd);
    let tested = run(&mut cmd);
    // The Debian package, from the server binary the tests just built; only for a whole
    // run (a run narrowed to some tests is after something else).
    if rest.is_empty() {
        package::test(&root, &env)?;
    }
    tested
}

fn bench(args: &[String]) -> Result<()> {
    // `voice` is the voice engine's own benchmark (an example binary; it needs no server);
    // `desktop` the desktop app's (the real app in Xvfb); other names are suites of
    // sohbet-bench. No name runs everything.
    let suites: Vec<&String> = args
        .iter()
        .filter(|a| *a != "voice" && *a != "desktop")
        .collect();
    let run_voice = args.is_empty() || args.iter().any(|a| a == "voice");
    let run_desktop = args.is_empty() || args.iter().any(|a| a == "desktop");
    let env = prepare_with(true, args.is_empty() || !suites.is_empty() || run_desktop)?;
    if args.is_empty() || !suites.is_empty() {
        let mut cmd = build_bench(true)?;
        step("running the server benchmarks");
        cmd.args(suites);
        env.apply(&mut cmd);
        run(&mut cmd)?;
    }
    if run_desktop {
        bench_desktop(&env)?;
    }
    if run_voice {
        step("running the voice benchmark (release)");
        let mut cmd = Command::new(cargo());
        cmd.args(["run", "--release", "-p", "voice", "--example", "bench"]);
        env.apply(&mut cmd);
        run(&mut cmd)?;
    }
    Ok(())
}

/// Builds `sohbet-bench` and the `sohbet-server` it runs as separate processes (found next
/// to it), in release or in the tests' debug build; returns the command that runs it.
fn build_bench(release: bool) -> Result<Command> {
    let profile = if release { "release" } else { "debug" };
    step(&format!("building the server and sohbet-bench ({profile})"));
    let mut build = Command::new(cargo());
    build.args(["build", "-p", "sohbet-server", "-p", "sohbet-tests"]);
    build.args(["--bin", "sohbet-server", "--bin", "sohbet-bench"]);
    if release {
        build.arg("--release");
    }
    run(&mut build)?;
    Ok(Command::new(
        target_dir()?.join(profile).join("sohbet-bench"),
    ))
}

/// `cargo xtask soak [--minutes N] [--users N] [--release]`: simulated users against two
/// server instances (see `sohbet-bench soak`). The debug build by default: the soak looks
/// for lost messages and growing memory, and the release build takes long on small
/// machines.
fn soak(args: &[String]) -> Result<()> {
    let env = prepare(false)?;
    let release = args.iter().any(|a| a == "--release");
    let mut cmd = build_bench(release)?;
    step("soaking two server instances");
    cmd.arg("soak")
        .args(args.iter().filter(|a| *a != "--release"));
    env.apply(&mut cmd);
    run(&mut cmd)
}

/// The build folder cargo uses.
fn target_dir() -> Result<std::path::PathBuf> {
    Ok(match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(_) => system::repo_root()?.join("target"),
    })
}

/// The desktop app's benchmark: the real app in Xvfb, driven by a test of the test build;
/// the app it measures is the release build, what users run.
fn bench_desktop(env: &Prepared) -> Result<()> {
    let root = system::repo_root()?;
    desktop::install_ui(&root)?;
    desktop::build_ui(&root)?;
    desktop::ensure_tauri_driver()?;
    let display = desktop::display(&root)?;
    step("building the desktop app (release)");
    run(Command::new(cargo()).args(["build", "--release", "-p", "sohbet-desktop"]))?;
    step("running the desktop benchmark");
    let mut cmd = Command::new(cargo());
    if system::has_nextest() {
        cmd.args([
            "nextest",
            "run",
            "--workspace",
            "--run-ignored",
            "only",
            "--no-capture",
        ])
        .args(["-E", "package(sohbet-desktop) & binary(bench)"]);
    } else {
        cmd.args([
            "test",
            "--workspace",
            "--test",
            "bench",
            "--",
            "--ignored",
            "--nocapture",
        ]);
    }
    env.apply(&mut cmd);
    for (k, v) in display {
        cmd.env(k, v);
    }
    cmd.env(
        "SOHBET_DESKTOP_APP",
        target_dir()?.join("release").join("sohbet-desktop"),
    );
    run(&mut cmd)
}

pub fn step(what: &str) {
    eprintln!("==> {what}");
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Installs the cargo subcommand `cargo <subcommand>` from crate `krate` at exactly
/// `version` (`cargo install --locked`, with `extra` arguments) unless that version answers.
pub fn ensure_cargo_tool(
    subcommand: &str,
    krate: &str,
    version: &str,
    extra: &[&str],
) -> Result<()> {
    let installed = Command::new(cargo())
        .args([subcommand, "--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().ends_with(version))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    step(&format!(
        "installing {krate} {version} (cargo install --locked)"
    ));
    run(Command::new(cargo())
        .args([
            "install",
            krate,
            "--version",
            &format!("={version}"),
            "--locked",
        ])
        .args(extra))
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{:?} failed: {status}", cmd.get_program());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::server_url;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn up_reaches_the_server_where_it_listens() {
        assert_eq!(
            server_url(&args(&["--listen", "0.0.0.0:9000"])),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            server_url(&args(&["--listen=[::]:9001"])),
            "http://[::1]:9001"
        );
        assert_eq!(
            server_url(&args(&[
                "--listen",
                "127.0.0.1:9443",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem"
            ])),
            "https://127.0.0.1:9443"
        );
    }
}
