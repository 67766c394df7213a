//! The `sohbet-server` command line: the settings (flags, environment, `--config` file) and
//! the subcommands `serve` (the default), `migrate`, `check-config` and `user …`.
//!
//! [`Cli::load`] assembles the settings (file < environment < flags, see
//! [`crate::config::file`]); [`Cli::run`] does what was asked.

pub mod user;

use std::{ffi::OsString, path::PathBuf};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{
    file::{self, ConfigError},
    Settings,
};

#[derive(Debug, Parser)]
#[command(
    name = "sohbet-server",
    version,
    about = "Sohbet chat server",
    long_about = "Sohbet chat server. Every setting is a flag, an environment variable and a key \
                  of the --config file (its name in snake case); flags beat the environment, \
                  which beats the file."
)]
pub struct Cli {
    /// A TOML file of settings, keyed by their names in snake case (`listen = "0.0.0.0:8080"`);
    /// see `sohbet.example.toml`.
    #[arg(long, env = "SOHBET_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub settings: Settings,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default). Applies pending migrations first unless --no-migrate.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Check the configuration and the secrets it names, print the effective settings
    /// (secrets hidden) and exit.
    CheckConfig,
    /// Manage accounts without touching SQL.
    #[command(subcommand)]
    User(user::UserCommand),
}

#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Do not apply pending migrations at start (run `sohbet-server migrate` beforehand).
    #[arg(long)]
    pub no_migrate: bool,
}

/// Why the command line could not be turned into a [`Cli`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Bad usage, or `--help` / `--version` (clap prints those and picks the exit code).
    #[error(transparent)]
    Usage(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl LoadError {
    /// Prints the error (or the help) and exits: 0 for `--help`/`--version`, 2 otherwise.
    pub fn exit(self) -> ! {
        match self {
            Self::Usage(e) => e.exit(),
            Self::Config(e) => {
                eprintln!("error: {e}");
                std::process::exit(2)
            }
        }
    }
}

/// Settings every command needs.
const REQUIRED: &[&str] = &["database_url", "redis_url"];

impl Cli {
    /// The command with every setting accepted before or after the subcommand
    /// (`sohbet-server --config x migrate` and `sohbet-server migrate --config x`).
    pub fn command_with_globals() -> clap::Command {
        <Self as CommandFactory>::command().mut_args(|arg| {
            if arg.get_long().is_some() {
                arg.global(true)
            } else {
                arg
            }
        })
    }

    /// Parses `args` (the program name first), layering the config file under the
    /// environment and flags, and reads the secrets given as files.
    pub fn load<I, T>(args: I) -> Result<Self, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let cmd = Self::command_with_globals();
        let mut matches = cmd.clone().try_get_matches_from(&args)?;
        if let Some(path) = matches.get_one::<PathBuf>("config").cloned() {
            let from_file = file::as_flags(&path, &cmd, &matches)?;
            // Right after the program name: settings are global, so they go before any
            // subcommand and its positional arguments.
            let at = 1.min(args.len());
            args.splice(at..at, from_file);
            matches = cmd.clone().try_get_matches_from(&args)?;
        }
        file::require(&cmd, &matches, REQUIRED)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.settings.read_secret_files()?;
        // Only what serves reads the certificate: the admin commands must work for a user
        // who may not read the private key.
        if matches!(
            cli.command,
            None | Some(Command::Serve(_) | Command::CheckConfig)
        ) {
            cli.settings.load_tls()?;
        }
        Ok(cli)
    }

    /// Does what the command line asked.
    pub async fn run(self) -> anyhow::Result<()> {
        let settings = self.settings;
        match self.command.unwrap_or(Command::Serve(ServeArgs::default())) {
            Command::Serve(args) => crate::serve_settings(settings, !args.no_migrate).await,
            Command::Migrate => {
                crate::migrate(&settings).await?;
                println!("migrations applied");
                Ok(())
            }
            Command::CheckConfig => {
                settings.pg_connect_options()?;
                settings.pg_read_connect_options()?;
                crate::redis_conn::RedisTarget::parse(settings.redis_url.expose())
                    .map_err(|e| anyhow::anyhow!("redis_url: {e}"))?;
                // The settings as a config file would give them (secrets as `***`).
                print!(
                    "{}",
                    toml::to_string(&settings).context("printing the settings")?
                );
                eprintln!("configuration ok");
                Ok(())
            }
            Command::User(cmd) => user::run(settings, cmd).await,
        }
    }
}
