//! Signal processing on the send path (device audio in, 10 ms 48 kHz mono frames out) and
//! the conversions the receive path needs (48 kHz mono to the device's rate and channels).
//!
//! Send chain, in order: downmix to mono → resample to 48 kHz → echo cancellation (SpeexDSP,
//! fed with what the engine plays, switchable; see [`crate::echo`]) → noise suppression
//! (RNNoise, switchable) → voice-activity detection → automatic gain (switchable) → noise
//! gate. Echo cancellation comes first because it needs the microphone as linear as possible:
//! RNNoise's time-varying gains would make the echo path look like it keeps changing. The gain only moves
//! while someone is speaking and then slowly, so background noise is never pumped up in the
//! pauses; a peak limiter catches what the slow gain cannot.

use nnnoiseless::DenoiseState;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

use crate::audio::StreamFormat;
use crate::echo::{EchoCanceller, AEC_FRAME};
use crate::{Result, VoiceError, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE};

/// RNNoise works on 10 ms frames at 48 kHz.
const SUBFRAME: usize = DenoiseState::FRAME_SIZE;
const _: () = assert!(
    SUBFRAME == AEC_FRAME,
    "the canceller and RNNoise share 10 ms frames"
);
/// RNNoise expects samples scaled like 16-bit integers.
const I16_SCALE: f32 = 32768.0;

/// Averages interleaved channels into mono, appending to `out`.
pub fn downmix(interleaved: &[f32], channels: u16, out: &mut Vec<f32>) {
    let ch = usize::from(channels.max(1));
    out.extend(
        interleaved
            .chunks_exact(ch)
            .map(|f| f.iter().sum::<f32>() / ch as f32),
    );
}

/// Copies mono samples to every channel, appending interleaved samples to `out`.
pub fn upmix(mono: &[f32], channels: u16, out: &mut Vec<f32>) {
    for &s in mono {
        out.extend(std::iter::repeat_n(s, usize::from(channels.max(1))));
    }
}

/// Root-mean-square level of a block in dBFS (−100 for digital silence).
pub fn level_dbfs(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return -100.0;
    }
    let ms = samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32;
    (10.0 * ms.max(1e-10).log10()).max(-100.0)
}

/// A streaming mono resampler between two fixed rates (rubato's FFT resampler), or a plain
/// copy when the rates are equal.
pub struct MonoResampler {
    inner: Option<Fft<f32>>,
    chunk: usize,
    /// Rates, for [`MonoResampler::pending_out`].
    rates: (u32, u32),
    pending: Vec<f32>,
    out_buf: Vec<f32>,
}

impl MonoResampler {
    /// Converts from `from` Hz to `to` Hz in 10 ms chunks (the delay this adds is one chunk).
    pub fn new(from: u32, to: u32) -> Result<Self> {
        let chunk = (from / 100).max(1) as usize;
        let inner = if from == to {
            None
        } else {
            Some(
                Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input)
                    .map_err(|e| VoiceError::Resample(e.to_string()))?,
            )
        };
        let out_max = inner.as_ref().map(|r| r.output_frames_max()).unwrap_or(0);
        Ok(Self {
            inner,
            chunk,
            rates: (from, to),
            pending: Vec::with_capacity(chunk * 4),
            out_buf: vec![0.0; out_max],
        })
    }

    /// Input held back until a whole chunk is there, counted at the output rate.
    pub fn pending_out(&self) -> usize {
        (self.pending.len() as u64 * u64::from(self.rates.1) / u64::from(self.rates.0.max(1)))
            as usize
    }

    /// Feeds `input`, appending every resampled sample that is ready to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        self.pending.extend_from_slice(input);
        let mut start = 0;
        while self.pending.len() - start >= self.chunk {
            let chunk = &self.pending[start..start + self.chunk];
            let frames_out = self.out_buf.len();
            let result = InterleavedSlice::new(chunk, 1, self.chunk)
                .ok()
                .zip(InterleavedSlice::new_mut(&mut self.out_buf, 1, frames_out).ok());
            if let Some((inp, mut outp)) = result {
                if let Ok((_, produced)) = inner.process_into_buffer(&inp, &mut outp, None) {
                    out.extend_from_slice(&self.out_buf[..produced]);
                }
            }
            start += self.chunk;
        }
        self.pending.drain(..start);
    }
}

