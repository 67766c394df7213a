//! `sohbet-server user …`: account administration through the domain layer, so an account
//! made here obeys the same rules as one registered over the API.

use std::{
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{anyhow, Context};
use clap::Subcommand;

use crate::{
    config::Settings,
    domain::{
        accounts::{self, Registration},
        admin, DisplayName, Email, Password, Username,
    },
    error::ApiError,
};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from --password-file, or else from the first
    /// line of standard input.
    Create {
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        display_name: Option<String>,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Set a new password (read like `create`'s) and end every session of the account.
    ResetPassword {
        username: String,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Disable an account: its sessions end at once and it cannot log in.
    Disable { username: String },
    /// Enable a disabled account again.
    Enable { username: String },
    /// List every account: id, username, email, created, status.
    List,
}

pub async fn run(settings: Settings, cmd: UserCommand) -> anyhow::Result<()> {
    // Every input is checked before connecting, so a typo fails fast and changes nothing.
    let connect = || crate::build_state_with(settings.clone(), false);
    let disable = matches!(cmd, UserCommand::Disable { .. });
    match cmd {
        UserCommand::Create {
            username,
            email,
            display_name,
            password_file,
        } => {
            let registration = Registration {
                username: Username::parse(&username).map_err(explain)?,
                email: Email::parse(&email).map_err(explain)?,
                display_name: display_name
                    .as_deref()
                    .map(DisplayName::parse)
                    .transpose()
                    .map_err(explain)?,
                password: read_password(password_file)?,
            };
            let state = connect().await?;
            let user = accounts::register(&state, registration)
                .await
                .map_err(explain)?;
            println!("created user {} ({})", user.username, user.user_id);
        }
        UserCommand::ResetPassword {
            username,
            password_file,
        } => {
            let username = Username::parse(&username).map_err(explain)?;
            let password = read_password(password_file)?;
            let state = connect().await?;
            admin::reset_password(&state, &username, &password)
                .await
                .map_err(explain)?;
            println!(
                "password of {} reset; its sessions ended",
                username.as_str()
            );
        }
        UserCommand::Disable { username } | UserCommand::Enable { username } => {
            let username = Username::parse(&username).map_err(explain)?;
            let state = connect().await?;
            admin::set_disabled(&state, &username, disable)
                .await
                .map_err(explain)?;
            if disable {
                println!("{} disabled; its sessions ended", username.as_str());
            } else {
                println!("{} enabled", username.as_str());
            }
        }
        UserCommand::List => {
            let state = connect().await?;
            let accounts = admin::list(&state.db).await.map_err(explain)?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>8}  {:<32}  {:<40}  {:<20}  status",
                "user_id", "username", "email", "created_at"
            )?;
            for a in accounts {
                let status = if a.disabled_at.is_some() {
                    "disabled"
                } else {
                    "active"
                };
                writeln!(
                    out,
                    "{:>8}  {:<32}  {:<40}  {:<20}  {status}",
                    a.user_id,
                    a.username,
                    a.email,
                    a.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                )?;
            }
        }
    }
    Ok(())
}

/// The error as an operator reads it: which value is wrong and why, or the cause chain.
fn explain(e: impl Into<ApiError>) -> anyhow::Error {
    match e.into() {
        ApiError::Validation { field, message } => anyhow!("{field}: {message}"),
        ApiError::Internal(cause) => cause,
        other => anyhow!("{other}"),
    }
}

/// The password from the first line of `file`, or of standard input (never from the
/// command line, where other users of the machine could read it in the process list).
fn read_password(file: Option<PathBuf>) -> anyhow::Result<Password> {
    let line = match file {
        Some(path) => std::fs::read_to_string(&path)
            .with_context(|| format!("reading the password from {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("password: ");
                std::io::stderr().flush()?;
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    Password::parse(line).map_err(explain)
}
