//! Echo cancellation and gain on a simulated echo path, through the real send chain: the far
//! end's espeak-ng speech comes back into the microphone delayed, attenuated and filtered;
//! the chain must remove it (ERLE), keep the near end's voice while both talk, and level
//! quiet and loud talkers. Needs espeak-ng (`cargo xtask test` installs it).

mod common;

use std::time::Duration;

use common::echo::{
    canceller_only, erle_db, espeak, near_end_score, run, DoubleTalk, EchoOnset, EchoPath, FarEnd,
    Room, Scenario, FAR_TEXT,
};
use common::{loopback_config, start_mesh, with_lead_in, RATE};
use voice::dsp::{level_dbfs, SendSettings};
use voice::echo::AEC_FRAME;

/// ERLE the canceller must reach after 2 s of far-end speech. The aim is 25 dB; this floor
/// is well above anything an idle or broken canceller gives (about 0 dB, see
/// `without_cancellation_the_echo_stays`) and below what it reaches, so it holds on any run
/// (the simulation is deterministic; the figures are in voice/README.md).
const ERLE_FLOOR_DB: f32 = 20.0;

/// The aim, once converged: from 5 s of far-end speech on (measured 30–34 dB at 40
/// and 120 ms).
const SETTLED_ERLE_FLOOR_DB: f32 = 25.0;
/// Where "converged" starts: 5 s into the far end's speech.
const SETTLED_FROM: usize = RATE as usize * 5;

fn scenario() -> Scenario {
    match Scenario::speech() {
        Ok(s) => s,
        Err(e) => panic!("test speech: {e}"),
    }
}

fn assert_cancels(delay_ms: f32, attenuation_db: f32) {
    let s = scenario();
    let path = EchoPath {
        delay_ms,
        attenuation_db,
    };
    let result = run(&s.far, &s.near, path, canceller_only(true));
    let (from, to) = s.single_talk();
    let erle = erle_db(&result, from, to);
    let settled = erle_db(&result, SETTLED_FROM, to);
    eprintln!(
        "delay {delay_ms} ms, echo {attenuation_db} dB: ERLE {erle:.1} dB from 2 s, \
         {settled:.1} dB from 5 s"
    );
    assert_eq!(
        result.realigned, 0,
        "a clean simulation needs no realignment"
    );
    assert!(
        erle >= ERLE_FLOOR_DB,
        "ERLE {erle:.1} dB at {delay_ms} ms (floor {ERLE_FLOOR_DB} dB)"
    );
    assert!(
        settled >= SETTLED_ERLE_FLOOR_DB,
        "ERLE after convergence {settled:.1} dB at {delay_ms} ms (floor \
         {SETTLED_ERLE_FLOOR_DB} dB)"
    );
}

#[test]
fn echo_forty_ms_late_is_cancelled() {
    assert_cancels(40.0, -6.0);
}

#[test]
fn echo_a_hundred_and_twenty_ms_late_is_cancelled() {
    assert_cancels(120.0, -10.0);
}

#[test]
fn without_cancellation_the_echo_stays() {
    let s = scenario();
    let path = EchoPath {
        delay_ms: 40.0,
        attenuation_db: -6.0,
    };
    let result = run(&s.far, &s.near, path, canceller_only(false));
    let (from, to) = s.single_talk();
    let erle = erle_db(&result, from, to);
    assert!(
        erle.abs() < 1.0,
        "nothing should change the echo: {erle:.1} dB"
    );
}

#[test]
fn near_end_speech_survives_double_talk() {
    let s = scenario();
    let path = EchoPath {
        delay_ms: 80.0,
        attenuation_db: -6.0,
    };
    let (from, to) = s.double_talk();
    let with = run(&s.far, &s.near, path, canceller_only(true));
    let without = run(&s.far, &s.near, path, canceller_only(false));
    let kept = near_end_score(&s.near, &with.out, from, to);
    let raw = near_end_score(&s.near, &without.out, from, to);
    let near_level = level_dbfs(&s.near[from..to]);
    let out_level = level_dbfs(&with.out[from..to]);
    eprintln!(
        "double talk: near-end correlation {kept:.3} with cancellation, {raw:.3} without; \
         near {near_level:.1} dBFS, output {out_level:.1} dBFS"
    );
    assert!(
        out_level > near_level - 6.0,
        "near end attenuated to {out_level:.1} dBFS from {near_level:.1}"
    );
    assert!(kept > 0.8, "near-end speech correlation {kept:.3}");
    assert!(
        kept > raw,
        "cancellation should bring the output closer to the near end ({kept:.3} vs {raw:.3})"
    );
}