/// Decides whether someone is speaking, frame by frame, with a hangover so word endings and
/// short pauses are not clipped.
struct VoiceActivity {
    /// Slowly tracked background level (dBFS): a floor that rises slowly and falls fast.
    noise_floor: f32,
    hangover: u32,
}

/// How far above the background a frame must be to count as speech.
const VAD_MARGIN_DB: f32 = 9.0;
/// Frames quieter than this are never speech, whatever the background.
const VAD_ABSOLUTE_DB: f32 = -55.0;
/// Keep "speaking" for 300 ms after the last voiced frame.
const VAD_HANGOVER_FRAMES: u32 = (300.0 / FRAME_MS) as u32;
/// The noise floor creeps up by this much per frame: 2.5 dB/s.
const VAD_FLOOR_RISE_DB: f32 = 2.5 * FRAME_MS as f32 / 1000.0;

impl VoiceActivity {
    fn new() -> Self {
        Self {
            noise_floor: -70.0,
            hangover: 0,
        }
    }

    /// `rnn_prob` is RNNoise's voice probability when noise suppression ran.
    fn update(&mut self, level: f32, rnn_prob: Option<f32>) -> bool {
        // Floor falls at once to quieter frames and creeps up 2.5 dB/s, so steady noise is
        // learnt within seconds but speech does not raise it much.
        self.noise_floor = if level < self.noise_floor {
            level
        } else {
            self.noise_floor + VAD_FLOOR_RISE_DB
        };
        let energetic = level > VAD_ABSOLUTE_DB && level > self.noise_floor + VAD_MARGIN_DB;
        let voiced = energetic || rnn_prob.is_some_and(|p| p > 0.6 && level > VAD_ABSOLUTE_DB);
        if voiced {
            self.hangover = VAD_HANGOVER_FRAMES;
        } else {
            self.hangover = self.hangover.saturating_sub(1);
        }
        self.hangover > 0
    }
}

/// Automatic gain that adapts only during speech, slowly, within ±12 dB, and leaves a
/// talker who is already near the target alone.
struct AutoGain {
    gain_db: f32,
    /// Smoothed mean power of speech frames, before gain: the level the gain corrects.
    speech_power: f32,
    /// Voiced frames seen: the gain waits until the level is known.
    speech_frames: u32,
    /// Loudest recent sample before gain, decaying slowly: the gain never pushes it into
    /// the limiter.
    peak: f32,
    /// Whether the gain is moving: starts when the level is off by more than
    /// [`AGC_DEADBAND_DB`], stops within [`AGC_SETTLED_DB`].
    adapting: bool,
    /// Limiter gain (linear), drops instantly on peaks and recovers over ~100 ms.
    limiter: f32,
}

/// Speech is brought towards this RMS level.
const AGC_TARGET_DB: f32 = -20.0;
/// The gain never leaves this range, so a whisper is not blown up into noise.
const AGC_MAX_DB: f32 = 12.0;
const AGC_MIN_DB: f32 = -12.0;
/// At most 5 dB/s of change during speech (0.05 dB per voiced 10 ms frame): too slow to be
/// heard as pumping.
const AGC_STEP_DB: f32 = 5.0 * FRAME_MS as f32 / 1000.0;
/// Weight of each voiced frame in the smoothed speech power: about a second of speech.
const AGC_LEVEL_SMOOTHING: f32 = FRAME_MS as f32 / 1000.0;
/// Voiced frames (half a second) before the level is trusted enough to move the gain.
const AGC_WARMUP_FRAMES: u32 = (500.0 / FRAME_MS) as u32;
/// A speech level this far from where the gain puts it starts the gain moving. A
/// conversation's level varies by more than this between talkers and sentences anyway, and
/// a gain that keeps drifting with every sentence is itself a distortion (it cost 0.1
/// PESQ-WB on well-levelled speech, where it should do nothing).
const AGC_DEADBAND_DB: f32 = 6.0;
/// ... and once moving, the gain stops this close to its aim.
const AGC_SETTLED_DB: f32 = 1.0;
/// The recent peak decays by this factor per frame: it halves in ~3 s (0.995 per 20 ms).
const AGC_PEAK_DECAY: f32 = 1.0 - 0.005 * FRAME_MS as f32 / 20.0;
/// Peaks are held below this linear amplitude.
const LIMIT: f32 = 0.95;

