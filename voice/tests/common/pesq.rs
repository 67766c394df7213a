//! PESQ wide-band (ITU-T P.862.2, MOS-LQO 1–4.64) of received audio against what was sent,
//! scored by PyPI's `pesq` (voice/scripts/pesq_score.py) after aligning the two by
//! cross-correlation. Shared by the tests and the benchmark.

use std::path::Path;
use std::process::Command;

use voice::analysis::{find_offset, to_analysis_rate, ANALYSIS_RATE};
use voice::audio::wav::write_wav;
use voice::audio::StreamFormat;

use super::RATE;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pesq_score.py");

/// PESQ-WB of `received` (48 kHz mono, containing `sent` somewhere) against `sent` (48 kHz
/// mono). The two WAV files it scores are written to `dir` under `tag`.
pub fn pesq_wb(sent: &[f32], received: &[f32], dir: &Path, tag: &str) -> Result<f64, String> {
    let reference = to_analysis_rate(sent, RATE).map_err(|e| e.to_string())?;
    let degraded = to_analysis_rate(received, RATE).map_err(|e| e.to_string())?;
    let (from, _) = find_offset(&reference, &degraded, ANALYSIS_RATE)
        .ok_or_else(|| format!("{tag}: the sent speech is nowhere in the received audio"))?;
    let aligned: Vec<f32> = (0..reference.len())
        .map(|i| {
            usize::try_from(from + i as isize)
                .ok()
                .and_then(|j| degraded.get(j))
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    let format = StreamFormat {
        sample_rate: ANALYSIS_RATE,
        channels: 1,
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let ref_path = dir.join(format!("{tag}-ref.wav"));
    let deg_path = dir.join(format!("{tag}-deg.wav"));
    write_wav(&ref_path, &reference, format).map_err(|e| e.to_string())?;
    write_wav(&deg_path, &aligned, format).map_err(|e| e.to_string())?;
    let python = super::external::python();
    let out = Command::new(&python)
        .arg(SCRIPT)
        .arg(&ref_path)
        .arg(&deg_path)
        .output()
        .map_err(|e| format!("running {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pesq_score.py failed (is PyPI `pesq` installed? voice/scripts/setup-test-env.sh): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .map_err(|e| format!("pesq_score.py printed {text:?}: {e}"))
}
