//! The config file layer: a TOML table whose keys are the settings' names (`listen`,
//! `session_ttl_secs`, `stun_urls = ["stun:…"]`, …).
//!
//! Each setting in the file that neither a flag nor an environment variable set is handed to
//! clap as a flag, so a value from the file is parsed and validated exactly like one typed on
//! the command line, and the precedence file < environment < flags falls out of clap's own
//! (environment < flags). An unknown key, or a value clap refuses, is an error naming the key.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use clap::{parser::ValueSource, Arg, ArgMatches, Command};

use super::Secret;

/// What can be wrong with the configuration, each naming the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: unknown setting `{key}` (`sohbet-server --help` lists them)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("{path}: invalid value for `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("missing setting `{key}`: give --{flag}, the environment variable {env}, or `{key}` in the config file")]
    Missing {
        key: String,
        flag: String,
        env: String,
    },
    #[error("cannot read `{key}` from {path}: {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{key}`: the file {path} is empty")]
    EmptySecret { key: &'static str, path: PathBuf },
    #[error("set `{0}` or `{1}`, not both")]
    Conflict(&'static str, &'static str),
    #[error("set both `{0}` and `{1}`, or neither")]
    Together(&'static str, &'static str),
    #[error("`tls_cert` / `tls_key`: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The settings in the file at `path` that neither a flag nor the environment set, as flags
/// for `cmd` (`--session-ttl-secs=60`), each checked against its argument.
pub fn as_flags(
    path: &Path,
    cmd: &Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let arg = setting(cmd, key).ok_or_else(|| ConfigError::UnknownKey {
            path: path.to_owned(),
            key: key.clone(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.clone(),
            message,
        };
        let long = arg.get_long().unwrap_or(key);
        let these = if arg.get_action().takes_values() {
            let multiple = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
                || matches!(arg.get_action(), clap::ArgAction::Append);
            let values = match value {
                toml::Value::Array(items) if multiple => items
                    .iter()
                    .map(scalar)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?,
                toml::Value::Array(_) => {
                    return Err(invalid("expected one value, not a list".into()))
                }
                other => vec![scalar(other).map_err(invalid)?],
            };
            values
                .into_iter()
                .map(|v| OsString::from(format!("--{long}={v}")))
                .collect()
        } else {
            match value {
                toml::Value::Boolean(true) => vec![OsString::from(format!("--{long}"))],
                toml::Value::Boolean(false) => Vec::new(),
                _ => return Err(invalid("expected true or false".into())),
            }
        };
        check(arg, &these).map_err(invalid)?;
        let set_above = matches!(
            matches.value_source(key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !set_above {
            flags.extend(these);
        }
    }
    Ok(flags)
}

/// Fails with the setting's name, flag and variable unless one of `keys` got a value.
pub fn require(cmd: &Command, matches: &ArgMatches, keys: &[&str]) -> Result<(), ConfigError> {
    for key in keys {
        if matches.value_source(key).is_none() {
            let arg = setting(cmd, key);
            return Err(ConfigError::Missing {
                key: (*key).to_owned(),
                flag: arg.and_then(Arg::get_long).unwrap_or(key).to_owned(),
                env: arg
                    .and_then(Arg::get_env)
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// Reads a secret from a file: its content without the trailing newline.
pub fn read_secret(key: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key,
        path: path.to_owned(),
        source,
    })?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(ConfigError::EmptySecret {
            key,
            path: path.to_owned(),
        });
    }
    Ok(Secret(secret.to_owned()))
}

/// The names a config file may use: every setting but the file's own path.
pub fn settings(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| a.get_id() != "config" && a.get_long().is_some())
}

fn setting<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    settings(cmd).find(|a| a.get_id() == key)
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(_) => Err("expected a value, found a list".into()),
        toml::Value::Table(_) => Err("expected a value, found a table".into()),
    }
}

/// Parses `flags` with `arg` alone, so a bad value is reported against its key.
fn check(arg: &Arg, flags: &[OsString]) -> Result<(), String> {
    Command::new("sohbet-server")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(arg.clone().env(None::<&str>).required(false).global(false))
        .try_get_matches_from(flags)
        .map(drop)
        .map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        })
}
