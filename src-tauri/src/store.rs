//! What the app keeps on disk between runs: the server address, the audio settings and the
//! notification level of each conversation (a small JSON file in the profile folder), the
//! unsent draft of each conversation (another, private to the user) and the session token
//! (the OS keyring when a Secret Service answers, else a file only the user can read). The
//! web view never sees the token, and keeps nothing in its own storage.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use protocol::GroupId;
use serde::{Deserialize, Serialize};
use voice::dsp::SendSettings;

use crate::error::CommandError;

/// The longest draft kept, in characters: four times a message's limit (4000), room to write
/// long and cut down, while a pasted file cannot bloat the file read at every start.
pub const MAX_DRAFT_CHARS: usize = 16_000;

/// Keyring service name; the account is the profile folder, so two profiles on one
/// machine (as the end-to-end tests run) keep separate sessions.
const KEYRING_SERVICE: &str = "org.sohbet.desktop";

/// Non-secret settings of a profile. Fields added later default, so an older file still
/// loads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    pub server: Option<String>,
    #[serde(default, deserialize_with = "audio_or_defaults")]
    pub audio: AudioSettings,
    /// Conversations whose level is not [`NotificationLevel::All`]; they belong to `server`.
    #[serde(default)]
    pub notifications: BTreeMap<GroupId, NotificationLevel>,
}

/// The devices and processing a call uses. The UI always sends and gets every field; in the
/// profile's file a field may be missing (a file from before it existed): it takes its
/// default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct AudioSettings {
    /// A device name from `audio_devices`; `None` is the system default.
    pub input: Option<String>,
    pub output: Option<String>,
    /// Echo cancellation against what the call plays.
    pub echo_cancellation: bool,
    /// RNNoise on the microphone.
    pub noise_suppression: bool,
    /// Automatic gain control of the microphone.
    pub auto_gain: bool,
    /// Send audio only while the push-to-talk key is held.
    pub push_to_talk: bool,
    /// The push-to-talk key as the global-shortcut plugin names it (`F8`, `Ctrl+Space`).
    pub ptt_key: String,
}

impl AudioSettings {
    /// The voice engine's send settings with these switches; the rest (gate, gain) as the
    /// engine has them by default.
    pub fn send_settings(&self) -> SendSettings {
        SendSettings {
            echo_cancellation: self.echo_cancellation,
            noise_suppression: self.noise_suppression,
            auto_gain: self.auto_gain,
            ..SendSettings::default()
        }
    }
}

impl Default for AudioSettings {
    fn default() -> Self {
        // The processing switches start as the engine's defaults, whatever it decides they are.
        let engine = SendSettings::default();
        Self {
            input: None,
            output: None,
            echo_cancellation: engine.echo_cancellation,
            noise_suppression: engine.noise_suppression,
            auto_gain: engine.auto_gain,
            push_to_talk: false,
            // A key no common app claims globally.
            ptt_key: "F8".to_owned(),
        }
    }
}

/// The audio settings of a profile's file, each field the file lacks (one written before
/// that setting existed) taken from [`AudioSettings::default`]. Kept out of the type itself:
/// a serde default there would make every field optional in the UI's generated bindings.
fn audio_or_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AudioSettings, D::Error> {
    use serde::de::Error;
    let stored = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    let mut merged = match serde_json::to_value(AudioSettings::default()) {
        Ok(serde_json::Value::Object(defaults)) => defaults,
        _ => {
            return Err(D::Error::custom(
                "the default audio settings are not an object",
            ))
        }
    };
    merged.extend(stored);
    serde_json::from_value(serde_json::Value::Object(merged)).map_err(D::Error::custom)
}

/// Which messages of a conversation notify.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum NotificationLevel {
    #[default]
    All,
    /// Only messages that mention me (`@username`) and calls.
    Mentions,
    /// Nothing, calls included.
    Muted,
}

