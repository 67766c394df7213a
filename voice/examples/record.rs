//! Records from a capture device and prints its level once a second:
//! `cargo run -p voice --example record -- [DEVICE] [SECONDS]`. Unplug and replug the device
//! meanwhile to watch it being reopened.

use voice::audio::device::CpalCapture;
use voice::audio::Capture;

fn main() -> voice::Result<()> {
    let name = std::env::args().nth(1);
    let seconds: u32 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut mic = CpalCapture::open(name.as_deref())?;
    println!("opened {:?}", mic.format());
    for second in 0..seconds {
        let mut samples = Vec::new();
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            mic.read(&mut samples);
        }
        println!(
            "{second}: read {} samples, level {:.1} dBFS, dropped {}, reopened {}",
            samples.len(),
            voice::dsp::level_dbfs(&samples),
            mic.dropped(),
            mic.reopened()
        );
    }
    Ok(())
}
