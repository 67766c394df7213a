//! Voice calls: join, ring, answer, decline and leave, the controls of the call in progress,
//! the audio devices and the missed calls. Each is a thin call into `sohbet-client`'s calls
//! API; the call's events reach the UI as [`AppEvent::Call`].

use std::sync::atomic::{AtomicU64, Ordering};

use protocol::{voice::MissedCalls, GroupId, UserId};
use serde::Serialize;
use sohbet_client::calls::{CallEvent, CallOptions};
use tauri::{AppHandle, Manager, State};
use voice::{
    audio::{
        device::{self, CpalCapture, CpalPlayout},
        Capture, Playout,
    },
    CallConfig,
};

use crate::{
    error::{CommandError, CommandResult},
    events::{self, AppEvent},
    state::{ActiveCall, AppState},
    store::AudioSettings,
};

/// Highest per-user volume the engine takes (linear gain: 4 is +12 dB).
const MAX_VOLUME: f32 = 4.0;

/// Numbers the calls of this run, so a finished call's events do not clear a newer one.
static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// The sound devices the system offers, by the names the settings keep.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct AudioDevices {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

#[tauri::command]
#[specta::specta]
pub async fn audio_devices() -> CommandResult<AudioDevices> {
    // cpal enumerates by opening ALSA handles: blocking, and slow with many devices.
    tokio::task::spawn_blocking(|| AudioDevices {
        inputs: device::input_devices(),
        outputs: device::output_devices(),
    })
    .await
    .map_err(|_| CommandError::new("device", "Could not list the sound devices."))
}

fn device_error(which: &str, name: Option<&str>, e: voice::VoiceError) -> CommandError {
    tracing::warn!(error = %e, which, "opening a sound device");
    let name = name.map_or_else(|| "the default one".to_owned(), |n| format!("\"{n}\""));
    let mut err = CommandError::new(
        "device",
        format!("Could not open the {which} device {name}. Pick another in Settings."),
    );
    err.field = Some(which.to_owned());
    err
}

/// Opens the microphone and speaker the settings name (blocking: ALSA opens synchronously).
async fn open_devices(
    settings: &AudioSettings,
) -> CommandResult<(Box<dyn Capture>, Box<dyn Playout>)> {
    let (input, output) = (settings.input.clone(), settings.output.clone());
    tokio::task::spawn_blocking(move || {
        let capture = CpalCapture::open(input.as_deref())
            .map_err(|e| device_error("input", input.as_deref(), e))?;
        let playout = CpalPlayout::open(output.as_deref())
            .map_err(|e| device_error("output", output.as_deref(), e))?;
        Ok((
            Box::new(capture) as Box<dyn Capture>,
            Box::new(playout) as Box<dyn Playout>,
        ))
    })
    .await
    .map_err(|_| CommandError::new("device", "Opening the sound devices failed."))?
}

/// Joins the call of a group or DM on the devices of the audio settings, leaving any call I
/// am in. In a DM whose call is empty this rings the other person; in one ringing for me it
/// answers. The call's events follow as `call` events; the last is `ended`.
#[tauri::command]
#[specta::specta]
pub async fn join_call(
    app: AppHandle,
    state: State<'_, AppState>,
    group_id: GroupId,
    muted: bool,
    deafened: bool,
) -> CommandResult<()> {
    let session = state.session().await?;
    if let Some(previous) = state.call.lock().await.take() {
        previous.handle.leave().await;
    }
    let settings = state.profile.load_config().audio;
    let (capture, playout) = open_devices(&settings).await?;
    let mut options = CallOptions::new(capture, playout);
    options.config = CallConfig {
        send: settings.send_settings(),
        ..CallConfig::default()
    };
    options.muted = muted;
    options.deafened = deafened;
    let (handle, call_events) = session
        .client
        .join_call(&session.gateway, group_id, options)
        .await?;
    if settings.push_to_talk {
        handle.set_push_to_talk(true)?;
    }
    let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
    *state.call.lock().await = Some(ActiveCall { id, handle });
    tokio::spawn(forward_call(app, id, group_id, call_events));
    Ok(())
}

