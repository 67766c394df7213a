//! Why WebRTC's AEC3 scores low in double talk (voice/README.md, "Echo cancellation"): the
//! near voice's level per second through AEC3 and PESQ-WB of its output, with the far end
//! playing (no echo, or an echo), with the near end starting at 2 s or after 8 s of far end
//! alone, and with a silent far end. Needs `--features webrtc-apm`
//! (scripts/build-webrtc-apm.sh).

#[path = "../tests/common/mod.rs"]
mod common;

use common::echo::{speech_level, DoubleTalk, EchoPath};
use common::webrtc_apm::{process, Apm};
use common::RATE;

fn main() -> Result<(), String> {
    let talk = DoubleTalk::speech()?;
    let dir = std::env::temp_dir().join(format!("apm-diag-{}", std::process::id()));
    let echo_60 = EchoPath {
        delay_ms: 60.0,
        attenuation_db: -10.0,
    };
    for (name, path, near_at) in [
        ("no echo, near end from 2 s", None, 2usize),
        ("no echo, near end from 8 s", None, 8),
        ("echo 60 ms -10 dB, near end from 2 s", Some(echo_60), 2),
    ] {
        let at = RATE as usize * near_at;
        let mut near = vec![0.0; at];
        near.extend_from_slice(&talk.near);
        let far = &talk.other;
        let echo = path.map_or_else(|| vec![0.0; far.len()], |p| p.apply(far));
        let mic: Vec<f32> = (0..far.len().max(near.len()))
            .map(|i| near.get(i).copied().unwrap_or(0.0) + echo.get(i).copied().unwrap_or(0.0))
            .collect();
        let (out, _) = process(Apm::Aec3, far, &mic)?;
        let (silent_far, _) = process(Apm::Aec3, &vec![0.0; far.len()], &mic)?;
        let pesq = |x: &[f32], tag: &str| common::pesq::pesq_wb(&talk.near, &x[at..], &dir, tag);
        println!(
            "{name}: PESQ-WB microphone {:.2}, AEC3 {:.2}, AEC3 with a silent far end {:.2}",
            pesq(&mic, "mic")?,
            pesq(&out, "aec3")?,
            pesq(&silent_far, "silent")?
        );
        for s in 0..mic.len() / RATE as usize {
            let r = s * RATE as usize..(s + 1) * RATE as usize;
            println!(
                "  {s:2} s: near end {:6.1} dBFS, AEC3 output {:6.1}, far end {:6.1}",
                near.get(r.clone()).map_or(-100.0, speech_level),
                speech_level(&out[r.clone()]),
                far.get(r).map_or(-100.0, speech_level),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
