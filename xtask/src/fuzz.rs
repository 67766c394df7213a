//! Fuzzing: the cargo-fuzz (libFuzzer) targets in `fuzz/` — gateway frames, voice signaling
//! payloads, and the server's validated values — built with the nightly toolchain and
//! AddressSanitizer. `cargo xtask test` runs each for a few seconds; `cargo xtask fuzz
//! [--seconds N] [target…]` runs longer. Each target starts from the small committed seeds
//! in `fuzz/seeds/<target>` and grows its corpus in `fuzz/corpus/<target>` (not committed);
//! a crash stops the run and leaves its input in `fuzz/artifacts/<target>/`.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::{run, step};

pub const TARGETS: &[&str] = &["gateway_frame", "voice_signal", "values"];

/// Seconds per target within `cargo xtask test`: enough to run each target a few hundred
/// thousand times from the seeds, with the whole step (nightly build included) under ~3 min.
pub const TEST_SECONDS: u64 = 15;

/// The cargo-fuzz the project is run with (installed with `cargo install --locked`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// `cargo xtask fuzz [--seconds N] [target…]`.
pub fn command(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = 300;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .with_context(|| format!("--seconds {value}: not a positive number"))?;
            }
            target if TARGETS.contains(&target) => targets.push(target),
            other => bail!(
                "unknown fuzz argument {other:?}: expected --seconds N or a target ({})",
                TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    run_targets(root, &targets, seconds)
}

/// Builds and runs each of `targets` for `seconds`.
pub fn run_targets(root: &Path, targets: &[&str], seconds: u64) -> Result<()> {
    ensure_cargo_fuzz()?;
    for target in targets {
        step(&format!("fuzzing {target} for {seconds} s"));
        let corpus = root.join("fuzz").join("corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("creating {corpus:?}"))?;
        let seeds = root.join("fuzz").join("seeds").join(target);
        let mut cmd = nightly_cargo();
        cmd.args(["fuzz", "run", "--debug-assertions", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // A single input that takes seconds is a bug too (a parser gone quadratic).
            .arg("-timeout=10")
            .current_dir(root);
        run(&mut cmd).with_context(|| {
            format!("fuzz target {target} failed: its input is in fuzz/artifacts/{target}/")
        })?;
    }
    Ok(())
}

/// `cargo` of the nightly toolchain, without what the stable cargo running xtask put in the
/// environment for its own children.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]);
    for var in ["CARGO", "RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN"] {
        cmd.env_remove(var);
    }
    cmd
}

fn ensure_cargo_fuzz() -> Result<()> {
    crate::ensure_cargo_tool("fuzz", "cargo-fuzz", CARGO_FUZZ_VERSION, &[])
}