/// How much PESQ-WB the canceller may cost the near end's voice in double talk with no echo
/// to remove: next to nothing. Measured 2026-12-02 (deterministic): 4.41 on against 4.37
/// off since the canceller steps aside when it hears no echo; 4.22 before (subtracting and
/// suppressing an estimate of far-end speech that was not there), which fails this.
const DOUBLE_TALK_PESQ_MARGIN: f64 = 0.05;

/// How much PESQ-WB the canceller must give back to a near end talking over an echo of the
/// far end (60 and 120 ms, -10 dB): with no cancellation the echo sinks it to ~1.4; the
/// canceller brings it to 2.8–3.0 (the simulation is deterministic; voice/README.md).
const DOUBLE_TALK_PESQ_GAIN: f64 = 1.0;

fn double_talk() -> DoubleTalk {
    match DoubleTalk::speech() {
        Ok(t) => t,
        Err(e) => panic!("test speech: {e}"),
    }
}

/// PESQ-WB of the near end through the default send chain with the canceller `on` or off.
fn double_talk_pesq(talk: &DoubleTalk, far_end: FarEnd, on: bool, tag: &str) -> f64 {
    let settings = SendSettings {
        echo_cancellation: on,
        ..SendSettings::default()
    };
    // One directory per call: the tests of this file may run as threads of one process.
    let dir = std::env::temp_dir().join(format!("voice-echo-{}-{tag}-{on}", std::process::id()));
    let score = talk.score(far_end, settings, &dir, &format!("{tag}-{on}"));
    let _ = std::fs::remove_dir_all(&dir);
    match score {
        Ok(p) => p,
        Err(e) => panic!("PESQ: {e}"),
    }
}

#[test]
fn the_canceller_leaves_the_near_voice_alone_when_there_is_no_echo() {
    // Both ends talk at once, the far end is played, nothing of it reaches the microphone:
    // the canceller must find nothing to remove and change nothing a listener hears.
    let talk = double_talk();
    let far_end = FarEnd::Other { echo: None };
    let on = double_talk_pesq(&talk, far_end, true, "no-echo");
    let off = double_talk_pesq(&talk, far_end, false, "no-echo");
    eprintln!(
        "double talk, no echo: near end PESQ-WB {on:.2} with the canceller, {off:.2} without"
    );
    assert!(
        on >= off - DOUBLE_TALK_PESQ_MARGIN,
        "the canceller cut the near voice: PESQ-WB {on:.2} on, {off:.2} off"
    );
}

