//! The desktop app's part of the set-up: the UI's npm packages, its unit tests and build,
//! `tauri-driver` for the end-to-end tests, and a virtual X display (Xvfb) to run the app
//! in when there is no screen.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{run, step, system};

/// `npm ci` when `node_modules` is missing or older than the lock file.
pub fn install_ui(root: &Path) -> Result<()> {
    let ui = root.join("ui");
    let lock = ui.join("package-lock.json");
    let installed = ui.join("node_modules").join(".package-lock.json");
    let fresh = match (fs::metadata(&lock), fs::metadata(&installed)) {
        (Ok(l), Ok(i)) => i.modified()? >= l.modified()?,
        _ => false,
    };
    if fresh {
        step("UI: npm packages up to date");
        return Ok(());
    }
    step("UI: npm ci");
    run(npm(&ui)
        .args(["ci", "--no-audit", "--no-fund"])
        .stdout(Stdio::null()))
}

/// The UI's type check (svelte-check: TypeScript and Svelte, the generated bindings
/// included) and its unit and component tests (Vitest).
pub fn test_ui(root: &Path) -> Result<()> {
    step("UI: type check (svelte-check)");
    run(npm(&root.join("ui")).args(["run", "check", "--", "--fail-on-warnings"]))?;
    step("UI: unit tests (vitest)");
    run(npm(&root.join("ui")).args(["test"]))
}

/// Builds `ui/dist`, which the desktop binary embeds when it is compiled.
pub fn build_ui(root: &Path) -> Result<()> {
    step("UI: vite build");
    run(npm(&root.join("ui")).args(["run", "build", "--", "--logLevel", "warn"]))
}

fn npm(dir: &Path) -> Command {
    let mut cmd = Command::new("npm");
    cmd.current_dir(dir);
    cmd
}

/// The app binary `app` (the release build, as users run it: the bench and the bundle
/// reuse that build) started in the background, preset to `server`. Stops when `up` ends.
pub fn launch_app(app: &Path, server: &str) -> Result<Stopped> {
    let child = Command::new(app)
        .env("SOHBET_SERVER", server)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the desktop app")?;
    Ok(Stopped(child))
}

/// A child process that is stopped when this is dropped (when `up` ends or fails).
pub struct Stopped(pub std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts connections at `url`'s host and port (the server, once
/// built and started), or fails if `server` exits first.
pub fn wait_until_listening(url: &str, server: &mut std::process::Child) -> Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    step(&format!("waiting for the server to answer on {authority}"));
    loop {
        let addrs: Vec<_> = authority
            .to_socket_addrs()
            .with_context(|| format!("server address {authority}"))?
            .collect();
        if addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, Duration::from_millis(500)).is_ok())
        {
            return Ok(());
        }
        if let Some(status) = server.try_wait()? {
            bail!("sohbet-server exited before answering: {status}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `tauri-driver` (the WebDriver bridge to WebKitWebDriver), installed with cargo when
/// missing (~1 min).
pub fn ensure_tauri_driver() -> Result<()> {
    if system::has_command("tauri-driver") || cargo_bin("tauri-driver").exists() {
        step("tauri-driver: present");
        return Ok(());
    }
    step("installing tauri-driver (cargo install --locked)");
    run(Command::new(crate::cargo()).args([
        "install",
        "tauri-driver",
        "--version",
        "^2",
        "--locked",
    ]))
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    home.join("bin").join(name)
}

/// The X display for the app: the session's own if it has one, else a private Xvfb on
/// `SOHBET_DISPLAY` (default `:99`). Returns the variables that reach it.
pub fn display(root: &Path) -> Result<Vec<(String, String)>> {
    if let Ok(d) = std::env::var("DISPLAY") {
        if !d.is_empty() && std::env::var("SOHBET_DISPLAY").is_err() {
            step(&format!("display: using DISPLAY={d}"));
            return Ok(vec![("DISPLAY".into(), d)]);
        }
    }
    let display = std::env::var("SOHBET_DISPLAY").unwrap_or_else(|_| ":99".into());
    let number = display.trim_start_matches(':').to_owned();
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
    let pidfile = xvfb_pidfile(root, &number);
    if socket.exists() && pid_alive(&pidfile) {
        step(&format!("Xvfb: already running on {display}"));
        return Ok(vec![("DISPLAY".into(), display)]);
    }
    if !system::has_command("Xvfb") {
        bail!("Xvfb is not installed (Debian package xvfb)");
    }
    step(&format!("Xvfb: starting on {display}"));
    let _ = fs::remove_file(format!("/tmp/.X{number}-lock"));
    let _ = fs::remove_file(&socket);
    fs::create_dir_all(pidfile.parent().context("pid file folder")?)?;
    let log = fs::File::create(root.join(".data").join(format!("xvfb-{number}.log")))?;
    let child = Command::new("Xvfb")
        .arg(&display)
        .args(["-screen", "0", "1280x800x24", "-nolisten", "tcp", "-ac"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting Xvfb")?;
    fs::write(&pidfile, child.id().to_string())?;
    let started = Instant::now();
    while !socket.exists() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("Xvfb did not come up on {display}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(vec![("DISPLAY".into(), display)])
}

fn xvfb_pidfile(root: &Path, number: &str) -> PathBuf {
    root.join(".data").join(format!("xvfb-{number}.pid"))
}

fn pid_alive(pidfile: &Path) -> bool {
    fs::read_to_string(pidfile)
        .ok()
        .map(|pid| Path::new("/proc").join(pid.trim()).exists())
        .unwrap_or(false)
}

/// Stops the Xvfb this set-up started, if any.
pub fn stop_display(root: &Path) {
    let display = std::env::var("SOHBET_DISPLAY").unwrap_or_else(|_| ":99".into());
    let number = display.trim_start_matches(':');
    let pidfile = xvfb_pidfile(root, number);
    if let Ok(pid) = fs::read_to_string(&pidfile) {
        if pid_alive(&pidfile) {
            step(&format!("Xvfb: stopping {display}"));
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = fs::remove_file(pidfile);
    }
}
