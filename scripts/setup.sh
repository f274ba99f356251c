#!/usr/bin/env bash
# Creates a venv (once; .venv, or $MMSAE_VENV) and installs mmsae with the extras given as arguments,
# e.g. `setup.sh dev,saelens`. PyTorch goes in first ($MMSAE_TORCH, default the CPU build 2.13.0 that lies on
# this machine's disk): a plain `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
VENV="${MMSAE_VENV:-.venv}"
TORCH_REQ="${MMSAE_TORCH:-torch==2.13.0}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
find_links=()
[ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "installing $TORCH_REQ into $VENV ..." >&2
  # shellcheck disable=SC2086
  python -m pip install -q "${find_links[@]}" $TORCH_REQ 2>&1 | grep -v "^WARNING: Location" >&2 || true
  python -c "import torch" || { echo "PyTorch install failed" >&2; exit 1; }
fi
stamp="$VENV/.mmsae-installed-${extras:-core}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing mmsae${extras:+[$extras]} ..." >&2
  spec="."
  [ -n "$extras" ] && spec=".[${extras}]"
  python -m pip install -q "${find_links[@]}" -e "$spec" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  python -c "import mmsae" || { echo "mmsae install failed" >&2; exit 1; }
  touch "$stamp"
fi
