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
    open_devices_named(settings.input.clone(), settings.output.clone()).await
}

/// Opens the microphone and speaker of these names (`None`: the system's default).
async fn open_devices_named(
    input: Option<String>,
    output: Option<String>,
) -> CommandResult<(Box<dyn Capture>, Box<dyn Playout>)> {
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

/// Whether the microphone test heard its playback come back into the microphone.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MicTestEcho {
    /// It did: speakers the microphone hears (a call partner would hear themselves unless
    /// echo cancellation removes it).
    Present {
        /// From playing to hearing it, device buffers included (ms).
        delay_ms: f32,
        /// How much quieter than played it came back (dB).
        return_loss_db: f32,
    },
    /// It did not (headphones, or speakers the microphone cannot hear).
    Absent,
    /// The recording was too quiet to tell.
    Unknown,
}

/// What the microphone test found, for the audio settings.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct MicTestResult {
    /// Level while talking (dBFS): speech sits between about −35 and −10.
    pub level_db: f32,
    /// Loudest sample (dBFS).
    pub peak_db: f32,
    /// Background level (dBFS).
    pub noise_floor_db: f32,
    /// Share of samples at full scale, in percent: above ~0.1 the input gain is too high.
    pub clipped_percent: f32,
    pub echo: MicTestEcho,
}

impl From<voice::mic_test::MicTestReport> for MicTestResult {
    fn from(r: voice::mic_test::MicTestReport) -> Self {
        use voice::mic_test::Echo;
        Self {
            level_db: r.level_db,
            peak_db: r.peak_db,
            noise_floor_db: r.noise_floor_db,
            clipped_percent: r.clipped_fraction * 100.0,
            echo: match r.echo {
                Echo::Present {
                    delay_ms,
                    return_loss_db,
                    ..
                } => MicTestEcho::Present {
                    delay_ms,
                    return_loss_db,
                },
                Echo::Absent { .. } => MicTestEcho::Absent,
                Echo::Unknown => MicTestEcho::Unknown,
            },
        }
    }
}

/// The audio settings' microphone test on the devices of these names (what the form shows,
/// saved or not): records 3 s, plays them back, and reports level, noise, clipping and echo.
/// Not during a call, which is using the devices.
#[tauri::command]
#[specta::specta]
pub async fn mic_test(
    state: State<'_, AppState>,
    input: Option<String>,
    output: Option<String>,
) -> CommandResult<MicTestResult> {
    if state.call.lock().await.is_some() {
        return Err(CommandError::new(
            "busy",
            "Leave the call to test the microphone.",
        ));
    }
    let (mut capture, mut playout) = open_devices_named(input, output).await?;
    let report = voice::mic_test::run(
        capture.as_mut(),
        playout.as_mut(),
        voice::mic_test::MicTestConfig::default(),
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "microphone test");
        CommandError::new(
            "device",
            "The microphone delivered no sound. Check that it is plugged in, or pick another.",
        )
    })?;
    Ok(report.into())
}