/// Hands a call's events to the UI; when it ends, lets go of its handle (unless a newer
/// call took its place).
async fn forward_call(
    app: AppHandle,
    id: u64,
    group_id: GroupId,
    mut call_events: tokio::sync::mpsc::Receiver<CallEvent>,
) {
    let state = app.state::<AppState>();
    let mut subscriber = state.subscriber();
    while let Some(event) = call_events.recv().await {
        let ended = matches!(event, CallEvent::Ended { .. });
        if ended {
            let mut call = state.call.lock().await;
            if call.as_ref().is_some_and(|c| c.id == id) {
                call.take();
            }
        }
        if !events::deliver(&mut subscriber, AppEvent::Call { group_id, event }).await || ended {
            return;
        }
    }
}

/// Leaves the call I am in (hanging up a DM call that is still ringing cancels it).
#[tauri::command]
#[specta::specta]
pub async fn leave_call(state: State<'_, AppState>) -> CommandResult<()> {
    let call = state.call.lock().await.take();
    match call {
        Some(call) => {
            call.handle.leave().await;
            Ok(())
        }
        None => Err(CommandError::new("not_in_call", "You are not in a call.")),
    }
}

/// Declines a DM call ringing for me, on all my devices.
#[tauri::command]
#[specta::specta]
pub async fn decline_call(state: State<'_, AppState>, group_id: GroupId) -> CommandResult<()> {
    let session = state.session().await?;
    Ok(session.client.decline(&session.gateway, group_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn set_muted(state: State<'_, AppState>, muted: bool) -> CommandResult<()> {
    state.with_call(|c| c.set_muted(muted)).await
}

#[tauri::command]
#[specta::specta]
pub async fn set_deafened(state: State<'_, AppState>, deafened: bool) -> CommandResult<()> {
    state.with_call(|c| c.set_deafened(deafened)).await
}

/// The push-to-talk key went down (`true`) or up.
#[tauri::command]
#[specta::specta]
pub async fn push_to_talk(state: State<'_, AppState>, pressed: bool) -> CommandResult<()> {
    state
        .with_call(|c| {
            if pressed {
                c.ptt_press()
            } else {
                c.ptt_release()
            }
        })
        .await
}

/// How loud one participant plays for me: 0 (silent) to 4 (+12 dB), 1 as sent.
#[tauri::command]
#[specta::specta]
pub async fn set_volume(
    state: State<'_, AppState>,
    user_id: UserId,
    volume: f32,
) -> CommandResult<()> {
    if !(0.0..=MAX_VOLUME).contains(&volume) {
        let mut e = CommandError::new(
            "validation_failed",
            format!("The volume must be between 0 and {MAX_VOLUME}."),
        );
        e.field = Some("volume".into());
        return Err(e);
    }
    state.with_call(|c| c.set_volume(user_id, volume)).await
}

/// My recent missed DM calls, newest first.
#[tauri::command]
#[specta::specta]
pub async fn missed_calls(state: State<'_, AppState>) -> CommandResult<MissedCalls> {
    Ok(state.client().await?.missed_calls().await?)
}

/// The audio settings.
#[tauri::command]
#[specta::specta]
pub fn audio_settings(state: State<'_, AppState>) -> AudioSettings {
    state.profile.load_config().audio
}

/// Saves the audio settings; a call in progress switches to the devices, processing and
/// push-to-talk mode they name.
#[tauri::command]
#[specta::specta]
pub async fn set_audio_settings(
    state: State<'_, AppState>,
    settings: AudioSettings,
) -> CommandResult<()> {
    if settings.ptt_key.trim().is_empty() {
        let mut e = CommandError::new("validation_failed", "Choose a push-to-talk key.");
        e.field = Some("ptt_key".into());
        return Err(e);
    }
    let before = state.profile.load_config().audio;
    let in_call = state.call.lock().await.is_some();
    if in_call && (before.input != settings.input || before.output != settings.output) {
        // Open first: a device that does not open leaves the call and the settings as they were.
        let (capture, playout) = open_devices(&settings).await?;
        state
            .with_call(|c| {
                if before.input != settings.input {
                    c.set_input(capture)?;
                }
                if before.output != settings.output {
                    c.set_output(playout)?;
                }
                Ok(())
            })
            .await?;
    }
    if in_call && before.send_settings() != settings.send_settings() {
        state
            .with_call(|c| c.set_send_settings(settings.send_settings()))
            .await?;
    }
    if in_call && before.push_to_talk != settings.push_to_talk {
        state
            .with_call(|c| c.set_push_to_talk(settings.push_to_talk))
            .await?;
    }
    state.profile.update_config(|c| c.audio = settings)?;
    Ok(())
}
