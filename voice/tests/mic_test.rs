//! The microphone test: a recording played back, judged for level, noise, clipping and
//! echo, on files and on a simulated room whose speaker the microphone hears.

mod common;

use std::time::Duration;

use common::room::room;
use common::*;
use voice::analysis::synth_speech;
use voice::audio::wav::{WavSink, WavSource};
use voice::audio::{Capture, StreamFormat};
use voice::mic_test::{run, Echo, MicTestConfig, MicTestReport};

const RECORD: Duration = Duration::from_secs(2);

fn config() -> MicTestConfig {
    MicTestConfig {
        record: RECORD,
        ..MicTestConfig::default()
    }
}

/// Speech over a steady noise floor of `noise_rms`, `gain` times louder than generated, and
/// clipped at full scale as a converter would.
fn talker(seed: u32, gain: f32, noise_rms: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(747_796_405).wrapping_add(1);
    let amplitude = noise_rms * 3f32.sqrt();
    synth_speech(seed, RATE, 4.0)
        .into_iter()
        .map(|s| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = ((state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * amplitude;
            (s * gain + noise).clamp(-1.0, 1.0)
        })
        .collect()
}

async fn test_file(samples: Vec<f32>) -> (MicTestReport, Vec<f32>) {
    let mut mic = WavSource::from_samples(samples, MONO);
    let mut speaker = WavSink::new(MONO);
    let played = speaker.recording();
    let report = run(&mut mic, &mut speaker, config())
        .await
        .expect("mic test runs");
    eprintln!("{report:?}");
    (report, played.samples())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mic_test_reports_level_and_noise_floor_and_plays_the_recording_back() {
    let input = talker(3, 1.0, 0.001);
    let (report, played) = test_file(input.clone()).await;
    // The noise is at -60 dBFS; the speech 30 dB or more above it.
    assert!(
        (report.noise_floor_db + 60.0).abs() < 4.0,
        "noise floor {}",
        report.noise_floor_db
    );
    assert!(
        (-30.0..-8.0).contains(&report.level_db),
        "level {}",
        report.level_db
    );
    assert_eq!(report.clipped_fraction, 0.0);
    // What was played back is what was recorded, and a file does not hear it.
    let recorded = &input[..(RECORD.as_secs_f32() * RATE as f32) as usize];
    let score = similarity(recorded, &played);
    assert!(score > 0.9, "playback resembles the recording by {score}");
    assert!(
        matches!(report.echo, Echo::Absent { correlation } if correlation < 0.5),
        "{:?}",
        report.echo
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mic_test_reports_clipping_of_a_hot_input() {
    let (report, _) = test_file(talker(4, 12.0, 0.001)).await;
    assert!(
        report.clipped_fraction > 0.001,
        "clipped {}",
        report.clipped_fraction
    );
    assert!(report.peak_db > -0.1, "peak {}", report.peak_db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mic_test_finds_the_echo_of_speakers_the_microphone_hears() {
    // The talker, then quiet, so the playback's echo is not masked by them talking.
    let mut near = talker(5, 1.0, 0.0005);
    near.truncate((RECORD.as_secs_f32() * RATE as f32) as usize);
    let delay = Duration::from_millis(120);
    let (mut mic, mut speaker) = room(near, delay, 0.1);
    let report = run(&mut mic, &mut speaker, config())
        .await
        .expect("mic test runs");
    eprintln!("{report:?}");
    let Echo::Present {
        delay_ms,
        return_loss_db,
        correlation,
    } = report.echo
    else {
        panic!("echo not found: {:?}", report.echo);
    };
    // The room adds 120 ms; the playback is written at most one block ahead of the device.
    assert!((115.0..150.0).contains(&delay_ms), "delay {delay_ms} ms");
    assert!(
        (return_loss_db - 20.0).abs() < 2.0,
        "return loss {return_loss_db} dB"
    );
    assert!(correlation > 0.9, "correlation {correlation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mic_test_of_a_silent_input_cannot_judge_echo() {
    let (report, _) = test_file(vec![0.0; RATE as usize * 5]).await;
    assert_eq!(report.echo, Echo::Unknown);
    assert!(report.level_db <= -99.0, "level {}", report.level_db);
}

/// A microphone that opened but never delivers a sample.
struct DeadMic;

impl Capture for DeadMic {
    fn format(&self) -> StreamFormat {
        MONO
    }
    fn read(&mut self, _out: &mut Vec<f32>) -> usize {
        0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mic_test_of_a_dead_input_is_an_error() {
    let mut speaker = WavSink::new(MONO);
    let short = MicTestConfig {
        record: Duration::from_millis(200),
        ..MicTestConfig::default()
    };
    let result = run(&mut DeadMic, &mut speaker, short).await;
    assert!(
        matches!(result, Err(voice::VoiceError::Device(_))),
        "{result:?}"
    );
}
