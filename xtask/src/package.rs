//! The server's Debian package (`cargo deb`; metadata in `server/Cargo.toml`, unit and
//! maintainer script in `server/debian/`), built and checked by `cargo xtask test` (after
//! the tests) and `cargo xtask package`, from the binary of the last test build
//! (`--no-build --profile dev`: no second build).
//!
//! - always: its file list and control fields (`dpkg-deb`), its maintainer script, and its
//!   systemd unit (`systemd-analyze verify`, and `security` under an exposure threshold);
//! - where the machine may be changed (`CI` or `SOHBET_TEST_DPKG=1`, as root): installed
//!   with `dpkg -i`; the `sohbet` user, the config file's owner and mode, `check-config`,
//!   and the installed binary run as `sohbet` against the test PostgreSQL and Redis until
//!   `GET /api/health` answers, through a SIGHUP (`systemctl reload`), until a SIGTERM
//!   stops it cleanly; then purged, leaving only the `sohbet` user. systemd is not
//!   PID 1 on the test machines, so the unit is verified, not started.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use crate::{queries, run, services, step, system, Prepared};

/// cargo-deb, pinned: installed with `cargo install --locked` when missing or another version
/// (about 2 minutes on 2 cores, once per machine that keeps CARGO_HOME).
const CARGO_DEB_VERSION: &str = "3.8.0";

const PACKAGE: &str = "sohbet-server";
const UNIT: &str = "usr/lib/systemd/system/sohbet-server.service";
const CONFIG: &str = "/etc/sohbet/sohbet.toml";

/// The database the installed server runs against, recreated each time.
const CHECK_DB: &str = "sohbet_package_check";

/// `systemd-analyze security` rates a unit's exposure 0–10 (×10 for `--threshold`); the unit
/// is at ~1.4. Anything above 2.0 means a hardening option went missing.
const EXPOSURE_THRESHOLD: &str = "20";

