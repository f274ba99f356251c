#!/usr/bin/env bash
# One venv per peer library for `benchmarks/train_throughput.py --peers`, in .venv-peers/NAME
# (or $PEERS_DIR/NAME): sparsify, saelens, overcomplete, dictionary_learning. Arguments pick a subset.
#
# Each venv gets the same CPU PyTorch as mmsae's ($MMSAE_TORCH, default torch==2.13.0, from
# /opt/wheels where it lies) and keeps it: a constraint file stops the peers' requirements from
# pulling a multi-GB CUDA build. PyPI's torchvision (pulled by overcomplete and, through nnsight,
# by dictionary-learning) does not load beside the CPU wheel ("operator torchvision::nms does not
# exist"), so it is removed; run_peer.py stubs overcomplete's image-model module, the only user.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${PEERS_DIR:-.venv-peers}"
TORCH_REQ="${MMSAE_TORCH:-torch==2.13.0}"
PY="${PYTHON:-python3}"
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(sparsify saelens overcomplete dictionary_learning)
find_links=()
[ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "$TORCH_REQ" > "$constraints"
export PIP_DISABLE_PIP_VERSION_CHECK=1
for name in "${peers[@]}"; do
  case "$name" in
    sparsify) reqs=(eai-sparsify) ;;
    saelens) reqs=(sae-lens) ;;
    overcomplete) reqs=(overcomplete "matplotlib<3.9") ;;
    dictionary_learning) reqs=(dictionary-learning) ;;
    *) echo "unknown peer: $name (sparsify, saelens, overcomplete, dictionary_learning)" >&2; exit 2 ;;
  esac
  venv="$DIR/$name"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  echo "installing ${reqs[*]} into $venv ..." >&2
  "$venv/bin/python" -m pip install -q "${find_links[@]}" "$TORCH_REQ" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$venv/bin/python" -m pip install -q "${find_links[@]}" -c "$constraints" "${reqs[@]}" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  "$venv/bin/python" -m pip uninstall -y -q torchvision >/dev/null 2>&1 || true
  "$venv/bin/python" -c "import torch; print('$name: torch', torch.__version__)"
done
