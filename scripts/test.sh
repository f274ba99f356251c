#!/usr/bin/env bash
# Quick start, command 2: set up (first run only) and run the test suite.
#
# Two environments: .venv (CPU PyTorch 2.13.0) runs everything but the open_clip tests. open_clip
# needs torchvision, and PyPI's torchvision does not import beside that CPU wheel, so .venv-clip
# (PyTorch 2.14.1 + torchvision 0.29.1, which lie on this machine's disk) runs the tests marked
# `open_clip` (all in tests/backends/test_open_clip.py). Arguments go to the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,saelens
MMSAE_VENV=.venv-clip MMSAE_TORCH="torch==2.14.1 torchvision==0.29.1" bash scripts/setup.sh clip,test
.venv/bin/python -m pytest -q -m "not open_clip" "$@"
.venv-clip/bin/python -m pytest -q -m open_clip tests/backends/test_open_clip.py
