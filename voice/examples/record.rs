//! Records a second from a capture device and prints its level:
//! `cargo run -p voice --example record -- [DEVICE]`.

use voice::audio::device::CpalCapture;
use voice::audio::Capture;

fn main() -> voice::Result<()> {
    let name = std::env::args().nth(1);
    let mut mic = CpalCapture::open(name.as_deref())?;
    println!("opened {:?}", mic.format());
    let mut samples = Vec::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        mic.read(&mut samples);
    }
    println!(
        "read {} samples, level {:.1} dBFS, dropped {}",
        samples.len(),
        voice::dsp::level_dbfs(&samples),
        mic.dropped()
    );
    Ok(())
}
