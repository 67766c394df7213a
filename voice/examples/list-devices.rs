//! Prints the audio devices cpal can see: `cargo run -p voice --example list-devices`.

use voice::audio::device::{input_devices, output_devices};

fn main() {
    println!("input devices:");
    for d in input_devices() {
        println!("  {d}");
    }
    println!("output devices:");
    for d in output_devices() {
        println!("  {d}");
    }
}
