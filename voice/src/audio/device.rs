//! Real sound devices through cpal.
//!
//! Each device runs on its own thread, which owns the cpal stream (not `Send` on every
//! platform) and supervises it: when the device reports an error or disappears, the stream
//! is dropped and the thread tries to open the same device again every half second, so a
//! headset unplugged mid-call is picked up when it comes back. The real-time callbacks only
//! move samples through a preallocated lock-free ring (`rtrb`) and count what they drop or
//! miss in atomics: no allocation, no lock, no logging there.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{ErrorKind, FromSample, SampleFormat, SizedSample, StreamConfig};
use rtrb::{Consumer, Producer, RingBuffer};

use super::{Capture, Playout, StreamFormat};
use crate::{Result, VoiceError};

/// Ring size: one second of audio. The engine drains capture every 5 ms and keeps playout
/// 10–30 ms ahead, so this only fills if the engine stalls for a second; then the newest
/// captured samples are dropped (and counted) rather than blocking the device.
const RING_SECONDS: usize = 1;
/// How often the supervisor checks its stream and retries a missing device.
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);

/// Whether a device is for capture or playout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Input,
    Output,
}

/// The name users pick a device by: cpal's device id (the ALSA PCM name such as `pulse` or
/// `hw:CARD=...` on Linux), falling back to its description.
fn device_name(device: &cpal::Device) -> String {
    match device.id() {
        Ok(id) => id.to_string(),
        Err(_) => device
            .description()
            .map(|d| d.name().to_owned())
            .unwrap_or_else(|_| device.to_string()),
    }
}

/// A device answers to its id (`alsa:pulse`), its id without the host (`pulse`), its
/// display name or its description.
fn matches(device: &cpal::Device, name: &str) -> bool {
    let id = device_name(device);
    id == name
        || id.split_once(':').is_some_and(|(_, short)| short == name)
        || device.to_string() == name
        || device.description().is_ok_and(|d| d.name() == name)
}

/// Names of the capture devices cpal can see.
pub fn input_devices() -> Vec<String> {
    cpal::default_host()
        .input_devices()
        .map(|ds| ds.map(|d| device_name(&d)).collect())
        .unwrap_or_default()
}

/// Names of the playout devices cpal can see.
pub fn output_devices() -> Vec<String> {
    cpal::default_host()
        .output_devices()
        .map(|ds| ds.map(|d| device_name(&d)).collect())
        .unwrap_or_default()
}

/// Finds a device by exact name (or the host default when `name` is `None`).
fn find(direction: Direction, name: Option<&str>) -> Result<cpal::Device> {
    let host = cpal::default_host();
    let found = match (direction, name) {
        (Direction::Input, None) => host.default_input_device(),
        (Direction::Output, None) => host.default_output_device(),
        (Direction::Input, Some(n)) => host
            .input_devices()
            .ok()
            .and_then(|mut ds| ds.find(|d| matches(d, n))),
        (Direction::Output, Some(n)) => host
            .output_devices()
            .ok()
            .and_then(|mut ds| ds.find(|d| matches(d, n))),
    };
    found.ok_or_else(|| {
        VoiceError::Device(format!(
            "no {direction:?} device {}",
            name.unwrap_or("(default)")
        ))
    })
}

fn default_config(
    device: &cpal::Device,
    direction: Direction,
) -> Result<(StreamConfig, SampleFormat)> {
    let supported = match direction {
        Direction::Input => device.default_input_config(),
        Direction::Output => device.default_output_config(),
    }
    .map_err(|e| VoiceError::Device(e.to_string()))?;
    Ok((supported.config(), supported.sample_format()))
}

/// Counters shared between a device's callback, its supervisor and its handle.
#[derive(Default)]
struct DeviceCounters {
    /// Samples dropped because the ring was full (capture) or frames missing (playout).
    lost: AtomicU64,
    /// Set by the error callback: the supervisor rebuilds the stream.
    broken: AtomicBool,
    /// Set by the handle's drop: the supervisor ends.
    stop: AtomicBool,
    /// Times the stream was rebuilt after an error.
    reopened: AtomicU64,
}

/// The stream error callback: glitches (xruns, realtime denied) are counted and lived with;
/// anything that means the stream or device is gone marks it broken for the supervisor.
fn error_handler(counters: &Arc<DeviceCounters>) -> impl FnMut(cpal::Error) + Send + 'static {
    let counters = Arc::clone(counters);
    move |e: cpal::Error| match e.kind() {
        ErrorKind::Xrun | ErrorKind::RealtimeDenied | ErrorKind::DeviceChanged => {
            counters.lost.fetch_add(1, Ordering::Relaxed);
        }
        _ => counters.broken.store(true, Ordering::Relaxed),
    }
}