/// One profile's folder and its token store.
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
    /// Drafts change a (debounced) keystroke at a time: their read-change-write cycles
    /// take turns so two saves in flight cannot undo each other.
    drafts_lock: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Profile {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            drafts_lock: Default::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    fn token_path(&self) -> PathBuf {
        self.dir.join("session-token")
    }

    pub fn load_config(&self) -> Config {
        read_json(&self.config_path())
    }

    /// Changes the saved settings with `change`, keeping whatever it does not touch.
    pub fn update_config(&self, change: impl FnOnce(&mut Config)) -> Result<Config, CommandError> {
        let mut config = self.load_config();
        change(&mut config);
        self.save_config(&config)?;
        Ok(config)
    }

    fn save_config(&self, config: &Config) -> Result<(), CommandError> {
        let bytes = serde_json::to_vec_pretty(config).map_err(storage)?;
        fs::create_dir_all(&self.dir).map_err(storage)?;
        fs::write(self.config_path(), bytes).map_err(storage)
    }

    fn drafts_path(&self) -> PathBuf {
        self.dir.join("drafts.json")
    }

    /// The unsent text of each conversation (none if the file is missing or unreadable).
    pub fn load_drafts(&self) -> BTreeMap<GroupId, String> {
        read_json(&self.drafts_path())
    }

    /// Keeps `text` as the draft of `group_id`; blank text drops it. Written whole and
    /// renamed into place, so a crash leaves the old drafts or the new, never half a file.
    pub fn set_draft(&self, group_id: GroupId, text: &str) -> Result<(), CommandError> {
        if group_id <= 0 {
            return Err(invalid("group_id", "No such conversation."));
        }
        if text.chars().count() > MAX_DRAFT_CHARS {
            return Err(invalid(
                "text",
                format!("A draft can hold at most {MAX_DRAFT_CHARS} characters."),
            ));
        }
        let _turn = self
            .drafts_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut drafts = self.load_drafts();
        let changed = if text.trim().is_empty() {
            drafts.remove(&group_id).is_some()
        } else {
            drafts.insert(group_id, text.to_owned()).as_deref() != Some(text)
        };
        if !changed {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&drafts).map_err(storage)?;
        fs::create_dir_all(&self.dir).map_err(storage)?;
        write_private(&self.drafts_path(), &bytes).map_err(storage)
    }

    /// Forgets every draft (they belong to the account that logs out).
    pub fn clear_drafts(&self) {
        let _turn = self
            .drafts_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = fs::remove_file(self.drafts_path());
    }

    fn keyring_entry(&self) -> Option<keyring::Entry> {
        keyring::Entry::new(KEYRING_SERVICE, &self.dir.to_string_lossy()).ok()
    }

    /// The saved token: the keyring's if it has one, else the file's.
    pub fn load_token(&self) -> Option<String> {
        if let Some(token) = self.keyring_entry().and_then(|e| e.get_password().ok()) {
            return Some(token);
        }
        fs::read_to_string(self.token_path())
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    }

    /// Keeps the token in the keyring, or, where no keyring answers, in a 0600 file.
    pub fn save_token(&self, token: &str) -> Result<TokenPlace, CommandError> {
        if let Some(entry) = self.keyring_entry() {
            match entry.set_password(token) {
                Ok(()) => {
                    let _ = fs::remove_file(self.token_path());
                    return Ok(TokenPlace::Keyring);
                }
                Err(e) => {
                    tracing::info!(error = %e, "no keyring: keeping the session in a private file")
                }
            }
        }
        fs::create_dir_all(&self.dir).map_err(storage)?;
        write_private(&self.token_path(), token.as_bytes()).map_err(storage)?;
        Ok(TokenPlace::File)
    }

    pub fn clear_token(&self) {
        if let Some(entry) = self.keyring_entry() {
            let _ = entry.delete_credential();
        }
        let _ = fs::remove_file(self.token_path());
    }
}

/// Where a token ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPlace {
    Keyring,
    File,
}

