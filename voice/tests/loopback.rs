//! The loopback tool (`--example loopback`): a real call from a WAV file of any format
//! through the lossy relay to a WAV file of what the receiver played.

mod common;

use clap::Parser;
use common::loopback::{read_as_engine_audio, run, Args};
use common::*;
use voice::analysis::synth_speech;
use voice::audio::wav::{read_wav, write_wav};
use voice::audio::StreamFormat;
use voice::dsp::level_dbfs;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("voice-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn args(list: &[&str]) -> Args {
    Args::try_parse_from(std::iter::once("loopback").chain(list.iter().copied()))
        .expect("valid arguments")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_tool_carries_a_44k1_stereo_file_over_a_lossy_link() {
    let dir = temp_dir("loopback");
    let (input, output) = (dir.join("in.wav"), dir.join("out.wav"));
    let stereo: Vec<f32> = synth_speech(8, 44_100, 5.0)
        .into_iter()
        .flat_map(|s| [s, s])
        .collect();
    let cd = StreamFormat {
        sample_rate: 44_100,
        channels: 2,
    };
    write_wav(&input, &stereo, cd).expect("write input");
    let (i, o) = (path(&input), path(&output));
    let outcome = run(&args(&[
        "--in",
        i,
        "--out",
        o,
        "--loss",
        "5",
        "--jitter-ms",
        "20",
        "--seed",
        "3",
    ]))
    .await
    .expect("loopback runs");

    let (written, format) = read_wav(&output).expect("output is a WAV file");
    let sent = read_as_engine_audio(&input).expect("input readable");
    let score = similarity(&sent, &written);
    let r = &outcome.receiver;
    eprintln!("loopback similarity {score:.3}; receiver {r:?}");
    assert_eq!(format, MONO);
    assert_eq!(written.len(), outcome.heard.len());
    assert!(level_dbfs(&written) > -40.0, "output is near silence");
    assert!(score > 0.7, "output resembles the input only by {score}");
    assert!(
        r.loss > 0.01 && r.packets_received > 150,
        "the relay's loss does not show: {r:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_tool_refuses_bad_input_with_an_error() {
    let dir = temp_dir("loopback-bad");
    let (text, output) = (dir.join("text.wav"), dir.join("out.wav"));
    std::fs::write(&text, "not audio").expect("write file");
    let good = dir.join("good.wav");
    write_wav(&good, &synth_speech(1, RATE, 0.5), MONO).expect("write wav");
    let missing = dir.join("missing.wav");
    let (t, g, o, m) = (path(&text), path(&good), path(&output), path(&missing));
    for bad in [
        vec!["--in", m, "--out", o],
        vec!["--in", t, "--out", o],
        vec!["--in", g, "--out", o, "--loss", "150"],
        vec!["--in", g, "--out", o, "--bitrate", "999"],
    ] {
        assert!(run(&args(&bad)).await.is_err(), "{bad:?} accepted");
    }
    assert!(!output.exists(), "an output was written for bad input");
    assert!(Args::try_parse_from(["loopback", "--out", "x.wav"]).is_err());
    assert!(Args::try_parse_from(["loopback", "--in", "a", "--out", "b", "--loss", "x"]).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
