#!/usr/bin/env bash
# Runs the ScienceWorld workload on agentr and on the Python scienceworld==1.2.3 package (see
# BENCHMARKS.md): the gold actions of the first 20 AgentGym test games, replayed on one JVM.
# Installs the package into a throw-away virtual environment; needs Java 11+.
# Prints one JSON object per implementation (agentr first).
# Usage: bench/sciworld_python.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${AGENTR_PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check scienceworld==1.2.3

cd "$root"
cargo bench --quiet -p agentr-envs --bench sciworld -- --workload "$work/workload.json"
"$work/venv/bin/python" "$root/bench/sciworld_python.py" "$work/workload.json"