pub fn test(root: &Path, env: &Prepared) -> Result<()> {
    crate::ensure_cargo_tool("deb", "cargo-deb", CARGO_DEB_VERSION, &[])?;
    step("building the Debian package from the test build's binary (cargo deb --no-build)");
    let scratch = std::env::temp_dir().join(format!("sohbet-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let built = Command::new(crate::cargo())
        .args([
            "deb",
            "-p",
            PACKAGE,
            "--no-build",
            "--profile",
            "dev",
            "--fast",
        ])
        .arg("--output")
        .arg(&scratch)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo deb")?;
    ensure!(built.status.success(), "cargo deb failed");
    let deb = PathBuf::from(
        String::from_utf8_lossy(&built.stdout)
            .lines()
            .last()
            .context("cargo deb printed no package path")?
            .trim(),
    );
    ensure!(
        deb.exists(),
        "cargo deb said {} but wrote nothing there",
        deb.display()
    );
    check_contents(&deb, &scratch)?;
    if may_install()? {
        install_and_run(&deb, env)?;
    } else {
        step(
            "not installing the package here: SOHBET_TEST_DPKG=1 (set by .ci/run) allows it, \
             as root, on a machine it may change",
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn may_install() -> Result<bool> {
    let asked = std::env::var("SOHBET_TEST_DPKG").is_ok_and(|v| v == "1")
        || std::env::var_os("CI").is_some();
    if asked && !system::is_root() {
        bail!("SOHBET_TEST_DPKG/CI asks to install the package, which needs root");
    }
    Ok(asked)
}

/// Output of a command that must succeed.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?} failed: {}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn has_all(what: &str, text: &str, wanted: &[&str]) -> Result<()> {
    for w in wanted {
        ensure!(text.contains(w), "{what} lacks {w:?}:\n{text}");
    }
    Ok(())
}

fn check_contents(deb: &Path, scratch: &Path) -> Result<()> {
    step(&format!("checking {}", deb.display()));
    let files = output(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    has_all(
        "the package",
        &files,
        &[
            "./usr/bin/sohbet-server",
            "./etc/sohbet/sohbet.toml",
            &format!("./{UNIT}"),
            "./usr/lib/sysusers.d/sohbet-server.conf",
            "./usr/share/doc/sohbet-server/examples/sohbet.toml",
        ],
    )?;
    let fields = output(Command::new("dpkg-deb").arg("--info").arg(deb))?;
    has_all(
        "the control fields",
        &fields,
        &[
            "Package: sohbet-server",
            "libc6",
            "systemd",
            "conffiles",
            "postinst",
        ],
    )?;
    let control = scratch.join("control");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(&control))?;
    let conffiles = std::fs::read_to_string(control.join("conffiles"))?;
    ensure!(
        conffiles.lines().any(|l| l == CONFIG),
        "{CONFIG} is not a conffile: {conffiles}"
    );
    let postinst = std::fs::read_to_string(control.join("postinst"))?;
    has_all(
        "postinst",
        &postinst,
        &["systemd-sysusers sohbet-server.conf", "deb-systemd-helper"],
    )?;

    // The unit as packaged, with its ExecStart pointed at the packaged binary (systemd
    // checks that it exists).
    let unpacked = scratch.join("root");
    run(Command::new("dpkg-deb")
        .arg("--extract")
        .arg(deb)
        .arg(&unpacked))?;
    let unit = std::fs::read_to_string(unpacked.join(UNIT))?;
    let binary = unpacked.join("usr/bin/sohbet-server");
    let copy = scratch.join("sohbet-server.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/sohbet-server", &binary.display().to_string()),
    )?;
    verify_unit(&copy)
}

fn verify_unit(unit: &Path) -> Result<()> {
    run(Command::new("systemd-analyze").arg("verify").arg(unit))?;
    run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--threshold={EXPOSURE_THRESHOLD}"))
        .arg(unit)
        .stdout(Stdio::null()))
}

fn install_and_run(deb: &Path, env: &Prepared) -> Result<()> {
    step("installing the package (dpkg -i) and running the installed server");
    // A previous run that failed half-way may have left it installed.
    let _ = Command::new("dpkg")
        .args(["--purge", PACKAGE])
        .stdout(Stdio::null())
        .status();
    run(Command::new("dpkg").arg("--install").arg(deb))?;
    let ran = run_installed(env);
    let purged = run(Command::new("dpkg").args(["--purge", PACKAGE]));
    ran?;
    purged?;
    ensure!(
        !Path::new("/usr/bin/sohbet-server").exists() && !Path::new(CONFIG).exists(),
        "purging left the binary or the config file behind"
    );
    step("the package installed, ran and purged cleanly");
    Ok(())
}

fn run_installed(env: &Prepared) -> Result<()> {
    output(Command::new("id").arg("sohbet")).context("the sohbet user was not created")?;
    let owner = output(Command::new("stat").args(["-c", "%U:%G %a", CONFIG]))?;
    ensure!(
        owner.trim() == "root:sohbet 640",
        "{CONFIG} is {owner}, not root:sohbet 640"
    );
    verify_unit(&Path::new("/").join(UNIT))?;
    let checked = output(as_sohbet().args(["check-config", "--config", CONFIG]))?;
    has_all("check-config", &checked, &["listen = \"127.0.0.1:8080\""])?;

    let database_url = env.var("DATABASE_URL")?;
    let psql = services::pg_bindir()?.join("psql");
    run(Command::new(&psql)
        .arg(queries::with_database(database_url, "postgres")?)
        .args([
            "-qc",
            &format!("drop database if exists {CHECK_DB} with (force)"),
        ])
        .args(["-qc", &format!("create database {CHECK_DB}")]))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = as_sohbet()
        .args(["--config", CONFIG, "--database-url"])
        .arg(queries::with_database(database_url, CHECK_DB)?)
        .args(["--redis-url", env.var("REDIS_URL")?])
        .args(["--redis-prefix", "package-check:"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("serve")
        .spawn()
        .context("starting the installed server")?;
    // `systemctl reload` (the unit's ExecReload: SIGHUP) must leave it serving.
    let healthy = wait_healthy(port).and_then(|()| {
        signal(&server, "-HUP")?;
        std::thread::sleep(Duration::from_millis(500));
        ensure!(
            server.try_wait()?.is_none(),
            "the installed server exited on SIGHUP"
        );
        wait_healthy(port)
    });
    // setpriv became the server (exec), so this is its process: it drains and exits 0.
    let _ = signal(&server, "-TERM");
    let status = server.wait()?;
    let _ = Command::new(&psql)
        .arg(queries::with_database(database_url, "postgres")?)
        .args([
            "-qc",
            &format!("drop database if exists {CHECK_DB} with (force)"),
        ])
        .status();
    healthy?;
    ensure!(
        status.success(),
        "the installed server exited with {status} on SIGTERM"
    );
    Ok(())
}

fn signal(process: &std::process::Child, signal: &str) -> Result<()> {
    run(Command::new("kill")
        .arg(signal)
        .arg(process.id().to_string()))
}

/// The installed binary as the `sohbet` user, as the unit runs it (`setpriv` execs it, so
/// signals reach the server itself).
fn as_sohbet() -> Command {
    let mut cmd = Command::new("setpriv");
    // The environment of a systemd service, not root's (whose HOME the user cannot read).
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8");
    cmd.args([
        "--reuid=sohbet",
        "--regid=sohbet",
        "--init-groups",
        "/usr/bin/sohbet-server",
    ]);
    cmd
}

fn wait_healthy(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answered = Command::new("curl")
            .args(["-fsS", "-o", "/dev/null"])
            .arg(format!("http://127.0.0.1:{port}/api/health"))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if answered {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the installed server did not answer /api/health within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
