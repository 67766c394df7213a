//! Judging audio by what the listener hears: aligning a received recording with what was
//! sent, scoring their similarity, and synthesising test signals.
//!
//! Tests use [`segmental_correlation`] (robust to the small time shifts a jitter buffer
//! introduces when it grows or shrinks); the benchmark adds PESQ through a Python helper.

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use crate::dsp::MonoResampler;
use crate::Result;

/// Rate the analysis works at: the speech band PESQ wide-band scores, at a third of the work.
pub const ANALYSIS_RATE: u32 = 16_000;

/// Resamples 48 kHz mono to [`ANALYSIS_RATE`].
pub fn to_analysis_rate(samples: &[f32], rate: u32) -> Result<Vec<f32>> {
    let mut r = MonoResampler::new(rate, ANALYSIS_RATE)?;
    let mut out = Vec::with_capacity(samples.len() / 3 + 1);
    r.process(samples, &mut out);
    r.process(&vec![0.0; rate as usize / 50], &mut out);
    Ok(out)
}

struct Correlator {
    fft: Arc<dyn Fft<f32>>,
    ifft: Arc<dyn Fft<f32>>,
    size: usize,
}

impl Correlator {
    fn new(size: usize) -> Self {
        let size = size.next_power_of_two();
        let mut planner = FftPlanner::new();
        Self {
            fft: planner.plan_fft_forward(size),
            ifft: planner.plan_fft_inverse(size),
            size,
        }
    }

    /// Raw cross-correlation `c[k] = sum a[i] * b[i + k]` for k in `0..b.len()`.
    fn correlate(&self, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut fa: Vec<Complex32> = (0..self.size)
            .map(|i| Complex32::new(a.get(i).copied().unwrap_or(0.0), 0.0))
            .collect();
        let mut fb: Vec<Complex32> = (0..self.size)
            .map(|i| Complex32::new(b.get(i).copied().unwrap_or(0.0), 0.0))
            .collect();
        self.fft.process(&mut fa);
        self.fft.process(&mut fb);
        for (x, y) in fa.iter_mut().zip(&fb) {
            *x = x.conj() * y;
        }
        self.ifft.process(&mut fa);
        let scale = 1.0 / self.size as f32;
        fa.iter().take(b.len()).map(|c| c.re * scale).collect()
    }
}

