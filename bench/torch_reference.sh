#!/usr/bin/env bash
# Times PyTorch on the shapes of `cargo bench -p agentr-train --bench train` (BENCHMARKS.md).
#
# Installs torch, safetensors and numpy from PyPI into a cached virtual environment
# ($AGENTR_HOME/venvs/torch, default ~/.cache/agentr/venvs/torch; the default Linux wheel is
# several GB with its CUDA libraries but runs on the CPU), writes a tiny-s model with agentr,
# checks that PyTorch computes the same logits, loss and AdamW step with it, then times
# training steps and generation.
# Usage: bench/torch_reference.sh [--threads N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/torch_venv.sh"
torch_venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo run --quiet --release -p agentr-train --example torch_parity --manifest-path "$root/Cargo.toml" -- "$work/model"
"$venv/bin/python" "$root/bench/torch_reference.py" check "$work/model"
"$venv/bin/python" "$root/bench/torch_reference.py" time "$work/model" "$@"
