#!/usr/bin/env bash
# mmsae's CUDA paths, checked and measured on one GPU in a few minutes (issue 22; run where a GPU is
# lent, never in CI):
#   1. the tests that need CUDA (tests/gpu: the sparse encoder's gradients, training against the
#      CPU, the world CLIP trained and embedded on the GPU);
#   2. TopK training against sparsify on the same GPU (`train_throughput.py --peers --device cuda`:
#      mmsae fp32, mmsae with bf16 selection, sparsify when its interpreter imports it) and the GPU's
#      encoder-GEMM floor in fp32 (TF32 off) and bf16, at (512, 4096, 32) and (512, 16384, 64);
#   3. where a CUDA training loop's time goes (`loop_profile.py --device cuda`);
#   4. `mmsae embed` of the world's CLIP on 4,000 scenes on CUDA, autocast fp16 and fp32, and the
#      stores of the two compared.
# Usage (from the repository root; PYTHON defaults to python3; the peers run with PYTHONPATH
# cleared, so mmsae and sparsify must be installed in that interpreter, e.g. `pip install -e .`):
#   bash benchmarks/gpu_check.sh
# Each step has its own time limit, so one slow step cannot eat a short lease.
set -u
PY=${PYTHON:-python3}
export PYTHONPATH="$(pwd)/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

nvidia-smi -L
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"

echo "== the tests that need CUDA"
timeout 150 "$PY" -m pytest -q -m cuda tests/gpu -p no:cacheprovider

for size in "--dict-size 4096 --k 32" "--dict-size 16384 --k 64"; do
  echo "== TopK training on CUDA against sparsify, D 512, $size, batch 4096"
  timeout 200 "$PY" benchmarks/train_throughput.py --peers --device cuda --rows 300000 --repeats 2 $size \
    --python sparsify="$PY"
done

echo "== where a CUDA training loop's time goes (F 4096, k 32, 200,000 rows)"
timeout 120 "$PY" benchmarks/loop_profile.py --device cuda --top 20

echo "== mmsae embed of the world's CLIP on CUDA (4,000 scenes, 8,000 captions)"
timeout 60 "$PY" -m mmsae world make --out "$work/world" --scenes 4000 --json >/dev/null
for precision in fp16 fp32; do
  start=$(date +%s.%N)
  timeout 120 "$PY" -m mmsae embed "$work/world/metadata.csv" --model hf:src/mmsae/world/pretrained \
    --device "${DEVICE:-cuda}" --precision "$precision" --out "$work/store-$precision" --json >"$work/embed-$precision.json" \
    || echo "embed $precision failed"
  echo "embed $precision: $(awk "BEGIN {print $(date +%s.%N) - $start}") s wall (process start and model load included)"
done
"$PY" - "$work" <<'EOF'
import sys
import numpy as np
from mmsae.data.store import EmbeddingStore

x, y = (EmbeddingStore(f"{sys.argv[1]}/store-{p}").all_embeddings() for p in ("fp16", "fp32"))
cos = (np.asarray(x, np.float64) * np.asarray(y, np.float64)).sum(1)
print(f"stores: {len(x):,} rows each; fp16 vs fp32 autocast: min cosine {cos.min():.5f}, mean {cos.mean():.6f}")
EOF
