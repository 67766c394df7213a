//! The loopback tool (`cargo run --release -p voice --example loopback -- --in speech.wav
//! --out heard.wav [--loss PCT] [--jitter-ms MS] [--bitrate KBPS] [--seed N] [--no-red]`): a real
//! two-peer webrtc-rs call over 127.0.0.1, every datagram crossing the lossy relay the tests
//! use, with the product's default settings. The sender plays the input file (any WAV,
//! converted to 48 kHz mono with rubato); the receiver's playout is written out, so anyone
//! can score the engine with their own material and scorer. Lives here, beside the relay
//! and the mesh it drives, so the tool and its test run the same code.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use voice::audio::wav::{read_wav, write_wav, WavSource};
use voice::dsp::{downmix, MonoResampler};
use voice::{CallConfig, PeerStats};

use super::relay::Netem;
use super::{start_mesh, MONO, RATE};

/// Silence sent after the input, so the last words leave the jitter buffer before the
/// recording stops (covers the largest jitter buffer target plus the playout queue).
const TAIL_SECS: f32 = 0.6;
/// Longest the receiver may take to play the input after it was sent before the tool gives
/// up (a stalled engine, not a slow network: the relay delays by at most `--jitter-ms`).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Command line of the loopback tool.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "loopback",
    about = "Runs a real two-peer call over loopback through a lossy relay and records what \
             the receiver played"
)]
pub struct Args {
    /// Speech to send: any WAV file (resampled to 48 kHz mono).
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Where to write what the receiver played (48 kHz mono, 16-bit).
    #[arg(long)]
    pub out: PathBuf,
    /// Media packets dropped by the relay, in percent, each direction.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Each datagram is delayed by a uniform random 0..MS milliseconds (which reorders them).
    #[arg(long = "jitter-ms", default_value_t = 0)]
    pub jitter_ms: u64,
    /// Opus bitrate in kbps (default: the engine's default).
    #[arg(long)]
    pub bitrate: Option<u32>,
    /// Seed of the relay's loss and delay draws: the same seed gives the same pattern.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Never send RED (RFC 2198), whatever the loss: plain Opus with FEC only.
    #[arg(long = "no-red")]
    pub no_red: bool,
}

/// What a loopback run produced.
pub struct Outcome {
    /// The input as sent: 48 kHz mono.
    pub sent: Vec<f32>,
    /// Everything the receiver played, from the moment the input started.
    pub heard: Vec<f32>,
    /// The receiver's view of the link.
    pub receiver: PeerStats,
    /// The sender's view (the loss the receiver reports over RTCP, the round trip).
    pub sender: PeerStats,
}

pub type ToolResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Reads any WAV file as 48 kHz mono.
pub fn read_as_engine_audio(path: &std::path::Path) -> ToolResult<Vec<f32>> {
    let (samples, format) = read_wav(path)?;
    if format.channels == 0 || format.sample_rate == 0 {
        return Err(format!("{}: no channels or no sample rate", path.display()).into());
    }
    let mut mono = Vec::with_capacity(samples.len() / usize::from(format.channels));
    downmix(&samples, format.channels, &mut mono);
    let mut resampler = MonoResampler::new(format.sample_rate, RATE)?;
    let mut out = Vec::with_capacity(mono.len() * RATE as usize / format.sample_rate as usize);
    resampler.process(&mono, &mut out);
    // Flush what the resampler holds back (one 10 ms chunk).
    resampler.process(&vec![0.0; format.sample_rate as usize / 50], &mut out);
    Ok(out)
}

/// Runs the call and writes the receiver's playout to `args.out`.
pub async fn run(args: &Args) -> ToolResult<Outcome> {
    if !(0.0..=100.0).contains(&args.loss) {
        return Err(format!("--loss {} is not a percentage", args.loss).into());
    }
    let mut speech = read_as_engine_audio(&args.input)?;
    if speech.is_empty() {
        return Err(format!("{}: no audio", args.input.display()).into());
    }
    speech.extend(std::iter::repeat_n(0.0, (RATE as f32 * TAIL_SECS) as usize));
    let mut config = CallConfig {
        bind_addrs: vec!["127.0.0.1:0".to_owned()],
        red: !args.no_red,
        ..CallConfig::default()
    };
    if let Some(kbps) = args.bitrate {
        config.bitrate = kbps.saturating_mul(1000);
        let range = voice::codec::MIN_BITRATE..=voice::codec::MAX_BITRATE;
        if !range.contains(&config.bitrate) {
            return Err(format!(
                "--bitrate {kbps} outside {}..={} kbps",
                range.start() / 1000,
                range.end() / 1000
            )
            .into());
        }
    }
    let netem = Netem {
        loss: args.loss / 100.0,
        jitter: Duration::from_millis(args.jitter_ms),
        seed: args.seed,
    };
    // Both peers start silent; the input starts once the call is up, so none of it is lost
    // to connection set-up however long that takes.
    let silence = vec![0.0; RATE as usize];
    let mesh = start_mesh(
        vec![("receiver", silence.clone()), ("sender", silence)],
        config,
        Some(netem),
    )
    .await;
    let (receiver, sender) = (&mesh.peers[0], &mesh.peers[1]);
    let heard_from = receiver.recording.samples().len();
    sender
        .call
        .set_input(Box::new(WavSource::from_samples(speech.clone(), MONO)))?;
    // Done once the receiver has played as much audio as was sent since the input started
    // (its playout runs at the same rate, behind by the link's delay).
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs_f32(speech.len() as f32 / RATE as f32);
    let wanted = heard_from + speech.len();
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    while receiver.recording.samples().len() < wanted {
        if tokio::time::Instant::now() > deadline + DRAIN_TIMEOUT {
            return Err("the receiver stopped playing audio".into());
        }
        poll.tick().await;
    }
    let recording = receiver.recording.samples();
    let heard = recording[heard_from..wanted.min(recording.len())].to_vec();
    write_wav(&args.out, &heard, MONO)?;
    let one = |stats: Vec<PeerStats>| stats.into_iter().next().ok_or("the peers disconnected");
    Ok(Outcome {
        sent: speech,
        receiver: one(receiver.call.stats())?,
        sender: one(sender.call.stats())?,
        heard,
    })
}

/// Prints the link statistics of a run.
pub fn print_stats(o: &Outcome) {
    let r = &o.receiver;
    let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1} ms"));
    println!(
        "receiver: {} packets, {:.1} % lost, {} late, jitter {:.1} ms, jitter buffer {:.0} ms \
              (a frame played {:.0} ms after its packet came, on average), \
              {:.1} % of frames concealed, {} rebuilt from FEC, {} from RED copies, level \
              {:.1} dBFS",
        r.packets_received,
        r.loss * 100.0,
        r.packets_late,
        r.jitter_ms,
        r.jitter_buffer_ms,
        r.receive_delay_ms,
        r.concealed_fraction * 100.0,
        r.fec_frames,
        r.red_frames,
        r.level_db,
    );
    println!(
        "sender: receiver reports {:.1} % loss over RTCP, {}, round trip {}, route {}",
        o.sender.remote_loss * 100.0,
        if o.sender.sending_red {
            "sending RED"
        } else {
            "sending plain Opus"
        },
        ms(o.sender.rtt_ms),
        o.sender.route.as_deref().unwrap_or("n/a"),
    );
    println!(
        "estimated mouth-to-ear (framing, codec, half the round trip, jitter buffer, playout \
         queue; device buffers excluded): {:.0} ms; first audio {} after the connection began",
        r.mouth_to_ear_ms,
        ms(r.first_audio_ms),
    );
}
