#!/usr/bin/env bash
# Creates .venv (once) and installs mmsae with the extras given as arguments, e.g. `setup.sh dev,saelens`.
# The CPU build of PyTorch goes in first: a plain `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
find_links=()
[ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "installing PyTorch 2.13.0 (CPU) ..." >&2
  python -m pip install -q "${find_links[@]}" torch==2.13.0 2>&1 | grep -v "^WARNING: Location" >&2 || true
  python -c "import torch" || { echo "PyTorch install failed" >&2; exit 1; }
fi
stamp=".venv/.mmsae-installed-${extras:-core}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing mmsae${extras:+[$extras]} ..." >&2
  spec="."
  [ -n "$extras" ] && spec=".[${extras}]"
  python -m pip install -q "${find_links[@]}" -e "$spec" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  python -c "import mmsae" || { echo "mmsae install failed" >&2; exit 1; }
  touch "$stamp"
fi