impl AutoGain {
    fn new() -> Self {
        Self {
            gain_db: 0.0,
            speech_power: 0.0,
            speech_frames: 0,
            peak: 0.0,
            adapting: false,
            limiter: 1.0,
        }
    }

    fn process(&mut self, frame: &mut [f32], level: f32, speaking: bool, enabled: bool) {
        let frame_peak = frame.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        self.peak = frame_peak.max(self.peak * AGC_PEAK_DECAY);
        if enabled && speaking && level > VAD_ABSOLUTE_DB {
            let power = 10f32.powf(level / 10.0);
            self.speech_power = if self.speech_frames == 0 {
                power
            } else {
                self.speech_power + (power - self.speech_power) * AGC_LEVEL_SMOOTHING
            };
            self.speech_frames = self.speech_frames.saturating_add(1);
            let speech_db = 10.0 * self.speech_power.max(1e-10).log10();
            // Never more gain than keeps the recent peaks out of the limiter.
            let headroom = 20.0 * (LIMIT / self.peak.max(1e-5)).log10();
            let want = (AGC_TARGET_DB - speech_db)
                .min(headroom)
                .clamp(AGC_MIN_DB, AGC_MAX_DB);
            let error = (want - self.gain_db).abs();
            if error > AGC_DEADBAND_DB {
                self.adapting = true;
            } else if error < AGC_SETTLED_DB {
                self.adapting = false;
            }
            if self.adapting && self.speech_frames >= AGC_WARMUP_FRAMES {
                self.gain_db += (want - self.gain_db).clamp(-AGC_STEP_DB, AGC_STEP_DB);
            }
        }
        if !enabled {
            self.gain_db = 0.0;
            self.adapting = false;
        }
        let g = 10f32.powf(self.gain_db / 20.0);
        for s in frame.iter_mut() {
            let v = *s * g;
            let needed = if v.abs() * self.limiter > LIMIT {
                LIMIT / v.abs()
            } else {
                1.0
            };
            self.limiter = needed.min(self.limiter + (1.0 - self.limiter) * 0.0005);
            *s = v * self.limiter;
        }
    }
}

/// Send-path settings that can change mid-call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendSettings {
    /// Acoustic echo cancellation against what the engine plays (SpeexDSP). On by default:
    /// with no echo to remove it steps aside and leaves the near voice as it was (PESQ-WB
    /// 4.41 on against 4.37 off in double talk), even while the far end talks
    /// (voice/README.md).
    pub echo_cancellation: bool,
    /// RNNoise noise suppression.
    pub noise_suppression: bool,
    /// Automatic gain control (speech-only adaptation, see [`AutoGain`]).
    pub auto_gain: bool,
    /// Silence the frames between utterances (also lets DTX stop sending).
    pub noise_gate: bool,
    /// Manual input gain, linear, applied before everything else.
    pub input_gain: f32,
}

impl Default for SendSettings {
    fn default() -> Self {
        Self {
            echo_cancellation: true,
            noise_suppression: true,
            auto_gain: true,
            noise_gate: true,
            input_gain: 1.0,
        }
    }
}

