#!/usr/bin/env bash
# Quick start, command 1: set up (first run only) and run `mmsae demo` on the built-in data (the scene world
# embedded by its shipped CLIP, which needs transformers: the hf extra).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh explorer,hf
exec .venv/bin/mmsae demo "$@"
