# Sourced by the bench scripts that run PyTorch (torch_reference.sh, smollm2_train.sh,
# hf_interop.sh): `torch_venv PACKAGE...` makes sure the cached virtual environment
# $AGENTR_HOME/venvs/torch (default ~/.cache/agentr/venvs/torch) can import torch, safetensors,
# numpy, transformers and peft, and then PACKAGE..., installing from PyPI what is missing (the
# default Linux torch wheel is several GB with its CUDA libraries, and runs on the CPU). Sets
# $venv. A PACKAGE may pin a version (`trl==1.16.0`), which is checked too.
torch_venv() {
  local python=${AGENTR_PYTHON:-python3}
  venv=${AGENTR_HOME:-$HOME/.cache/agentr}/venvs/torch
  local wanted=(torch safetensors numpy transformers peft "$@")
  local missing=()
  local package name version
  for package in "${wanted[@]}"; do
    name=${package%%==*}
    version=${package#*==}
    [ "$version" = "$package" ] && version=""
    if ! "$venv/bin/python" -c "
import importlib.metadata as m, sys
v = m.version(sys.argv[1])
sys.exit(0 if not sys.argv[2] or v == sys.argv[2] else 1)" "$name" "$version" 2>/dev/null; then
      missing+=("$package")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} into $venv (a large download the first time) ..." >&2
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
  fi
}