/// What the chain learnt about a frame it produced.
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    /// Voice activity (with hangover): drives the speaking indicator.
    pub speaking: bool,
    /// Input level before gain and gate, in dBFS, for a level meter.
    pub level_db: f32,
}

/// The whole send-path DSP for one capture device.
pub struct SendChain {
    format: StreamFormat,
    mono: Vec<f32>,
    resampler: MonoResampler,
    at_48k: Vec<f32>,
    echo: EchoCanceller,
    /// One 10 ms subframe between the canceller and RNNoise.
    sub: [f32; SUBFRAME],
    denoiser: Box<DenoiseState<'static>>,
    sub_in: [f32; SUBFRAME],
    sub_out: [f32; SUBFRAME],
    frame: Vec<f32>,
    vad: VoiceActivity,
    agc: AutoGain,
    /// Current gate gain, ramped per sample to avoid clicks.
    gate: f32,
    /// Set false for the first RNNoise frame, whose output is fade-in garbage.
    denoiser_warm: bool,
}

impl SendChain {
    /// A chain for a device producing `format`.
    pub fn new(format: StreamFormat) -> Result<Self> {
        Ok(Self {
            format,
            mono: Vec::with_capacity(format.sample_rate as usize / 10),
            resampler: MonoResampler::new(format.sample_rate, SAMPLE_RATE)?,
            at_48k: Vec::with_capacity(FRAME_SAMPLES * 4),
            echo: EchoCanceller::new()?,
            sub: [0.0; SUBFRAME],
            denoiser: DenoiseState::new(),
            sub_in: [0.0; SUBFRAME],
            sub_out: [0.0; SUBFRAME],
            frame: Vec::with_capacity(FRAME_SAMPLES),
            vad: VoiceActivity::new(),
            agc: AutoGain::new(),
            gate: 1.0,
            denoiser_warm: false,
        })
    }

    /// The device format this chain was built for.
    pub fn format(&self) -> StreamFormat {
        self.format
    }

    /// Hands the canceller what the engine plays (48 kHz mono, as handed to the device).
    pub fn far_end(&mut self, played: &[f32]) {
        self.echo.played(played);
    }

    /// Keeps the canceller's pairing of microphone and far end causal: `unplayed` is what
    /// the playout device still holds, in 48 kHz samples. Call once per engine tick.
    pub fn align_far_end(&mut self, unplayed: usize) -> bool {
        // Captured but not yet through the canceller.
        let pending = self.at_48k.len() + self.resampler.pending_out();
        self.echo.align(unplayed, pending)
    }

    /// Forgets the echo path (a new output device).
    pub fn reset_echo(&mut self) {
        self.echo.reset();
    }

    /// Whether the canceller hears an echo in the microphone, 0 (none: it leaves the
    /// microphone alone) to 1 (see [`EchoCanceller::echo_presence`]).
    pub fn echo_presence(&self) -> f32 {
        self.echo.echo_presence()
    }

    /// Times the canceller's pairing was realigned since the chain was built.
    pub fn echo_realigned(&self) -> u64 {
        self.echo.realigned()
    }

