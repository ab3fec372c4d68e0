//! Reading JSONL sample files.

use std::io::BufRead;
use std::path::Path;

use agentr_envs::Sample;
use anyhow::{Context, Result};

/// Every sample of a JSONL file; errors name the file and line.
pub fn read_samples(path: &Path) -> Result<Vec<Sample>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut samples = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let sample: Sample = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a sample", path.display(), index + 1))?;
        samples.push(sample);
    }
    Ok(samples)
}
