#!/usr/bin/env bash
# Quick start, command 2: set up (first run only) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,saelens
exec .venv/bin/python -m pytest -q "$@"
