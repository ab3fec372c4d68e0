//! Prints the token ids and loss mask agentr trains on for each sample of JSON-lines files
//! (`agentr gold`, `agentr revise`), one JSON line per sample in file order:
//! `{"ids": [...], "mask": [0, 1, ...]}` (1 where the token is a training target).
//! `bench/hf_interop.py` compares them with what TRL's `SFTTrainer` builds from the chat
//! template of the same model folder.
//!
//! Usage: `cargo run --release -p agentr-train --example render_samples -- MODEL_DIR
//! SAMPLES.jsonl [MORE.jsonl ...]`, where MODEL_DIR holds a `tokenizer.json`.
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use agentr_envs::Sample;
use agentr_train::ChatTokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: render_samples MODEL_DIR SAMPLES.jsonl [MORE.jsonl ...]";
    let mut args = std::env::args().skip(1);
    let model = PathBuf::from(args.next().ok_or(usage)?);
    let files: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if files.is_empty() {
        return Err(usage.into());
    }
    let tokenizer = ChatTokenizer::load(&model.join("tokenizer.json"))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for file in &files {
        let reader = BufReader::new(
            std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?,
        );
        for (number, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| format!("{}: {e}", file.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let sample: Sample = serde_json::from_str(&line)
                .map_err(|e| format!("{} line {}: {e}", file.display(), number + 1))?;
            let rendered = tokenizer.render(&sample.messages)?;
            let mask: Vec<u8> = rendered.mask.iter().map(|&m| u8::from(m)).collect();
            let row = serde_json::json!({ "ids": rendered.ids, "mask": mask });
            writeln!(out, "{row}")?;
        }
    }
    out.flush()?;
    Ok(())
}