#[test]
fn a_near_end_talking_from_the_first_moment_is_not_taken_for_an_echo() {
    // Both talk from the start of the call, no echo path: the canceller's filter, still
    // learning, fits itself to the near voice, and subtracting that estimate took the near
    // voice with it (4.32 / 4.37 on against 4.37 / 4.50 off before it waited for an echo to
    // be found; deterministic). The two talkers swapped in the second case, which starts
    // the near end 100 ms after the far end, as a peer hears the other's first word.
    let talk = double_talk();
    let dir = std::env::temp_dir().join(format!("voice-echo-start-{}", std::process::id()));
    for (swapped, near_at_ms, tag) in [(false, 0, "first"), (true, 100, "swapped")] {
        let score = |on: bool| {
            let settings = SendSettings {
                echo_cancellation: on,
                ..SendSettings::default()
            };
            match talk.score_from_the_start(
                swapped,
                near_at_ms,
                settings,
                &dir,
                &format!("{tag}-{on}"),
            ) {
                Ok(p) => p,
                Err(e) => panic!("PESQ: {e}"),
            }
        };
        let (on, off) = (score(true), score(false));
        eprintln!(
            "{tag}: both talk from the start, no echo: near end PESQ-WB {on:.2} with the \
             canceller, {off:.2} without"
        );
        assert!(
            on >= off - DOUBLE_TALK_PESQ_MARGIN,
            "{tag}: the canceller cut the near voice: PESQ-WB {on:.2} on, {off:.2} off"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_near_voice_comes_through_an_echo_cleaner_with_the_canceller() {
    // The far end's voice comes back 60 or 120 ms later at -10 dB while the near end talks.
    let talk = double_talk();
    for delay_ms in [60.0, 120.0] {
        let far_end = FarEnd::Other {
            echo: Some(EchoPath {
                delay_ms,
                attenuation_db: -10.0,
            }),
        };
        let tag = format!("echo-{delay_ms}");
        let on = double_talk_pesq(&talk, far_end, true, &tag);
        let off = double_talk_pesq(&talk, far_end, false, &tag);
        eprintln!(
            "double talk, echo {delay_ms} ms at -10 dB: near end PESQ-WB {on:.2} with the \
             canceller, {off:.2} without"
        );
        assert!(
            on >= off + DOUBLE_TALK_PESQ_GAIN,
            "{delay_ms} ms: the canceller should clean the near end by {DOUBLE_TALK_PESQ_GAIN} \
             PESQ-WB at least: {on:.2} on, {off:.2} off"
        );
    }
}

/// How soon after an echo appears (following a stretch with none) the canceller must be
/// back to full suppression: measured 410 ms (60 ms, -6 dB) and 570 ms (120 ms, -10 dB), the
/// time its filter takes to find enough of the new echo (2026-12-02, deterministic).
const PRESENCE_BACK_WITHIN: Duration = Duration::from_secs(1);

/// ERLE 2–4 s after the echo appeared: 19.0 and 16.9 dB measured, the same as before the
/// canceller learnt to step aside (its filter converges from scratch either way).
const ONSET_ERLE_FLOOR_DB: f32 = 14.0;

#[test]
fn an_echo_appearing_mid_call_is_suppressed_again_within_a_second() {
    // The near end talks over the far end with no echo (headphones), falls silent, and
    // then the far end's voice comes back into the microphone (headphones unplugged).
    let onset = match EchoOnset::speech() {
        Ok(o) => o,
        Err(e) => panic!("test speech: {e}"),
    };
    for (delay_ms, attenuation_db) in [(60.0, -6.0), (120.0, -10.0)] {
        let path = EchoPath {
            delay_ms,
            attenuation_db,
        };
        let result = onset.run(path, canceller_only(true));
        let before = result.presence[EchoOnset::AT / (RATE as usize / 100) - 1];
        let back = EchoOnset::presence_back_after(&result);
        let erle = EchoOnset::erle_after(&result, 2.0, 4.0);
        eprintln!(
            "echo appearing at {delay_ms} ms, {attenuation_db} dB: presence {before:.3} \
             before, full again after {back:?}; ERLE 2–4 s after {erle:.1} dB"
        );
        assert!(
            before < 0.1,
            "with no echo the canceller should step aside: presence {before:.3}"
        );
        assert!(
            back.is_some_and(|b| b <= PRESENCE_BACK_WITHIN),
            "{delay_ms} ms: suppression back only after {back:?}"
        );
        assert!(
            erle >= ONSET_ERLE_FLOOR_DB,
            "{delay_ms} ms: ERLE {erle:.1} dB 2–4 s after the echo appeared"
        );
    }
}

/// How soon after a call starts with no echo at all (headphones) the canceller must stop
/// suppressing, counted from the far end's first word: it assumes an echo until shown
/// otherwise, and while it does, its residual suppression cuts the near voice whenever the
/// far end talks. Measured (deterministic): 3.57 s before it learnt to let go fast once its
/// filter, which finds a real echo within 0.4–0.6 s, has found nothing for half a second;
/// 1.93 s since (the judgement itself starts only when the filter makes an estimate, 1.25 s
/// here). The slow way cost the benchmark's calls ~0.1 PESQ-WB (see `NO_ECHO_PROOF_FRAMES`).
const STEP_ASIDE_WITHIN: Duration = Duration::from_millis(2500);

/// Normalised correlation of two equally long signals.
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum::<f64>()
    };
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt().max(1e-12)
}

#[test]
fn a_call_without_echo_soon_passes_the_near_voice_on_untouched() {
    // Both start talking at once (far end from 0 s, near end from 0.5 s), nothing of the far
    // end reaches the microphone; the echo of EchoOnset comes only at 7 s.
    let onset = match EchoOnset::speech() {
        Ok(o) => o,
        Err(e) => panic!("test speech: {e}"),
    };
    let path = EchoPath {
        delay_ms: 60.0,
        attenuation_db: -6.0,
    };
    let on = onset.run(path, canceller_only(true));
    let off = onset.run(path, canceller_only(false));
    let aside = on.presence.iter().position(|&p| p < 0.1);
    let aside = aside.map(|t| Duration::from_millis(t as u64 * 10));
    // From there to the echo's onset the canceller has nothing to do: what it sends is the
    // microphone (the canceller-off output) one frame later (its suppressor's overlap-add).
    // Measured 0.958 (the rest is SpeexDSP's DC notch, a high-pass under ~60 Hz).
    let from = STEP_ASIDE_WITHIN.as_millis() as usize * RATE as usize / 1000;
    let to = EchoOnset::AT - RATE as usize / 10;
    let kept = correlation(
        &on.out[from + AEC_FRAME..to],
        &off.out[from..to - AEC_FRAME],
    );
    let erle = EchoOnset::erle_after(&on, 2.0, 4.0);
    eprintln!(
        "no echo from the start: presence below 0.1 after {aside:?}; near voice from \
         {STEP_ASIDE_WITHIN:?} to the echo's onset against the microphone: correlation \
         {kept:.3}; ERLE 2–4 s after the echo appeared {erle:.1} dB"
    );
    assert!(
        aside.is_some_and(|a| a <= STEP_ASIDE_WITHIN),
        "the canceller still suppressed after {aside:?} with no echo"
    );
    assert!(
        kept > 0.9,
        "with no echo the near voice should pass untouched: correlation {kept:.3}"
    );
    // Letting go fast must not cost the echo that then appears.
    assert!(
        erle >= ONSET_ERLE_FLOOR_DB,
        "ERLE {erle:.1} dB 2–4 s after the echo appeared"
    );
}

#[test]
fn an_echo_from_the_start_is_suppressed_throughout() {
    // The canceller assumes an echo until shown otherwise, and a converging echo keeps it
    // at full suppression: stepping aside while the filter learns would let the echo out.
    let s = scenario();
    let path = EchoPath {
        delay_ms: 120.0,
        attenuation_db: -10.0,
    };
    let result = run(&s.far, &s.near, path, canceller_only(true));
    let (_, to) = s.double_talk();
    let ticks = to / (RATE as usize / 100);
    let lowest = result.presence[..ticks]
        .iter()
        .copied()
        .fold(1.0f32, f32::min);
    eprintln!("echo from the start: lowest presence {lowest:.3}");
    assert!(lowest >= 0.9, "presence fell to {lowest:.3} with an echo");
}

fn agc_output(level_db: f32) -> (Vec<f32>, Vec<f32>) {
    let speech = match common::echo::espeak(common::echo::FAR_TEXT, "en-us", level_db) {
        Ok(s) => s.iter().map(|x| x.clamp(-1.0, 1.0)).collect::<Vec<f32>>(),
        Err(e) => panic!("test speech: {e}"),
    };
    let settings = SendSettings {
        noise_gate: false,
        ..SendSettings::default()
    };
    let result = run(
        &[],
        &speech,
        EchoPath {
            delay_ms: 40.0,
            attenuation_db: -6.0,
        },
        settings,
    );
    (speech, result.out)
}

#[test]
fn auto_gain_raises_a_quiet_talker() {
    let (speech, out) = agc_output(-35.0);
    // Judge the second half, after the gain has had time to move.
    let half = speech.len() / 2;
    let before = common::echo::speech_level(&speech[half..]);
    let after = common::echo::speech_level(&out[half..]);
    eprintln!("quiet talker: {before:.1} dBFS in, {after:.1} dBFS out");
    assert!(
        after > before + 6.0,
        "{before:.1} dBFS in, {after:.1} dBFS out"
    );
}

#[test]
fn auto_gain_does_not_clip_a_loud_talker() {
    // As loud as a microphone delivers before it clips itself.
    let (speech, out) = agc_output(-10.0);
    let peak_in = speech.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    let peak_out = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    let level = common::echo::speech_level(&out);
    eprintln!("loud talker: peak {peak_in:.2} in, {peak_out:.2} out, {level:.1} dBFS out");
    assert!(
        peak_in > 0.5,
        "the test input should be loud: peak {peak_in}"
    );
    assert!(peak_out <= 0.951, "output peaks at {peak_out:.3}");
    assert!(level > -24.0, "loud talker squashed to {level:.1} dBFS");
}

/// Waits until `peer`'s speaker has played `secs` of audio (it plays from the call's start).
async fn wait_played(peer: &common::TestPeer, secs: f32) {
    let want = (secs * RATE as f32) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f32(secs + 30.0);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while peer.recording.samples().len() < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} played only {} of {want} samples",
            peer.name,
            peer.recording.samples().len()
        );
        tick.tick().await;
    }
}

