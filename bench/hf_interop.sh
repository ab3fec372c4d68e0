#!/usr/bin/env bash
# Models written by agentr work with Hugging Face tools unchanged (issue 24): trains a LoRA
# model on SmolLM2-135M-Instruct from agentr samples (expert episodes, and direct revisions
# whose bad-branch assistant turns carry `loss: false`), then bench/hf_interop.py checks that
#   a. transformers' AutoTokenizer / AutoModelForCausalLM load the folder and the
#      text-generation pipeline answers chat prompts, greedy, as `agentr generate` does,
#      stopping at <|im_end|>;
#   b. PEFT's AutoPeftModelForCausalLM loads <model>/adapter on the base it names, and
#      merge_and_unload() gives agentr's merged weights;
#   c. TRL's SFTTrainer (assistant_only_loss=True) tokenizes the samples into the ids and loss
#      masks agentr trains on (the render_samples example), and trains 2 steps.
# Prints a PASS/FAIL line per check and a summary for BENCHMARKS.md; exits non-zero on a
# failure. Run by hand, not in CI.
#
# Needs `agentr setup` (the SmolLM2 GGUF in $AGENTR_HOME, default ~/.cache/agentr). Installs
# torch, transformers, peft (as bench/smollm2_train.sh does) and trl 1.16.0, datasets and
# accelerate from PyPI into the cached virtual environment $AGENTR_HOME/venvs/torch (several
# GB, once). Nothing is fetched from the Hugging Face Hub (HF_HUB_OFFLINE=1).
# Usage: bench/hf_interop.sh [--work DIR] [--threads N]
# DIR: the work folder (default /tmp/agentr-hf-interop); its samples and model are remade.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/agentr-hf-interop
threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --work) work=${2:?--work needs a folder}; shift 2 ;;
    --threads) threads=${2:?--threads needs a number}; shift 2 ;;
    *) echo "usage: bench/hf_interop.sh [--work DIR] [--threads N]" >&2; exit 2 ;;
  esac
done

source "$root/bench/torch_venv.sh"
torch_venv trl==1.16.0 datasets accelerate

cargo build --quiet --release -p agentr-cli --manifest-path "$root/Cargo.toml"
cargo build --quiet --release -p agentr-train --example render_samples --manifest-path "$root/Cargo.toml"
agentr="$root/target/release/agentr"
render="$root/target/release/examples/render_samples"

mkdir -p "$work"
work=$(cd "$work" && pwd)
rm -rf "$work/trees" "$work/model" "$work/trl" "$work/hf-datasets"
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

"$agentr" gold textcraft --tasks 'train[:6]' --out "$work/gold.jsonl" >&2
"$agentr" collect --env textcraft --policy noisy-expert:0.5 --tasks 'train[:6]' \
  --out "$work/trees" >&2
"$agentr" revise --trees "$work/trees" --mode direct --tokenizer smollm2-135m \
  --out "$work/revise.jsonl" >&2
"$agentr" train --samples "$work/gold.jsonl" "$work/revise.jsonl" --model smollm2-135m \
  --lora-rank 8 --steps 2 --lr 1e-3 --batch-tokens 2048 --out "$work/model" >&2
"$render" "$work/model" "$work/gold.jsonl" "$work/revise.jsonl" >"$work/rendered.jsonl"

"$venv/bin/python" "$root/bench/hf_interop.py" "$work" --agentr "$agentr"