fn build_input<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    mut producer: Producer<f32>,
    counters: Arc<DeviceCounters>,
) -> Result<cpal::Stream>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let on_error = error_handler(&counters);
    device
        .build_input_stream::<T, _, _>(
            *config,
            move |data: &[T], _| {
                let mut dropped = 0u64;
                for &s in data {
                    if producer.push(s.to_sample::<f32>()).is_err() {
                        dropped += 1;
                    }
                }
                if dropped > 0 {
                    counters.lost.fetch_add(dropped, Ordering::Relaxed);
                }
            },
            on_error,
            None,
        )
        .map_err(|e| VoiceError::Device(e.to_string()))
}

fn build_output<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    mut consumer: Consumer<f32>,
    counters: Arc<DeviceCounters>,
) -> Result<cpal::Stream>
where
    T: SizedSample + FromSample<f32>,
{
    let on_error = error_handler(&counters);
    let mut started = false;
    device
        .build_output_stream::<T, _, _>(
            *config,
            move |out: &mut [T], _| {
                let mut short = false;
                for o in out.iter_mut() {
                    *o = match consumer.pop() {
                        Ok(v) => {
                            started = true;
                            T::from_sample(v)
                        }
                        Err(_) => {
                            short = true;
                            T::EQUILIBRIUM
                        }
                    };
                }
                if short && started {
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                }
            },
            on_error,
            None,
        )
        .map_err(|e| VoiceError::Device(e.to_string()))
}

/// The end of a device's ring that the engine-side handle keeps.
enum RingEnd {
    /// Capture: the engine reads what the callback pushed.
    Consumer(Consumer<f32>),
    /// Playout: the engine pushes what the callback plays.
    Producer(Producer<f32>),
}

/// Opens and starts a stream; the engine's end of its new ring goes out through `hand_over`.
fn open_stream(
    direction: Direction,
    name: Option<&str>,
    config: &StreamConfig,
    format: SampleFormat,
    counters: &Arc<DeviceCounters>,
    hand_over: &std_mpsc::Sender<RingEnd>,
) -> Result<cpal::Stream> {
    let device = find(direction, name)?;
    let capacity = config.sample_rate as usize * usize::from(config.channels) * RING_SECONDS;
    let (producer, consumer) = RingBuffer::<f32>::new(capacity);
    let counters = Arc::clone(counters);
    let (stream, end) = match direction {
        Direction::Input => {
            let stream = if format == SampleFormat::I16 {
                build_input::<i16>(&device, config, producer, counters)?
            } else {
                build_input::<f32>(&device, config, producer, counters)?
            };
            (stream, RingEnd::Consumer(consumer))
        }
        Direction::Output => {
            let stream = if format == SampleFormat::I16 {
                build_output::<i16>(&device, config, consumer, counters)?
            } else {
                build_output::<f32>(&device, config, consumer, counters)?
            };
            (stream, RingEnd::Producer(producer))
        }
    };
    stream
        .play()
        .map_err(|e| VoiceError::Device(e.to_string()))?;
    hand_over
        .send(end)
        .map_err(|_| VoiceError::Device("device handle gone".into()))?;
    Ok(stream)
}

/// The engine-side handle of a supervised device: dropping it stops the supervisor.
struct Supervised {
    format: StreamFormat,
    /// New rings after the device was reopened.
    ends: std_mpsc::Receiver<RingEnd>,
    counters: Arc<DeviceCounters>,
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.counters.stop.store(true, Ordering::Relaxed);
    }
}

impl Supervised {
    /// The newest ring end the supervisor handed over, if any.
    fn newest(&self) -> Option<RingEnd> {
        self.ends.try_iter().last()
    }
}

