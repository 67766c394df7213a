//! Private PostgreSQL and Redis for development and tests, under the repository's `.data/`
//! folder, on their own loopback ports so they never touch a system-wide install.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::{run, step, system};

/// Ports away from the defaults (5432, 6379) so a system PostgreSQL or Redis can coexist.
const PG_PORT: u16 = 55432;
const REDIS_PORT: u16 = 56379;
const DB_NAME: &str = "sohbet";

fn port(var: &str, default: u16) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts whatever is not given through `DATABASE_URL` / `REDIS_URL` and returns both URLs.
pub fn ensure(root: &Path, for_tests: bool) -> Result<Vec<(String, String)>> {
    let data = root.join(".data");
    fs::create_dir_all(&data)?;
    let database_url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            step("PostgreSQL: using DATABASE_URL from the environment");
            url
        }
        _ => postgres(&data, port("SOHBET_PG_PORT", PG_PORT), for_tests)?,
    };
    let redis_url = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            step("Redis: using REDIS_URL from the environment");
            url
        }
        _ => redis(&data, port("SOHBET_REDIS_PORT", REDIS_PORT))?,
    };
    Ok(vec![
        ("DATABASE_URL".into(), database_url),
        ("REDIS_URL".into(), redis_url),
    ])
}

pub fn pg_bindir() -> Result<PathBuf> {
    if system::has_command("initdb") && system::has_command("pg_ctl") {
        let out = Command::new("sh")
            // Through symlinks (e.g. /usr/local/bin/pg_ctl), to the folder that also holds
            // the server's psql.
            .args(["-c", "dirname \"$(readlink -f \"$(command -v pg_ctl)\")\""])
            .output()?;
        return Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (no initdb on PATH, no /usr/lib/postgresql)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no PostgreSQL server binaries under /usr/lib/postgresql")
}

/// initdb refuses to run as root: as root, the cluster belongs to the `postgres` user.
fn as_pg_user(root: bool, program: &Path) -> Command {
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn postgres(data: &Path, port: u16, for_tests: bool) -> Result<String> {
    let url = format!("postgres://postgres@127.0.0.1:{port}/{DB_NAME}");
    let bin = pg_bindir()?;
    let root = system::is_root();
    if root {
        ensure_postgres_user()?;
    }
    let mut cluster = data.join("pg");
    if root && !pg_user_can_enter(data)? {
        // The checkout sits under a folder the postgres user cannot enter (e.g. /root).
        cluster = PathBuf::from(format!("/var/tmp/sohbet-pg-{port}"));
        step(&format!(
            "PostgreSQL: the repository is not reachable by user postgres; cluster at {}",
            cluster.display()
        ));
    }
    let sockets = cluster.with_extension("run");
    if !cluster.join("PG_VERSION").exists() {
        step(&format!("PostgreSQL: initdb into {}", cluster.display()));
        fs::create_dir_all(&cluster)?;
        fs::create_dir_all(&sockets)?;
        if root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster)
                .arg(&sockets))?;
        }
        run(as_pg_user(root, &bin.join("initdb"))
            .args(["-D"])
            .arg(&cluster)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .stdout(Stdio::null()))?;
    }
    let running = as_pg_user(root, &bin.join("pg_ctl"))
        .arg("status")
        .arg("-D")
        .arg(&cluster)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if running {
        step(&format!("PostgreSQL: already running on 127.0.0.1:{port}"));
    } else {
        if port_taken(port) {
            // pg_ctl would only say the server did not start; say why.
            bail!(
                "PostgreSQL: 127.0.0.1:{port} is taken by something other than this checkout's \
                 cluster ({}): another checkout's `cargo xtask` left its PostgreSQL running \
                 (`cargo xtask stop` there stops it), or set SOHBET_PG_PORT to a free port",
                cluster.display()
            );
        }
        step(&format!("PostgreSQL: starting on 127.0.0.1:{port}"));
        fs::create_dir_all(&sockets)?;
        if root {
            run(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&sockets))?;
        }
        // Tests create a database each and run in parallel: allow plenty of connections.
        // Durability is traded for speed only for throwaway test clusters.
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=256MB",
            sockets.display()
        );
        if for_tests {
            opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        run(as_pg_user(root, &bin.join("pg_ctl"))
            .arg("-D")
            .arg(&cluster)
            .arg("-l")
            .arg(cluster.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .stdout(Stdio::null()))?;
    }
    let psql = if bin.join("psql").exists() {
        bin.join("psql")
    } else {
        PathBuf::from("psql")
    };
    let exists = Command::new(&psql)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
        ])
        .arg(format!(
            "select 1 from pg_database where datname = '{DB_NAME}'"
        ))
        .output()
        .context("running psql")?;
    if !String::from_utf8_lossy(&exists.stdout).contains('1') {
        step(&format!("PostgreSQL: creating database {DB_NAME}"));
        run(Command::new(&psql)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
            ])
            .arg(format!("create database {DB_NAME}")))?;
    }
    Ok(url)
}

/// Whether something already listens on `127.0.0.1:port`.
fn port_taken(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_millis(500),
    )
    .is_ok()
}

fn ensure_postgres_user() -> Result<()> {
    let exists = Command::new("id")
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !exists.success() {
        step("creating system user postgres");
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "postgres",
        ]))?;
    }
    Ok(())
}

fn pg_user_can_enter(dir: &Path) -> Result<bool> {
    Ok(Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .status()?
        .success())
}

fn redis(data: &Path, port: u16) -> Result<String> {
    let url = format!("redis://127.0.0.1:{port}/");
    let alive = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
        .unwrap_or(false);
    if alive {
        step(&format!("Redis: already running on 127.0.0.1:{port}"));
        return Ok(url);
    }
    if !system::has_command("redis-server") {
        bail!("redis-server is not installed");
    }
    step(&format!("Redis: starting on 127.0.0.1:{port}"));
    let dir = data.join("redis");
    fs::create_dir_all(&dir)?;
    run(Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "yes", "--dir"])
        .arg(&dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .arg("--pidfile")
        .arg(dir.join("redis.pid")))?;
    for _ in 0..50 {
        let ok = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
            .unwrap_or(false);
        if ok {
            return Ok(url);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bail!(
        "Redis did not come up on port {port}; see {}",
        dir.join("redis.log").display()
    )
}

pub fn stop(root: &Path) -> Result<()> {
    let data = root.join(".data");
    let pg_port = port("SOHBET_PG_PORT", PG_PORT);
    let bin = pg_bindir()?;
    for cluster in [
        data.join("pg"),
        PathBuf::from(format!("/var/tmp/sohbet-pg-{pg_port}")),
    ] {
        if cluster.join("PG_VERSION").exists() {
            step(&format!("PostgreSQL: stopping {}", cluster.display()));
            let _ = as_pg_user(system::is_root(), &bin.join("pg_ctl"))
                .arg("-D")
                .arg(&cluster)
                .args(["-m", "fast", "stop"])
                .status();
        }
    }
    step("Redis: stopping");
    let _ = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port("SOHBET_REDIS_PORT", REDIS_PORT).to_string(),
            "shutdown",
            "nosave",
        ])
        .status();
    Ok(())
}