/// A JSON file's value; the default when it is missing or unreadable (a damaged file must
/// not stop the app from starting).
fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> T {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Creates (or replaces) a file readable and writable by its owner only, with the mode set
/// at creation so the secret is never briefly world-readable.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

fn invalid(field: &str, message: impl Into<String>) -> CommandError {
    let mut e = CommandError::new("validation_failed", message);
    e.field = Some(field.to_owned());
    e
}

fn storage(e: impl std::fmt::Display) -> CommandError {
    tracing::warn!(error = %e, "profile storage failed");
    CommandError::new("storage", "Could not save to the app's data folder.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_from_before_audio_and_notification_settings_still_loads() {
        let config: Config = serde_json::from_str(r#"{"server": "http://127.0.0.1:8080"}"#)
            .expect("an older config");
        assert_eq!(config.server.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(config.audio, AudioSettings::default());
        assert!(config.notifications.is_empty());
    }

    /// A profile in a fresh folder whose `config.json` is `json`, and that folder.
    fn profile_with_config(name: &str, json: &str) -> (Profile, PathBuf) {
        let dir = std::env::temp_dir().join(format!("sohbet-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("test folder");
        fs::write(dir.join("config.json"), json).expect("write config.json");
        (Profile::new(dir.clone()), dir)
    }

    #[test]
    fn audio_processing_defaults_are_the_voice_engines() {
        let engine = SendSettings::default();
        let audio = AudioSettings::default();
        assert_eq!(
            (
                audio.echo_cancellation,
                audio.noise_suppression,
                audio.auto_gain
            ),
            (
                engine.echo_cancellation,
                engine.noise_suppression,
                engine.auto_gain
            )
        );
        assert_eq!(audio.send_settings(), engine);
    }

    #[test]
    fn audio_settings_from_before_the_echo_and_gain_switches_still_load() {
        // A config.json as the app wrote it before echo cancellation and gain control were
        // settings: what it says is kept, the new switches take the engine's defaults.
        let (profile, dir) = profile_with_config(
            "old-audio",
            r#"{
  "server": "http://127.0.0.1:8080",
  "audio": {
    "input": "pulse",
    "output": null,
    "noise_suppression": false,
    "push_to_talk": true,
    "ptt_key": "Ctrl+Space"
  },
  "notifications": {}
}"#,
        );
        let audio = profile.load_config().audio;
        let engine = SendSettings::default();
        assert_eq!(
            audio,
            AudioSettings {
                input: Some("pulse".into()),
                output: None,
                echo_cancellation: engine.echo_cancellation,
                noise_suppression: false,
                auto_gain: engine.auto_gain,
                push_to_talk: true,
                ptt_key: "Ctrl+Space".into(),
            }
        );
        // Saving writes the new switches, and they come back as saved.
        profile
            .update_config(|c| {
                c.audio.echo_cancellation = !engine.echo_cancellation;
                c.audio.auto_gain = !engine.auto_gain;
            })
            .expect("save");
        let again = profile.load_config().audio;
        assert_eq!(
            (
                again.echo_cancellation,
                again.auto_gain,
                again.noise_suppression
            ),
            (!engine.echo_cancellation, !engine.auto_gain, false)
        );
        assert_eq!(
            again.send_settings(),
            SendSettings {
                echo_cancellation: !engine.echo_cancellation,
                noise_suppression: false,
                auto_gain: !engine.auto_gain,
                ..engine
            }
        );
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn audio_settings_of_the_wrong_type_fall_back_to_the_defaults() {
        // A hand-edited file with a switch that is not a boolean does not stop the start.
        let (profile, dir) = profile_with_config(
            "bad-audio",
            r#"{"server": "http://a", "audio": {"echo_cancellation": "yes"}}"#,
        );
        let config = profile.load_config();
        assert_eq!(config.audio, AudioSettings::default());
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn settings_changes_keep_what_they_do_not_touch() {
        let dir = std::env::temp_dir().join(format!("sohbet-config-{}", std::process::id()));
        let profile = Profile::new(dir.clone());
        profile
            .update_config(|c| c.server = Some("http://a".into()))
            .expect("save the server");
        profile
            .update_config(|c| {
                c.notifications.insert(7, NotificationLevel::Muted);
                c.audio.input = Some("pulse".into());
            })
            .expect("save the settings");
        let config = profile.load_config();
        assert_eq!(config.server.as_deref(), Some("http://a"));
        assert_eq!(
            config.notifications.get(&7),
            Some(&NotificationLevel::Muted)
        );
        assert_eq!(config.audio.input.as_deref(), Some("pulse"));
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn drafts_are_kept_per_conversation_and_blank_ones_dropped() {
        let dir = std::env::temp_dir().join(format!("sohbet-drafts-{}", std::process::id()));
        let profile = Profile::new(dir.clone());
        profile.set_draft(1, "half a thought").expect("save");
        profile.set_draft(2, "line one\nline two").expect("save");
        profile.set_draft(1, "a whole thought").expect("replace");
        // Another handle on the same folder, as after a restart.
        let again = Profile::new(dir.clone());
        let drafts = again.load_drafts();
        assert_eq!(drafts.get(&1).map(String::as_str), Some("a whole thought"));
        assert_eq!(
            drafts.get(&2).map(String::as_str),
            Some("line one\nline two")
        );
        again.set_draft(2, "  \n").expect("blank drops it");
        assert!(!again.load_drafts().contains_key(&2));
        again.clear_drafts();
        assert!(again.load_drafts().is_empty());
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn bad_drafts_are_refused_and_change_nothing() {
        let dir = std::env::temp_dir().join(format!("sohbet-bad-drafts-{}", std::process::id()));
        let profile = Profile::new(dir.clone());
        profile.set_draft(3, "kept").expect("save");
        let too_long = "é".repeat(MAX_DRAFT_CHARS + 1);
        let e = profile.set_draft(3, &too_long).expect_err("too long");
        assert_eq!(
            (e.code.as_str(), e.field.as_deref()),
            ("validation_failed", Some("text"))
        );
        let e = profile.set_draft(0, "x").expect_err("no such group");
        assert_eq!(e.field.as_deref(), Some("group_id"));
        assert_eq!(
            profile.load_drafts().get(&3).map(String::as_str),
            Some("kept")
        );
        profile
            .set_draft(3, &"é".repeat(MAX_DRAFT_CHARS))
            .expect("at the limit");
        // A damaged file reads as no drafts rather than failing the start.
        fs::write(dir.join("drafts.json"), b"{not json").expect("damage it");
        assert!(profile.load_drafts().is_empty());
        profile.set_draft(3, "again").expect("a save replaces it");
        assert_eq!(
            profile.load_drafts().get(&3).map(String::as_str),
            Some("again")
        );
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn token_file_is_private_to_its_owner() {
        let dir = std::env::temp_dir().join(format!("sohbet-store-{}", std::process::id()));
        let path = dir.join("t");
        fs::create_dir_all(&dir).expect("test folder");
        write_private(&path, b"secret").expect("write the file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(fs::read_to_string(&path).expect("read back"), "secret");
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
