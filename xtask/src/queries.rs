//! The offline query data under `.sqlx/`: what lets the server build without a database.
//!
//! Every SQL query of the server is a `sqlx::query!`-family macro, checked against the
//! schema when compiled. A build reads the schema facts from `.sqlx/` (`SQLX_OFFLINE=true`
//! in `.cargo/config.toml`), so those files must match the migrations and the queries:
//! `cargo xtask test` fails when they are stale, and `cargo xtask prepare` rewrites them.
//! Both use sqlx-cli at the workspace's own sqlx version against a database migrated from
//! scratch, never the development database.

use std::{path::Path, process::Command};

use anyhow::{Context, Result};

use crate::{run, step};

/// The database the query data is checked against, recreated from the migrations each time.
const CHECK_DB: &str = "sohbet_offline_queries";

/// The packages whose code holds query macros (`cargo check` of only these keeps the check
/// from building the desktop app and the voice engine).
const PACKAGES: &[&str] = &["sohbet-server"];

/// Fails when `.sqlx/` does not match the queries and the migrations.
pub fn check(root: &Path, database_url: &str) -> Result<()> {
    step("checking the offline query data (.sqlx/) against the migrations");
    sqlx(root, database_url, &["prepare", "--check"])
}

/// Rewrites `.sqlx/` from the queries and the migrations.
pub fn prepare(root: &Path, database_url: &str) -> Result<()> {
    step("writing the offline query data (.sqlx/)");
    sqlx(root, database_url, &["prepare"])
}

fn sqlx(root: &Path, database_url: &str, prepare: &[&str]) -> Result<()> {
    ensure_cli(root)?;
    let url = check_database_url(database_url)?;
    run(Command::new(crate::cargo())
        .args(["sqlx", "database", "reset", "-y", "--source", "migrations"])
        .current_dir(root)
        .env("DATABASE_URL", &url))?;
    let mut cmd = Command::new(crate::cargo());
    cmd.arg("sqlx")
        .args(prepare)
        .args(["--workspace", "--"])
        .current_dir(root)
        .env("DATABASE_URL", &url);
    for package in PACKAGES {
        cmd.args(["-p", package]);
    }
    run(&mut cmd)
}

/// `database_url` with its database name replaced by [`CHECK_DB`].
fn check_database_url(database_url: &str) -> Result<String> {
    with_database(database_url, CHECK_DB)
}

/// `database_url` with its database name replaced by `db`.
pub fn with_database(database_url: &str, db: &str) -> Result<String> {
    let (base, query) = database_url
        .split_once('?')
        .map_or((database_url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("//"))
        .context("DATABASE_URL has no database name")?;
    Ok(match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    })
}

/// The sqlx version the workspace builds with, from Cargo.lock.
fn workspace_sqlx_version(root: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"sqlx\"" {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
            {
                return Ok(version.to_owned());
            }
        }
    }
    anyhow::bail!("no sqlx in Cargo.lock")
}

/// sqlx-cli at the workspace's sqlx version, installed with cargo when missing or another
/// version: PostgreSQL and rustls only (about 4 minutes on 2 busy cores; once per machine
/// when CARGO_HOME is kept).
fn ensure_cli(root: &Path) -> Result<()> {
    let version = workspace_sqlx_version(root)?;
    crate::ensure_cargo_tool(
        "sqlx",
        "sqlx-cli",
        &version,
        &["--no-default-features", "--features", "rustls,postgres"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_database_replaces_only_the_database_name() {
        assert_eq!(
            check_database_url("postgres://postgres@127.0.0.1:5432/sohbet").ok(),
            Some(format!("postgres://postgres@127.0.0.1:5432/{CHECK_DB}"))
        );
        assert_eq!(
            check_database_url("postgres://u:p@db/sohbet?sslmode=require").ok(),
            Some(format!("postgres://u:p@db/{CHECK_DB}?sslmode=require"))
        );
        assert!(check_database_url("postgres://127.0.0.1:5432").is_err());
    }
}