/// Best normalised correlation of `window` within `search` and where it is.
fn best_match(c: &Correlator, window: &[f32], search: &[f32]) -> Option<(usize, f32)> {
    let e_w: f32 = window.iter().map(|s| s * s).sum();
    if e_w <= 1e-9 || search.len() < window.len() {
        return None;
    }
    let raw = c.correlate(window, search);
    // Sliding energy of `search` over windows of the same length.
    let mut prefix = Vec::with_capacity(search.len() + 1);
    prefix.push(0.0f64);
    for s in search {
        let last = prefix.last().copied().unwrap_or(0.0);
        prefix.push(last + f64::from(s * s));
    }
    (0..=search.len() - window.len())
        .map(|k| {
            let e_s = (prefix[k + window.len()] - prefix[k]) as f32;
            let v = if e_s > 1e-9 {
                raw[k] / (e_w * e_s).sqrt()
            } else {
                0.0
            };
            (k, v)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Where `sent` begins inside `received` (in samples; negative when the recording started
/// after the sender did), found by cross-correlating three seconds of `sent`, from its first
/// loud sample, against all of `received`. Also returns the correlation found.
pub fn find_offset(sent: &[f32], received: &[f32], rate: u32) -> Option<(isize, f32)> {
    let probe = (rate as usize * 3).min(sent.len());
    // Start the probe at the first loud sample, so leading silence does not dilute it.
    let start = sent.iter().position(|s| s.abs() > 0.05)?;
    let window = &sent[start..(start + probe).min(sent.len())];
    let c = Correlator::new(window.len() + received.len());
    let (k, v) = best_match(&c, window, received)?;
    Some((k as isize - start as isize, v))
}

/// A 100 ms window of sent speech and where it was found in the recording.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentMatch {
    /// Index of the window's first sample in `sent`.
    pub sent: usize,
    /// Index where it best matches in `received` (`None`: window not in the recording).
    pub received: Option<usize>,
    /// Normalised correlation there (0 when not found).
    pub score: f32,
}

/// Matches every 100 ms window of the sent speech (windows quieter than 30 dB below the
/// loudest are skipped) to the received audio, searching ±30 ms around where the previous
/// window matched, so the jitter buffer's stretches and skips are followed.
pub fn match_segments(sent: &[f32], received: &[f32], rate: u32) -> Vec<SegmentMatch> {
    let Some((mut offset, _)) = find_offset(sent, received, rate) else {
        return Vec::new();
    };
    let win = rate as usize / 10;
    let slack = rate as usize * 30 / 1000;
    let c = Correlator::new(win + 2 * slack + win);
    let peak = sent.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    let floor = peak * peak * 1e-3;
    let mut matches = Vec::new();
    for (i, window) in sent.chunks_exact(win).enumerate() {
        let energy = window.iter().map(|s| s * s).sum::<f32>() / win as f32;
        if energy < floor {
            continue;
        }
        let expected = (i * win) as isize + offset;
        if expected < slack as isize {
            continue; // sent before the recording began
        }
        let lo = expected as usize - slack;
        let hi = (expected as usize + win + slack).min(received.len());
        let found = (hi > lo + win)
            .then(|| best_match(&c, window, &received[lo..hi]))
            .flatten();
        let m = match found {
            Some((k, v)) => {
                if v > 0.5 {
                    offset = (lo + k) as isize - (i * win) as isize;
                }
                SegmentMatch {
                    sent: i * win,
                    received: Some(lo + k),
                    score: v.max(0.0),
                }
            }
            None => SegmentMatch {
                sent: i * win,
                received: None,
                score: 0.0,
            },
        };
        matches.push(m);
    }
    matches
}

/// How similar the received audio is to what was sent, from 0 to 1: the mean score of
/// [`match_segments`] (robust to the small time shifts a jitter buffer introduces).
pub fn segmental_correlation(sent: &[f32], received: &[f32], rate: u32) -> Option<f32> {
    let matches = match_segments(sent, received, rate);
    if matches.is_empty() {
        return None;
    }
    Some(matches.iter().map(|m| m.score).sum::<f32>() / matches.len() as f32)
}

/// Power of `freq` in `samples` (Goertzel), normalised so a full-scale sine gives 0.5.
pub fn tone_power(samples: &[f32], rate: u32, freq: f32) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = std::f32::consts::TAU * freq / rate as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power / (samples.len() as f32 * samples.len() as f32)
}

/// A sine at `freq` Hz, `amplitude` peak, for `secs` seconds.
pub fn sine(freq: f32, rate: u32, secs: f32, amplitude: f32) -> Vec<f32> {
    (0..(rate as f32 * secs) as usize)
        .map(|i| amplitude * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin())
        .collect()
}

/// A deterministic speech-like signal: syllables of gliding voiced harmonics shaped by two
/// moving formants, fricative noise bursts and pauses. Different seeds never correlate, so
/// a receiver can tell which peer it hears; no external tool is needed to make it.
pub fn synth_speech(seed: u32, rate: u32, secs: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32) / (u32::MAX as f32)
    };
    let total = (rate as f32 * secs) as usize;
    let mut out = Vec::with_capacity(total);
    let r = rate as f32;
    while out.len() < total {
        let syl = ((0.12 + 0.2 * rnd()) * r) as usize;
        let f0_start = 100.0 + 120.0 * rnd();
        let f0_end = f0_start * (0.8 + 0.4 * rnd());
        let (f1a, f1b) = (300.0 + 500.0 * rnd(), 300.0 + 500.0 * rnd());
        let (f2a, f2b) = (900.0 + 1500.0 * rnd(), 900.0 + 1500.0 * rnd());
        let fricative = rnd() < 0.3;
        let mut phase = 0.0f32;
        for n in 0..syl {
            let t = n as f32 / syl as f32;
            let f0 = f0_start + (f0_end - f0_start) * t;
            phase += std::f32::consts::TAU * f0 / r;
            let (f1, f2) = (f1a + (f1b - f1a) * t, f2a + (f2b - f2a) * t);
            let mut v = 0.0;
            let mut h = 1.0;
            while h * f0 < 4_000.0 {
                let f = h * f0;
                let g = 1.0 / (1.0 + ((f - f1) / 150.0).powi(2))
                    + 0.5 / (1.0 + ((f - f2) / 200.0).powi(2));
                v += g * (h * phase).sin() / h.sqrt();
                h += 1.0;
            }
            let env = (t * 12.0).min(1.0) * ((1.0 - t) * 6.0).min(1.0);
            let mut s = 0.12 * v * env;
            if fricative && t > 0.7 {
                s += 0.05 * (rnd() - 0.5) * ((1.0 - t) * 10.0);
            }
            out.push(s);
        }
        let pause = ((0.03 + 0.25 * rnd()) * r) as usize;
        out.extend(std::iter::repeat_n(0.0, pause));
    }
    out.truncate(total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_signals_score_one_and_different_ones_low() {
        let a = synth_speech(1, ANALYSIS_RATE, 3.0);
        let b = synth_speech(2, ANALYSIS_RATE, 3.0);
        let mut delayed = vec![0.0; 1234];
        delayed.extend_from_slice(&a);
        let same = segmental_correlation(&a, &delayed, ANALYSIS_RATE).unwrap_or(0.0);
        let other = segmental_correlation(&a, &b, ANALYSIS_RATE).unwrap_or(0.0);
        assert!(same > 0.99, "same {same}");
        assert!(other < 0.5, "other {other}");
        assert_eq!(
            find_offset(&a, &delayed, ANALYSIS_RATE).map(|o| o.0),
            Some(1234)
        );
    }

    #[test]
    fn goertzel_finds_the_tone_that_is_there() {
        let s = sine(440.0, 48_000, 0.5, 1.0);
        assert!((tone_power(&s, 48_000, 440.0) - 0.5).abs() < 0.05);
        assert!(tone_power(&s, 48_000, 660.0) < 0.01);
    }
}
