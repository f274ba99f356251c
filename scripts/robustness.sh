#!/usr/bin/env bash
# The long forms of what CI runs briefly: property-based fuzzing of every command and input file,
# kill -9 fault injection of every writer, and the explorer under load. Figures go to docs/guarantees.md.
#   bash scripts/robustness.sh [EXAMPLES] [KILL_ROUNDS]       (defaults 2000 and 20; about an hour on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-2000}"
rounds="${2:-20}"
py=.venv/bin/python
log="${MMSAE_ROBUSTNESS_LOG:-/tmp/mmsae-robustness}"
mkdir -p "$log"
echo "== fuzzing: $examples examples per property (commands logged to $log/fuzz.tsv)"
MMSAE_FUZZ_EXAMPLES="$examples" MMSAE_FUZZ_LOG="$log/fuzz.tsv" "$py" -m pytest -q -p no:cacheprovider \
  --hypothesis-show-statistics tests/cli/test_fuzz_cli.py tests/data/test_fuzz_inputs.py
echo "== fault injection: $rounds kills per writer"
"$py" scripts/fault_inject.py --rounds "$rounds" | tee "$log/faults.json"
echo "== explorer load"
"$py" benchmarks/explorer_load.py | tee "$log/load.txt"
