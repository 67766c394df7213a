//! A real two-peer call over loopback through a lossy relay, from any WAV file to a WAV of
//! what the receiver played, so anyone can score the engine with their own material:
//!
//! `cargo run --release -p voice --example loopback -- --in speech.wav --out heard.wav
//! [--loss PCT] [--jitter-ms MS] [--bitrate KBPS] [--seed N] [--no-red]`
//!
//! Prints the link statistics at the end. The code is in `tests/common/loopback.rs`, shared
//! with its test.

#[path = "../tests/common/mod.rs"]
mod common;

use clap::Parser;
use common::loopback::{print_stats, run, Args};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(outcome) => {
            println!(
                "wrote {} ({:.1} s played)",
                args.out.display(),
                outcome.heard.len() as f64 / f64::from(common::RATE)
            );
            print_stats(&outcome);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loopback: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