    /// Feeds captured interleaved samples; calls `on_frame` for each finished 10 ms frame.
    pub fn push(
        &mut self,
        interleaved: &[f32],
        settings: SendSettings,
        mut on_frame: impl FnMut(&[f32], FrameInfo),
    ) {
        self.mono.clear();
        downmix(interleaved, self.format.channels, &mut self.mono);
        if settings.input_gain != 1.0 {
            self.mono.iter_mut().for_each(|s| *s *= settings.input_gain);
        }
        self.resampler.process(&self.mono, &mut self.at_48k);
        while self.at_48k.len() >= FRAME_SAMPLES {
            self.frame.clear();
            let mut rnn_prob: Option<f32> = None;
            for sub in self.at_48k[..FRAME_SAMPLES].chunks_exact(SUBFRAME) {
                self.sub.copy_from_slice(sub);
                self.echo.process(&mut self.sub, settings.echo_cancellation);
                let sub = &self.sub;
                if settings.noise_suppression {
                    for (d, s) in self.sub_in.iter_mut().zip(sub) {
                        *d = s * I16_SCALE;
                    }
                    let p = self.denoiser.process_frame(&mut self.sub_out, &self.sub_in);
                    rnn_prob = Some(rnn_prob.map_or(p, |q: f32| q.max(p)));
                    if self.denoiser_warm {
                        self.frame
                            .extend(self.sub_out.iter().map(|s| s / I16_SCALE));
                    } else {
                        self.denoiser_warm = true;
                        self.frame.extend(std::iter::repeat_n(0.0, SUBFRAME));
                    }
                } else {
                    self.frame.extend_from_slice(sub);
                }
            }
            self.at_48k.drain(..FRAME_SAMPLES);
            let level_db = level_dbfs(&self.frame);
            let speaking = self.vad.update(level_db, rnn_prob);
            self.agc
                .process(&mut self.frame, level_db, speaking, settings.auto_gain);
            let gate_target = if settings.noise_gate && !speaking {
                0.0
            } else {
                1.0
            };
            // Ramp over ~10 ms so opening or closing the gate never clicks.
            let step = 1.0 / 480.0;
            for s in self.frame.iter_mut() {
                self.gate += (gate_target - self.gate).clamp(-step, step);
                *s *= self.gate;
            }
            on_frame(&self.frame, FrameInfo { speaking, level_db });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, rate: u32, secs: f32, amp: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| amp * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn resampler_converts_44k1_to_48k_keeping_pitch_and_length() -> Result<()> {
        let input = tone(1000.0, 44_100, 1.0, 0.5);
        let mut r = MonoResampler::new(44_100, 48_000)?;
        let mut out = Vec::new();
        for chunk in input.chunks(441 * 3 + 7) {
            r.process(chunk, &mut out);
        }
        assert!(
            (47_000..=48_000).contains(&out.len()),
            "{} samples",
            out.len()
        );
        // Count zero crossings in the settled middle: 1 kHz gives ~2000 per second.
        let mid = &out[4_800..43_200];
        let crossings = mid.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!(
            (790..=810).contains(&crossings),
            "{crossings} crossings in 0.8 s"
        );
        Ok(())
    }

    #[test]
    fn downmix_and_upmix_are_inverse_for_identical_channels() {
        let mut mono = Vec::new();
        downmix(&[0.5, 0.5, -0.25, -0.25], 2, &mut mono);
        assert_eq!(mono, vec![0.5, -0.25]);
        let mut stereo = Vec::new();
        upmix(&mono, 2, &mut stereo);
        assert_eq!(stereo, vec![0.5, 0.5, -0.25, -0.25]);
    }

    fn run_chain(input: &[f32], settings: SendSettings) -> Result<(Vec<f32>, Vec<FrameInfo>)> {
        let mut chain = SendChain::new(StreamFormat {
            sample_rate: 48_000,
            channels: 1,
        })?;
        let mut out = Vec::new();
        let mut infos = Vec::new();
        chain.push(input, settings, |f, info| {
            out.extend_from_slice(f);
            infos.push(info);
        });
        Ok((out, infos))
    }

    #[test]
    fn gate_silences_quiet_noise_and_passes_a_loud_tone() -> Result<()> {
        let mut input: Vec<f32> = (0..48_000)
            .map(|i| 0.001 * (((i * 7919) % 200) as f32 / 100.0 - 1.0))
            .collect();
        input.extend(tone(440.0, 48_000, 1.0, 0.3));
        let settings = SendSettings {
            noise_suppression: false,
            auto_gain: false,
            ..SendSettings::default()
        };
        let (out, infos) = run_chain(&input, settings)?;
        assert_eq!(out.len(), 96_000);
        assert!(
            level_dbfs(&out[24_000..48_000]) < -90.0,
            "noise passed the gate"
        );
        assert!(level_dbfs(&out[60_000..]) > -16.0, "tone was gated");
        // Frames 0.6 s (noise) and 1.4 s (the tone) in.
        let frame_at = |secs: f64| (secs * 1000.0 / FRAME_MS) as usize;
        assert!(!infos[frame_at(0.6)].speaking && infos[frame_at(1.4)].speaking);
        Ok(())
    }

    #[test]
    fn auto_gain_does_not_pump_noise_in_pauses() -> Result<()> {
        // A quiet talker (-36 dBFS) with pauses of steady noise between utterances.
        let mut input = Vec::new();
        for _ in 0..4 {
            input.extend(tone(300.0, 48_000, 1.0, 0.022));
            input.extend((0..48_000).map(|i| 0.0005 * ((i as f32 * 0.37).sin())));
        }
        let settings = SendSettings {
            noise_suppression: false,
            noise_gate: false,
            ..SendSettings::default()
        };
        let (out, _) = run_chain(&input, settings)?;
        // Within a pause the gain is frozen: the noise level at its start and end match.
        for k in 0..4 {
            let start = (2 * k + 1) * 48_000;
            let early = level_dbfs(&out[start + 19_200..start + 28_800]);
            let late = level_dbfs(&out[start + 38_400..start + 48_000]);
            assert!(
                (early - late).abs() < 0.5,
                "pause {k}: {early} dB -> {late} dB"
            );
        }
        let talk_end = level_dbfs(&out[6 * 48_000 + 24_000..7 * 48_000]);
        assert!(talk_end > -31.0, "quiet talker not raised: {talk_end}");
        Ok(())
    }

    #[test]
    fn auto_gain_leaves_a_well_levelled_talker_untouched() -> Result<()> {
        // Speech 3 dB above the target: inside the dead band, so the gain stays at 0 dB.
        let input: Vec<f32> = crate::analysis::synth_speech(4, 48_000, 6.0);
        let level = level_dbfs(&input);
        let scale = 10f32.powf((AGC_TARGET_DB + 3.0 - level) / 20.0);
        let input: Vec<f32> = input.iter().map(|s| s * scale).collect();
        let settings = SendSettings {
            // Its residual-echo suppressor delays by 10 ms: compared sample by sample here.
            echo_cancellation: false,
            noise_suppression: false,
            noise_gate: false,
            ..SendSettings::default()
        };
        let (out, _) = run_chain(&input, settings)?;
        let worst = input
            .iter()
            .zip(&out)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "a levelled talker was changed by up to {worst}"
        );
        Ok(())
    }

    #[test]
    fn noise_suppression_keeps_frame_size() -> Result<()> {
        let (out, infos) = run_chain(&tone(200.0, 48_000, 0.5, 0.2), SendSettings::default())?;
        assert_eq!(out.len(), 24_000);
        assert_eq!(infos.len(), 24_000 / FRAME_SAMPLES);
        Ok(())
    }
}

#[cfg(test)]
mod device_format_tests {
    use super::*;

    #[test]
    fn chain_accepts_44k1_stereo_devices() -> Result<()> {
        let format = StreamFormat {
            sample_rate: 44_100,
            channels: 2,
        };
        let mut chain = SendChain::new(format)?;
        let stereo: Vec<f32> = (0..44_100)
            .map(|i| 0.3 * (std::f32::consts::TAU * 880.0 * i as f32 / 44_100.0).sin())
            .flat_map(|s| [s, s])
            .collect();
        let mut frames = 0;
        let mut level = -100.0f32;
        let settings = SendSettings {
            noise_suppression: false,
            ..SendSettings::default()
        };
        for chunk in stereo.chunks(882) {
            chain.push(chunk, settings, |_, info| {
                frames += 1;
                level = info.level_db;
            });
        }
        assert!(frames >= 48, "{frames} frames");
        assert!(level > -20.0, "level {level}");
        Ok(())
    }
}
