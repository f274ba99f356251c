#!/usr/bin/env bash
# Quick start, command 1: set up (first run only) and run `mmsae demo` on the built-in synthetic data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh explorer
exec .venv/bin/mmsae demo "$@"
