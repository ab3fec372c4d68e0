//! The generation ratios of `cargo xtask bench`: agentr against llama.cpp on SmolLM2-135M, from
//! the JSON lines `bench/llama_cpp.sh` prints (llama-bench's `-o jsonl` records, then the
//! `generation_speed` example's objects).

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One workload's figures, tokens/s.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Speeds {
    prefill: f64,
    decode: f64,
}

/// What the script measured: agentr's f32 and int8 runs, llama.cpp's F32 and Q8_0.
#[derive(Debug, Default)]
struct Measured {
    agentr_f32: Option<Speeds>,
    agentr_int8: Option<Speeds>,
    agentr_batch: Vec<(String, f64)>,
    llama_f32: (Option<f64>, Option<f64>),
    llama_q8: (Option<f64>, Option<f64>),
}

/// The comparison table for the script's output `lines`.
pub fn ratios(lines: &str) -> Result<String> {
    let mut measured = Measured::default();
    for line in lines.lines().filter(|l| l.trim_start().starts_with('{')) {
        let record: Value =
            serde_json::from_str(line).with_context(|| format!("reading `{line}`"))?;
        let number = |key: &str| record.get(key).and_then(Value::as_f64);
        if let Some(weights) = record.get("weights").and_then(Value::as_str) {
            let speeds = Speeds {
                prefill: number("prefill_tokens_per_second").context("prefill figure")?,
                decode: number("decode_tokens_per_second").context("decode figure")?,
            };
            let batch = number("batch_speedup").context("batch figure")?;
            measured.agentr_batch.push((weights.to_owned(), batch));
            match weights {
                "f32" => measured.agentr_f32 = Some(speeds),
                "int8" => measured.agentr_int8 = Some(speeds),
                other => bail!("unknown agentr weights `{other}`"),
            }
        } else if let Some(model) = record.get("model_type").and_then(Value::as_str) {
            let speed = number("avg_ts").context("llama-bench record without avg_ts")?;
            let slot = if model.contains("Q8_0") {
                &mut measured.llama_q8
            } else if model.contains("F32") {
                &mut measured.llama_f32
            } else {
                bail!("unexpected llama-bench model `{model}`");
            };
            if number("n_gen").unwrap_or(0.0) > 0.0 {
                slot.1 = Some(speed);
            } else {
                slot.0 = Some(speed);
            }
        }
    }
    let line = |name: &str, ours: &str, theirs: &str, ratio: &str| {
        format!("{name:<28} {ours:>8} {theirs:>11} {ratio:>7}\n")
    };
    let mut table = line("workload", "agentr", "llama.cpp", "ratio");
    let (f32_side, int8_side) = (measured.agentr_f32, measured.agentr_int8);
    for (name, ours, theirs) in [
        (
            "prefill pp512, f32",
            f32_side.map(|s| s.prefill),
            measured.llama_f32.0,
        ),
        (
            "decode tg128@300, f32",
            f32_side.map(|s| s.decode),
            measured.llama_f32.1,
        ),
        (
            "prefill pp512, int8/Q8_0",
            int8_side.map(|s| s.prefill),
            measured.llama_q8.0,
        ),
        (
            "decode tg128@300, int8/Q8_0",
            int8_side.map(|s| s.decode),
            measured.llama_q8.1,
        ),
    ] {
        let cell = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let ratio = match (ours, theirs) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
            _ => "-".to_owned(),
        };
        table.push_str(&line(name, &cell(ours), &cell(theirs), &ratio));
    }
    for (weights, speedup) in &measured.agentr_batch {
        table.push_str(&format!(
            "4 samples vs batch 1, {weights}: {speedup:.2}x (target 3x)\n"
        ));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_each_agentr_figure_with_its_llama_cpp_twin() {
        let lines = r#"
{"model_type": "llama 256M all F32", "n_prompt": 512, "n_gen": 0, "avg_ts": 700.0}
{"model_type": "llama 256M all F32", "n_prompt": 0, "n_gen": 128, "avg_ts": 32.0}
{"model_type": "llama 256M Q8_0", "n_prompt": 512, "n_gen": 0, "avg_ts": 600.0}
{"model_type": "llama 256M Q8_0", "n_prompt": 0, "n_gen": 128, "avg_ts": 50.0}
{"weights": "f32", "prefill_tokens_per_second": 350.0, "decode_tokens_per_second": 48.0, "batch_speedup": 2.5}
{"weights": "int8", "prefill_tokens_per_second": 600.0, "decode_tokens_per_second": 75.0, "batch_speedup": 1.5}
"#;
        let table = ratios(lines).unwrap();
        for (name, cells) in [
            ("prefill pp512, f32", ["350.0", "700.0", "0.50x"]),
            ("decode tg128@300, f32", ["48.0", "32.0", "1.50x"]),
            ("prefill pp512, int8/Q8_0", ["600.0", "600.0", "1.00x"]),
            ("decode tg128@300, int8/Q8_0", ["75.0", "50.0", "1.50x"]),
        ] {
            assert_eq!(row(&table, name), cells, "{table}");
        }
        assert!(
            table.contains("4 samples vs batch 1, int8: 1.50x"),
            "{table}"
        );
    }

    /// The three figures of the row named `name`.
    fn row(table: &str, name: &str) -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}"));
        line[name.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn missing_figures_show_as_dashes_and_bad_lines_are_errors() {
        let table = ratios(r#"{"model_type": "llama 256M all F32", "n_gen": 128, "avg_ts": 30.0}"#)
            .unwrap();
        assert_eq!(row(&table, "decode tg128@300, f32"), ["-", "30.0", "-"]);
        assert!(ratios("{not json").is_err());
        assert!(ratios(r#"{"weights": "f16", "prefill_tokens_per_second": 1.0}"#).is_err());
    }
}
