//! WAV files as capture and playout devices, paced by the wall clock like a sound card.
//!
//! [`WavSource`] releases its samples at the file's rate from the first read on, so the
//! engine sees exactly what a microphone would give it. [`WavSink`] plays into memory at its
//! rate and records when each block was handed to it, which is what latency measurements
//! need; [`Recording`] is the handle tests and benchmarks keep to read the result.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Capture, Playout, StreamFormat};
use crate::Result;

/// Reads a WAV file into interleaved `f32` samples.
pub fn read_wav(path: impl AsRef<Path>) -> Result<(Vec<f32>, StreamFormat)> {
    let mut reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    let samples = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<Vec<_>, _>>()?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1_i64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let format = StreamFormat {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    };
    Ok((samples, format))
}

/// Writes interleaved `f32` samples as a 16-bit PCM WAV file (what PESQ tools read).
pub fn write_wav(path: impl AsRef<Path>, samples: &[f32], format: StreamFormat) -> Result<()> {
    let spec = hound::WavSpec {
        channels: format.channels,
        sample_rate: format.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for &s in samples {
        writer.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    writer.finalize()?;
    Ok(())
}

/// Frames that `elapsed` is worth at `rate`.
fn frames_in(elapsed: Duration, rate: u32) -> usize {
    (elapsed.as_secs_f64() * f64::from(rate)) as usize
}

/// A WAV file (or samples in memory) played into the engine as if from a microphone.
pub struct WavSource {
    samples: Vec<f32>,
    format: StreamFormat,
    /// Interleaved samples handed out so far; past the end, silence is handed out.
    position: usize,
    started: Arc<OnceLock<Instant>>,
}

impl WavSource {
    /// Opens a WAV file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let (samples, format) = read_wav(path)?;
        Ok(Self::from_samples(samples, format))
    }

    /// Uses samples already in memory.
    pub fn from_samples(samples: Vec<f32>, format: StreamFormat) -> Self {
        Self {
            samples,
            format,
            position: 0,
            started: Arc::new(OnceLock::new()),
        }
    }

    /// The instant sample 0 was "captured" (the first read), once it has been: sample `i` is
    /// captured at `start + i / rate`. Latency measurements start from here.
    pub fn start_handle(&self) -> Arc<OnceLock<Instant>> {
        Arc::clone(&self.started)
    }
}

impl Capture for WavSource {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn read(&mut self, out: &mut Vec<f32>) -> usize {
        let start = *self.started.get_or_init(Instant::now);
        let due =
            frames_in(start.elapsed(), self.format.sample_rate) * usize::from(self.format.channels);
        let count = due.saturating_sub(self.position);
        for i in self.position..self.position + count {
            out.push(self.samples.get(i).copied().unwrap_or(0.0));
        }
        self.position += count;
        count
    }
}

/// One block handed to a [`WavSink`]: when, and where it starts in the recording.
#[derive(Debug, Clone, Copy)]
pub struct Handoff {
    /// When the engine wrote the block.
    pub at: Instant,
    /// Index of the block's first frame in the recording.
    pub frame: usize,
}

#[derive(Default)]
struct RecordingInner {
    samples: Vec<f32>,
    handoffs: Vec<Handoff>,
}

/// What a [`WavSink`] has played, shared with whoever wants to inspect it.
#[derive(Clone, Default)]
pub struct Recording {
    inner: Arc<Mutex<RecordingInner>>,
    format: Arc<OnceLock<StreamFormat>>,
}

impl Recording {
    /// A copy of every sample played so far (interleaved).
    pub fn samples(&self) -> Vec<f32> {
        self.inner
            .lock()
            .map(|r| r.samples.clone())
            .unwrap_or_default()
    }

    /// When each block was handed over.
    pub fn handoffs(&self) -> Vec<Handoff> {
        self.inner
            .lock()
            .map(|r| r.handoffs.clone())
            .unwrap_or_default()
    }

    /// The instant frame `frame` was handed to the sink, counting its position within its
    /// block at the sink's rate (the device buffer itself is excluded).
    pub fn handoff_time(&self, frame: usize) -> Option<Instant> {
        let rate = self.format.get()?.sample_rate;
        let handoffs = self.handoffs();
        let idx = handoffs
            .partition_point(|h| h.frame <= frame)
            .checked_sub(1)?;
        let h = handoffs[idx];
        Some(h.at + Duration::from_secs_f64((frame - h.frame) as f64 / f64::from(rate)))
    }

    /// Saves what was played as a 16-bit WAV file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let format = self.format.get().copied().unwrap_or(StreamFormat {
            sample_rate: crate::SAMPLE_RATE,
            channels: 1,
        });
        write_wav(path, &self.samples(), format)
    }
}