/// How much of `sent` comes back in `heard` over `from..to` seconds, in dB.
fn returned_db(sent: &[f32], heard: &[f32], from: f32, to: f32) -> f32 {
    let range = (from * RATE as f32) as usize..(to * RATE as f32) as usize;
    level_dbfs(&heard[range.clone()]) - level_dbfs(&sent[range])
}

/// End to end through two real engines: alice talks, bob's speaker plays her into his room
/// and his microphone records her 60 ms later at -6 dB. With bob's canceller off alice hears
/// herself back; switched on mid-call, her echo disappears once it has converged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talker_does_not_hear_herself_back_through_a_peers_room() {
    let speech = match espeak(FAR_TEXT, "en-us", -20.0) {
        Ok(s) => s,
        Err(e) => panic!("test speech: {e}"),
    };
    let alice = with_lead_in(&speech);
    let config = loopback_config();
    let cancelling = SendSettings {
        echo_cancellation: true,
        ..config.send
    };
    let silent = vec![0.0; alice.len()];
    let mesh = start_mesh(
        vec![("alice", alice.clone()), ("bob", silent)],
        config.clone(),
        None,
    )
    .await;
    let (a, b) = (&mesh.peers[0], &mesh.peers[1]);
    b.call.set_send_settings(SendSettings {
        echo_cancellation: false,
        ..config.send
    });
    let room = Room::new(EchoPath {
        delay_ms: 60.0,
        attenuation_db: -6.0,
    });
    b.call
        .set_input(Box::new(room.microphone()))
        .expect("room microphone");
    b.call
        .set_output(Box::new(room.speaker()))
        .expect("room speaker");

    // Alice's speech runs from 1.5 s to ~14.9 s of her timeline.
    wait_played(a, 7.2).await;
    b.call.set_send_settings(cancelling);
    wait_played(a, 15.0).await;
    let heard = a.recording.samples();
    let off = returned_db(&alice, &heard, 3.0, 7.0);
    // 3 s to converge after the switch. Judged on the median half second: each time bob's
    // speaker runs dry (this debug build on a loaded 2-core machine stalls now and then,
    // 0–3 times a run) the echo moves, the canceller realigns its pairing and its filter
    // re-learns for up to a second, during which the echo comes back (seen 2026-12-03 in 3
    // of 6 runs of the code before and after that day's change, all with an underrun in
    // the last 4 s: 7.5–14 dB less over the whole stretch, against 24–31 dB without one).
    let halves: Vec<f32> = (0..8)
        .map(|i| {
            let from = 10.5 + 0.5 * i as f32;
            returned_db(&alice, &heard, from, from + 0.5)
        })
        .collect();
    let on = median(&halves);
    let whole = returned_db(&alice, &heard, 10.5, 14.5);
    eprintln!(
        "alice hears herself back at {off:.1} dB with bob's canceller off, {on:.1} dB on in the \
         median half second ({:.1} dB less; {whole:.1} dB over the whole 4 s); bob's speaker \
         ran dry {} times",
        off - on,
        room.underruns()
    );
    assert!(
        off > -15.0,
        "the room's echo should reach alice: {off:.1} dB"
    );
    assert!(off - on >= 15.0, "echo reduced by only {:.1} dB", off - on);
    // Even with a re-learning in the window, most of the echo is gone.
    assert!(
        off - whole >= 5.0,
        "echo reduced by only {:.1} dB over the whole 4 s",
        off - whole
    );
}

fn median(values: &[f32]) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}
