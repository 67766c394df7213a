//! Benchmarks: each prints a table of figures measured on this machine in this run.
//! Nothing here asserts a time; compare ratios within one run (machines are shared).

pub mod auth;
pub mod calls;
pub mod gateway;
pub mod messaging;
pub mod scaleout;
pub mod soak;

use std::time::Duration;

/// Latency samples of one scenario.
#[derive(Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`-th percentile (0–100) in milliseconds, nearest-rank.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.0.len()) - 1;
        self.0[idx].as_secs_f64() * 1000.0
    }
}

/// Prints a Markdown table (so figures paste straight into notes).
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    println!("\n### {title}\n");
    println!("| {} |", header.join(" | "));
    println!(
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
}
