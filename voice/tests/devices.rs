//! Real cpal devices on a virtual sound card (PipeWire null sink `vsink`, reached through
//! ALSA's `pulse` device). Run `eval "$(voice/scripts/virtual-audio.sh)"` first; without it
//! this test fails and says so.

mod common;

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

/// Plays a tone into the null sink from a thread, as another application would.
fn play_tone_for(freq: f32, secs: f32) -> std::thread::JoinHandle<()> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_captures_from_a_real_device_on_the_virtual_sound_card() {
    require_virtual_sound_card();
    init_tracing();
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

    let player = play_tone_for(750.0, 3.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = heard.samples().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let window = heard.samples()[before..].to_vec();
    let _ = tokio::task::spawn_blocking(move || player.join()).await;
    let power = tone_power(&window, RATE, 750.0);
    assert!(
        power > 0.01,
        "tone played into the virtual card not heard: power {power}"
    );
    assert!(talker.input_level_db() > -60.0 || power > 0.01);
}