/// A virtual speaker that plays at its rate into a [`Recording`].
pub struct WavSink {
    format: StreamFormat,
    recording: Recording,
    /// When the virtual device started playing, moved forward after an underrun so that
    /// `queued` never counts silence the device already played.
    clock_start: Option<Instant>,
    written_frames: usize,
    underruns: u64,
}

impl WavSink {
    /// A sink at the given format (48 kHz mono is the engine's own, needing no conversion).
    pub fn new(format: StreamFormat) -> Self {
        let recording = Recording::default();
        let _ = recording.format.set(format);
        Self {
            format,
            recording,
            clock_start: None,
            written_frames: 0,
            underruns: 0,
        }
    }

    /// The handle to read what was played.
    pub fn recording(&self) -> Recording {
        self.recording.clone()
    }

    fn played_frames(&self) -> usize {
        self.clock_start
            .map(|s| frames_in(s.elapsed(), self.format.sample_rate))
            .unwrap_or(0)
    }
}

impl Playout for WavSink {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn queued(&self) -> usize {
        self.written_frames.saturating_sub(self.played_frames())
    }

    fn write(&mut self, interleaved: &[f32]) {
        let now = Instant::now();
        let played = self.played_frames();
        if self.clock_start.is_none() || played > self.written_frames {
            if self.clock_start.is_some() {
                self.underruns += 1;
            }
            // The device ran dry: restart its clock so this block plays from now.
            let ahead = Duration::from_secs_f64(
                self.written_frames as f64 / f64::from(self.format.sample_rate),
            );
            self.clock_start = Some(now.checked_sub(ahead).unwrap_or(now));
        }
        let frames = interleaved.len() / usize::from(self.format.channels.max(1));
        if let Ok(mut r) = self.recording.inner.lock() {
            r.handoffs.push(Handoff {
                at: now,
                frame: self.written_frames,
            });
            r.samples.extend_from_slice(interleaved);
        }
        self.written_frames += frames;
    }

    fn underruns(&self) -> u64 {
        self.underruns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONO_48K: StreamFormat = StreamFormat {
        sample_rate: 48_000,
        channels: 1,
    };

    #[test]
    fn wav_source_releases_samples_at_its_rate() {
        let mut src = WavSource::from_samples(vec![0.5; 48_000], MONO_48K);
        let mut out = Vec::new();
        src.read(&mut out);
        std::thread::sleep(Duration::from_millis(50));
        src.read(&mut out);
        assert!(
            (2_000..=10_000).contains(&out.len()),
            "released {}",
            out.len()
        );
    }

    #[test]
    fn wav_round_trip_keeps_samples() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("voice-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| crate::VoiceError::Device(e.to_string()))?;
        let path = dir.join("t.wav");
        let samples: Vec<f32> = (0..480).map(|i| (i as f32 / 480.0) - 0.5).collect();
        write_wav(&path, &samples, MONO_48K)?;
        let (back, format) = read_wav(&path)?;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(format, MONO_48K);
        assert!(samples.iter().zip(&back).all(|(a, b)| (a - b).abs() < 1e-3));
        Ok(())
    }

    #[test]
    fn wav_sink_counts_queued_frames_and_handoffs() {
        let mut sink = WavSink::new(MONO_48K);
        sink.write(&[0.0; 960]);
        assert!(sink.queued() > 800);
        let rec = sink.recording();
        assert_eq!(rec.samples().len(), 960);
        assert!(rec.handoff_time(500).is_some());
    }
}
