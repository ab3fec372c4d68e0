#!/usr/bin/env bash
# SmolLM2-135M-Instruct training steps, agentr beside PyTorch + PEFT on the same CPU
# (BENCHMARKS.md): LoRA rank 16 on the seven projections and full fine-tuning, 4 x 512
# tokens per step, with and without recomputation (gradient checkpointing on PyTorch's side).
#
# Installs torch, transformers, peft, safetensors and numpy from PyPI into a cached virtual
# environment ($AGENTR_HOME/venvs/torch, default ~/.cache/agentr/venvs/torch; several GB with
# the default wheel's CUDA libraries, which run on the CPU).
# Usage: bench/smollm2_train.sh [--model DIR] [--threads N]
# DIR: a Hugging Face folder of SmolLM2-135M-Instruct (config.json, model.safetensors). Without
# it, the script writes the base model that `agentr setup` fetched as such a folder (one
# training step at learning rate 0, which leaves every weight as it was).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=""
threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=${2:?--model needs a folder}; shift 2 ;;
    --threads) threads=${2:?--threads needs a number}; shift 2 ;;
    *) echo "usage: bench/smollm2_train.sh [--model DIR] [--threads N]" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$model" ]; then
  cargo build --quiet --release -p agentr-cli --manifest-path "$root/Cargo.toml"
  "$root/target/release/agentr" gold textcraft --tasks 'train[:1]' --out "$work/gold.jsonl" >&2
  "$root/target/release/agentr" train --model smollm2-135m --samples "$work/gold.jsonl" \
    --steps 1 --lr 0 --out "$work/model" >&2
  model=$work/model
fi
source "$root/bench/torch_venv.sh"
torch_venv
cargo build --quiet --release -p agentr-train --example training_step --manifest-path "$root/Cargo.toml"
agentr="$root/target/release/examples/training_step"
export RAYON_NUM_THREADS=$threads
for setting in "--lora-rank 16" "--lora-rank 16 --recompute" "" "--recompute"; do
  # shellcheck disable=SC2086 # the settings are separate words
  ours=$("$agentr" "$model" $setting)
  torch_setting=${setting/--recompute/--checkpointing}
  # shellcheck disable=SC2086
  theirs=$("$venv/bin/python" "$root/bench/smollm2_train.py" "$model" $torch_setting --threads "$threads")
  "$venv/bin/python" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = (json.loads(a) for a in sys.argv[1:3])
name = ("LoRA r%d" % ours["lora_rank"]) if ours["lora_rank"] else "full fine-tuning"
name += ", recomputed" if ours["recompute"] else ""
print(json.dumps({
    "setting": name,
    "agentr_tokens_per_second": round(ours["tokens_per_second"], 1),
    "torch_tokens_per_second": round(theirs["tokens_per_second"], 1),
    "ratio": round(ours["tokens_per_second"] / theirs["tokens_per_second"], 2),
    "agentr_peak_rss_gb": round(ours["peak_rss_bytes"] / 1e9, 2),
    "torch_peak_rss_gb": round(theirs["peak_rss_bytes"] / 1e9, 2),
    "torch": theirs["torch"],
}))
PY
done
