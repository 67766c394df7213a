//! Plays a 440 Hz tone for two seconds on a playout device:
//! `cargo run -p voice --example tone -- [DEVICE]`.

use voice::audio::device::CpalPlayout;
use voice::audio::Playout;

fn main() -> voice::Result<()> {
    let name = std::env::args().nth(1);
    let mut speaker = CpalPlayout::open(name.as_deref())?;
    let format = speaker.format();
    println!("opened {format:?}");
    let rate = format.sample_rate as usize;
    let mut written = 0usize;
    let start = std::time::Instant::now();
    while start.elapsed().as_secs_f32() < 2.0 {
        if speaker.queued() < rate / 20 {
            let block: Vec<f32> = (written..written + rate / 100)
                .map(|i| 0.3 * (std::f32::consts::TAU * 440.0 * i as f32 / rate as f32).sin())
                .flat_map(|s| std::iter::repeat_n(s, usize::from(format.channels)))
                .collect();
            speaker.write(&block);
            written += rate / 100;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    println!(
        "wrote {written} frames in 2 s, queued {}, underruns {}",
        speaker.queued(),
        speaker.underruns()
    );
    Ok(())
}