/// Starts the supervisor thread for a device and waits for its first stream.
fn supervise(direction: Direction, name: Option<&str>) -> Result<(Supervised, RingEnd)> {
    let device = find(direction, name)?;
    let (config, sample_format) = default_config(&device, direction)?;
    let format = StreamFormat {
        sample_rate: config.sample_rate,
        channels: config.channels,
    };
    let counters = Arc::new(DeviceCounters::default());
    let (hand_over, ends) = std_mpsc::channel();
    let (first_tx, first_rx) = std_mpsc::channel::<Result<()>>();
    let name = name.map(str::to_owned);
    let thread_counters = Arc::clone(&counters);
    thread::Builder::new()
        .name(format!("sohbet-audio-{direction:?}").to_lowercase())
        .spawn(move || {
            let counters = thread_counters;
            let open = || {
                open_stream(
                    direction,
                    name.as_deref(),
                    &config,
                    sample_format,
                    &counters,
                    &hand_over,
                )
            };
            let mut stream = match open() {
                Ok(s) => {
                    let _ = first_tx.send(Ok(()));
                    Some(s)
                }
                Err(e) => {
                    let _ = first_tx.send(Err(e));
                    return;
                }
            };
            while !counters.stop.load(Ordering::Relaxed) {
                thread::sleep(SUPERVISE_EVERY);
                if counters.broken.swap(false, Ordering::Relaxed) {
                    tracing::warn!(?direction, "audio device failed; reopening");
                    stream = None;
                }
                if stream.is_none() {
                    match open() {
                        Ok(s) => {
                            counters.reopened.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(?direction, "audio device back");
                            stream = Some(s);
                        }
                        Err(e) => tracing::debug!(?direction, error = %e, "device still missing"),
                    }
                }
            }
            drop(stream);
        })
        .map_err(|e| VoiceError::Device(e.to_string()))?;
    first_rx
        .recv()
        .map_err(|_| VoiceError::Device("audio thread died".into()))??;
    let first = ends
        .recv()
        .map_err(|_| VoiceError::Device("audio thread died".into()))?;
    Ok((
        Supervised {
            format,
            ends,
            counters,
        },
        first,
    ))
}

/// A microphone (or any capture device) through cpal.
pub struct CpalCapture {
    device: Supervised,
    consumer: Option<Consumer<f32>>,
}

impl CpalCapture {
    /// Opens the capture device called `name`, or the default one, at its default format.
    pub fn open(name: Option<&str>) -> Result<Self> {
        let (device, first) = supervise(Direction::Input, name)?;
        let consumer = match first {
            RingEnd::Consumer(c) => Some(c),
            RingEnd::Producer(_) => None,
        };
        Ok(Self { device, consumer })
    }

    /// Times the device was reopened after failing.
    pub fn reopened(&self) -> u64 {
        self.device.counters.reopened.load(Ordering::Relaxed)
    }
}

impl Capture for CpalCapture {
    fn format(&self) -> StreamFormat {
        self.device.format
    }

    fn read(&mut self, out: &mut Vec<f32>) -> usize {
        if let Some(RingEnd::Consumer(c)) = self.device.newest() {
            self.consumer = Some(c);
        }
        let Some(consumer) = self.consumer.as_mut() else {
            return 0;
        };
        let available = consumer.slots();
        let Ok(chunk) = consumer.read_chunk(available) else {
            return 0;
        };
        let (a, b) = chunk.as_slices();
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        chunk.commit_all();
        available
    }

    fn dropped(&self) -> u64 {
        self.device.counters.lost.load(Ordering::Relaxed)
    }
}

/// A speaker (or any playout device) through cpal.
pub struct CpalPlayout {
    device: Supervised,
    producer: Option<Producer<f32>>,
}

impl CpalPlayout {
    /// Opens the playout device called `name`, or the default one, at its default format.
    pub fn open(name: Option<&str>) -> Result<Self> {
        let (device, first) = supervise(Direction::Output, name)?;
        let producer = match first {
            RingEnd::Producer(p) => Some(p),
            RingEnd::Consumer(_) => None,
        };
        Ok(Self { device, producer })
    }
}

impl Playout for CpalPlayout {
    fn format(&self) -> StreamFormat {
        self.device.format
    }

    fn queued(&self) -> usize {
        // A ring whose device side is gone (the stream was rebuilt) plays nothing: report it
        // empty so the engine writes, and `write` picks up the new ring.
        let channels = usize::from(self.device.format.channels.max(1));
        self.producer
            .as_ref()
            .filter(|p| !p.is_abandoned())
            .map(|p| (p.buffer().capacity() - p.slots()) / channels)
            .unwrap_or(0)
    }

    fn write(&mut self, interleaved: &[f32]) {
        if let Some(RingEnd::Producer(p)) = self.device.newest() {
            self.producer = Some(p);
        }
        let Some(producer) = self.producer.as_mut() else {
            return;
        };
        for &s in interleaved {
            if producer.push(s).is_err() {
                break;
            }
        }
    }

    fn underruns(&self) -> u64 {
        self.device.counters.lost.load(Ordering::Relaxed)
    }
}
