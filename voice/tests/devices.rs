//! Real cpal devices on a virtual sound card (PipeWire null sink `vsink`, reached through
//! ALSA's `pulse` device). Run `eval "$(voice/scripts/virtual-audio.sh)"` first; without it
//! this test fails and says so.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use voice::analysis::{sine, tone_power};
use voice::audio::device::{input_devices, CpalCapture, CpalPlayout};
use voice::audio::wav::{WavSink, WavSource};
use voice::audio::{Capture, Playout};
use voice::dsp::{upmix, MonoResampler};

/// The ALSA device that reaches PipeWire through pipewire-pulse.
const DEVICE: &str = "pulse";

fn require_virtual_sound_card() {
    let devices = input_devices();
    let opened = CpalCapture::open(Some(DEVICE)).map(|_| ());
    assert!(
        std::env::var_os("PULSE_SERVER").is_some() && opened.is_ok(),
        "no virtual sound card: run `eval \"$(voice/scripts/virtual-audio.sh)\"` before the \
         tests (needs pipewire, pipewire-pulse, wireplumber, pulseaudio-utils, \
         libasound2-plugins); opening {DEVICE}: {opened:?}; cpal sees {devices:?}"
    );
}

/// Plays a tone into the null sink from a thread, as another application would, until
/// `secs` have passed or `stop` is set.
fn play_tone_for(freq: f32, secs: f32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut speaker) = CpalPlayout::open(Some(DEVICE)) else {
            return;
        };
        let format = speaker.format();
        let Ok(mut resampler) = MonoResampler::new(RATE, format.sample_rate) else {
            return;
        };
        let tone = sine(freq, RATE, secs, 0.3);
        let (mut mono, mut out) = (Vec::new(), Vec::new());
        for block in tone.chunks(RATE as usize / 100) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            while speaker.queued() > format.sample_rate as usize / 20 {
                std::thread::sleep(Duration::from_millis(5));
            }
            mono.clear();
            out.clear();
            resampler.process(block, &mut mono);
            upmix(&mono, format.channels, &mut out);
            speaker.write(&out);
        }
    })
}

/// One test, two behaviours in sequence: the second restarts the shared sound server, which
/// would break the first if they ran in parallel (nextest and cargo test both would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_sound_card_carries_a_call_and_capture_survives_a_server_restart() {
    require_virtual_sound_card();
    init_tracing();
    call_captures_from_a_real_device().await;
    capture_comes_back_after_the_sound_server_restarts().await;
}

/// Restarts the sound server that virtual-audio.sh started (only that one), like a USB
/// headset unplugged and plugged back: the capture device must be reopened by itself.
async fn capture_comes_back_after_the_sound_server_restarts() {
    let mut mic = CpalCapture::open(Some(DEVICE)).expect("open capture device");
    let mut samples = Vec::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        mic.read(&mut samples) > 0,
        "capture delivers nothing before the restart"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/virtual-audio.sh");
    let restarted = tokio::process::Command::new(script)
        .arg("restart-pulse")
        .output()
        .await
        .expect("run virtual-audio.sh restart-pulse");
    assert!(
        restarted.status.success(),
        "restart-pulse failed: {restarted:?}"
    );
    mic.read(&mut samples);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut after = 0;
    while tokio::time::Instant::now() < deadline && (mic.reopened() == 0 || after < 4_800) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        samples.clear();
        after += mic.read(&mut samples);
    }
    assert!(mic.reopened() >= 1, "the capture device was never reopened");
    assert!(
        after >= 4_800,
        "capture delivers only {after} samples after the restart"
    );
}

async fn call_captures_from_a_real_device() {
    // The talker's microphone is the sink's monitor: it hears whatever is played there.
    let mic = CpalCapture::open(Some(DEVICE)).expect("open capture device");
    assert!(mic.format().sample_rate > 0);
    let (talker_in, talker_in_rx) = tokio::sync::mpsc::channel(64);
    let (listener_in, listener_in_rx) = tokio::sync::mpsc::channel(64);
    let (talker_out, mut talker_out_rx) = tokio::sync::mpsc::channel::<voice::SignalMessage>(64);
    let (listener_out, mut listener_out_rx) =
        tokio::sync::mpsc::channel::<voice::SignalMessage>(64);
    let listener_sink = WavSink::new(MONO);
    let heard = listener_sink.recording();
    let (talker, _talker_events) = voice::Call::start(
        loopback_config(),
        Box::new(mic),
        Box::new(WavSink::new(MONO)),
        talker_in_rx,
        talker_out,
    )
    .await
    .expect("talker starts");
    let (_listener, mut listener_events) = voice::Call::start(
        loopback_config(),
        Box::new(WavSource::from_samples(vec![0.0; RATE as usize * 10], MONO)),
        Box::new(listener_sink),
        listener_in_rx,
        listener_out,
    )
    .await
    .expect("listener starts");
    tokio::spawn(async move {
        while let Some(mut m) = talker_out_rx.recv().await {
            m.peer = "talker".into();
            let _ = listener_in.send(m).await;
        }
    });
    tokio::spawn(async move {
        while let Some(mut m) = listener_out_rx.recv().await {
            m.peer = "listener".into();
            let _ = talker_in.send(m).await;
        }
    });
    talker.connect("listener").await.expect("offer");
    let connected = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(e) = listener_events.recv().await {
            if matches!(e, voice::CallEvent::PeerConnected(_)) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(connected, Ok(true)), "peers did not connect");

    // Opening a device on a busy machine can take a while: watch the last half second of
    // what the listener plays until the tone shows up, for up to 8 s.
    let stop = Arc::new(AtomicBool::new(false));
    let player = play_tone_for(750.0, 10.0, Arc::clone(&stop));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut power = 0.0;
    while tokio::time::Instant::now() < deadline && power <= 0.01 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let samples = heard.samples();
        let window = &samples[samples.len().saturating_sub(RATE as usize / 2)..];
        power = tone_power(window, RATE, 750.0);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || player.join()).await;
    assert!(
        power > 0.01,
        "tone played into the virtual card not heard: power {power}"
    );
    drop(talker);
}
