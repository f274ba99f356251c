#!/usr/bin/env bash
# mmsae's CUDA paths, measured on one GPU in a few minutes (issue 22; run where a GPU is lent,
# never in CI):
#   1. the TopK trainer on CUDA (fp32, bf16 selection, and the dense-autograd step) against the
#      GPU's encoder-GEMM floor in fp32 (TF32 off) and bf16, at (512, 4096, 32) and (512, 16384, 64);
#   2. `mmsae embed` of the world's CLIP on 4,000 scenes on CUDA, autocast fp16 and fp32, and the
#      stores of the two compared.
# Usage (from the repository root; PYTHON defaults to python3):
#   bash benchmarks/gpu_check.sh
# Each step has its own time limit, so one slow step cannot eat a short lease.
set -u
PY=${PYTHON:-python3}
export PYTHONPATH="$(pwd)/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

nvidia-smi -L
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"

echo "== TopK training on CUDA, D 512, F 4096, k 32, batch 4096"
timeout 150 "$PY" benchmarks/train_throughput.py --device cuda --bf16 --compare-dense --repeats 2 --rows 300000
echo "== TopK training on CUDA, D 512, F 16384, k 64, batch 4096"
timeout 150 "$PY" benchmarks/train_throughput.py --device cuda --bf16 --repeats 2 --rows 300000 --dict-size 16384 --k 64

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
