//! The machine: Debian packages the build and tests need, installed when missing.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::{run, step};

/// What building the server and its tests needs (see shared/STACK-NOTES.md).
const BUILD_PACKAGES: &[&str] = &[
    "pkg-config",
    "build-essential",
    "cmake",
    "libssl-dev",
    "libasound2-dev",
    // The voice engine's echo canceller links the system SpeexDSP (voice/speexdsp).
    "libspeexdsp-dev",
    "curl",
    "file",
    // The desktop app (Tauri 2 on WebKitGTK), part of the workspace build.
    "libwebkit2gtk-4.1-dev",
    "libjavascriptcoregtk-4.1-dev",
    "libsoup-3.0-dev",
    "libgtk-3-dev",
    "libayatana-appindicator3-dev",
    "librsvg2-dev",
    "libxdo-dev",
    "libdbus-1-dev",
    // The server's Debian package (`package`, and `test` after the tests): it depends on
    // systemd, its postinst runs systemd-sysusers, and systemd-analyze verifies its unit
    // (systemd need not be running).
    "systemd",
];
/// Services run by `up` and `test`.
const SERVICE_PACKAGES: &[&str] = &["redis-server"];
/// Only the tests and benchmarks: virtual sound card, test speech, a browser peer, TURN,
/// and the desktop app's virtual display and WebDriver.
const TEST_PACKAGES: &[&str] = &[
    "pipewire",
    "pipewire-pulse",
    "wireplumber",
    "pulseaudio-utils",
    "libasound2-plugins",
    "dbus",
    "espeak-ng",
    "sox",
    "python3-pip",
    // schemathesis (the generated API tests) gets a virtualenv of its own.
    "python3-venv",
    "chromium",
    // TURN relay for the calls tests (started per test on loopback).
    "coturn",
    // The desktop app's end-to-end tests: a virtual display, WebDriver, screenshots.
    "xvfb",
    "xauth",
    "webkit2gtk-driver",
    "imagemagick",
    // Key presses through the X server, for the push-to-talk global shortcut.
    "xdotool",
];

pub fn repo_root() -> Result<PathBuf> {
    // `cargo run` (the `cargo xtask` alias) sets it for the process: the checkout being run,
    // even when the binary comes from a build cache that another checkout's path compiled in
    // (cargo reuses artifacts across checkouts at different paths).
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    Ok(here
        .parent()
        .context("xtask has no parent folder")?
        .to_path_buf())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

pub fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Installs whichever of the packages are missing, with apt-get (as root).
pub fn ensure_packages(for_tests: bool) -> Result<()> {
    if !Path::new("/usr/bin/dpkg-query").exists() {
        step("not a Debian system: skipping package installation");
        return Ok(());
    }
    let mut wanted: Vec<&str> = BUILD_PACKAGES
        .iter()
        .chain(SERVICE_PACKAGES)
        .copied()
        .collect();
    if !has_command("initdb") && !Path::new("/usr/lib/postgresql").exists() {
        wanted.push("postgresql");
    }
    if for_tests {
        wanted.extend(TEST_PACKAGES);
    }
    // The browser peer of the voice interop test and the desktop UI's build run under
    // Node; machines that ship a newer Node than Debian's keep theirs.
    if !has_command("node") || !has_command("npm") {
        wanted.extend(["nodejs", "npm"]);
    }
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        step("system packages: all present");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages (install them as root): {}",
            missing.join(" ")
        );
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Extra environment for tests: set up by scripts of the parts that need more than the
/// databases. The voice engine's tests need Python and npm packages (setup-test-env.sh) and
/// a virtual sound card (virtual-audio.sh); the generated API tests need schemathesis
/// (setup-schemathesis.sh). Each prints the variables that reach the tests.
pub fn test_environment(root: &Path) -> Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (script, what) in [
        (
            "voice/scripts/setup-test-env.sh",
            "voice test tools (Python and npm packages)",
        ),
        (
            "voice/scripts/virtual-audio.sh",
            "virtual sound card (PipeWire null sink)",
        ),
        (
            "tests/scripts/setup-schemathesis.sh",
            "generated API tests (schemathesis, pinned, in .data/schemathesis)",
        ),
    ] {
        let path = root.join(script);
        if !path.exists() {
            continue;
        }
        step(&format!("setting up the {what}"));
        let out = Command::new("bash")
            .arg(&path)
            .current_dir(root)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {script}"))?;
        if !out.status.success() {
            bail!("{script} failed");
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                vars.push((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()));
            }
        }
    }
    Ok(vars)
}
