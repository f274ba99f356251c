"""`mmsae export`: SAELens folders and hub folders from the command line, hub ids as the SAE
argument, and one line with exit 2 for every mistake."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmsae.cli.main import main
from mmsae.models import build_sae, load_sae, save_sae
from tests.helpers import assert_same_codes, one_line_error, snapshot


def _save(folder, arch="topk", **cfg):
    cfg = {"k": 4, **cfg} if arch in ("topk", "matryoshka", "batchtopk", "vlsae", "multimodal") else cfg
    sae = build_sae(arch, d_in=16, dict_size=24, **cfg)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    save_sae(sae, folder, {"store": "/data/store", "store_model_id": "test-model"})
    return sae.eval()


def _same_codes(a, b):
    assert_same_codes(a, b, d_in=16, seed=1)


def test_saelens_export(tmp_path, capsys):
    sae = _save(tmp_path / "sae", "batchtopk")
    assert main(["export", str(tmp_path / "sae"), "--format", "saelens", "--out", str(tmp_path / "sl")]) == 0
    out = capsys.readouterr().out
    assert "SAELens jumprelu SAE" in out and "note: exported as a SAELens JumpReLU" in out
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"]) == ("jumprelu", 16, 24)
    assert cfg["metadata"]["mmsae_architecture"] == "batchtopk"
    back = load_sae(tmp_path / "sl")
    assert back.architecture == "batchtopk"
    _same_codes(sae, back)


def test_saelens_export_json_reports_the_mapping(tmp_path, capsys):
    _save(tmp_path / "sae", "matryoshka", ks=(2, 4))
    rc = main(["export", str(tmp_path / "sae"), "--format", "saelens", "--out", str(tmp_path / "sl"), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["architecture"] == "matryoshka" and report["saelens_architecture"] == "topk"
    assert report["notes"] == [
        "exported as a SAELens TopK SAE at k=4, the k its encode uses; the nested ks only shaped training"
    ]
    assert json.loads((tmp_path / "sl" / "cfg.json").read_text())["k"] == 4


def test_the_exporter_does_not_need_sae_lens(tmp_path):
    _save(tmp_path / "sae", "gated")
    code = (
        "import sys; sys.modules['sae_lens'] = None\n"  # any import of it fails
        "from mmsae.cli.main import main\n"
        f"sys.exit(main(['export', {str(tmp_path / 'sae')!r}, '--format', 'saelens', '--out', {str(tmp_path / 'sl')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sl" / "sae_weights.safetensors").is_file() and (tmp_path / "sl" / "cfg.json").is_file()


@pytest.mark.parametrize("arch", ["vlsae", "multimodal"])
def test_paired_saes_cannot_be_saelens_folders(tmp_path, capsys, arch):
    _save(tmp_path / "sae", arch)
    rc = main(["export", str(tmp_path / "sae"), "--format", "saelens", "--out", str(tmp_path / "sl")])
    one_line_error(capsys, rc, f"a {arch} SAE cannot be exported to SAELens", "one input", "--format hub")
    assert snapshot(tmp_path / "sl") is None


def test_out_folder_checks(tmp_path, capsys):
    _save(tmp_path / "sae")
    _save(tmp_path / "other", "relu")
    before = snapshot(tmp_path / "other")
    args = ["export", str(tmp_path / "sae"), "--format", "hub"]
    one_line_error(capsys, main([*args, "--out", str(tmp_path / "other")]), "already holds an SAE", "--overwrite")
    assert snapshot(tmp_path / "other") == before
    one_line_error(capsys, main([*args, "--out", str(tmp_path / "sae")]), "is the SAE folder being exported")
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, main([*args, "--out", str(tmp_path / "file")]), "is a file")
    one_line_error(capsys, main([*args, "--out", str(tmp_path / "o"), "--repo-id", "not an id"]), "--repo-id")
    sl = ["export", str(tmp_path / "sae"), "--format", "saelens", "--out", str(tmp_path / "sl")]
    one_line_error(capsys, main([*sl, "--names", "x.json"]), "--format hub")
    assert main([*args, "--out", str(tmp_path / "other"), "--overwrite"]) == 0
    assert load_sae(tmp_path / "other").architecture == "topk"


def _write_names(folder, n):
    from mmsae.analysis.naming import ConceptName, write_names

    names = [ConceptName(j, f"concept{j}", [f"concept{j}", "alt"], [0.5, 0.4], 0.1) for j in range(n)]
    write_names(names, folder, {"vocab": "v.txt"})


def test_hub_export_with_names_found_beside_the_sae(tmp_path, capsys):
    sae = _save(tmp_path / "sae")
    (tmp_path / "sae" / "metrics.json").write_text(json.dumps({"fvu": 0.25, "split": "val"}))
    _write_names(tmp_path / "sae", 24)
    rc = main(
        ["export", str(tmp_path / "sae"), "--format", "hub", "--out", str(tmp_path / "up"), "--repo-id", "me/saes/k4"]
    )
    assert rc == 0
    assert "hf upload me/saes" in capsys.readouterr().out
    card = (tmp_path / "up" / "README.md").read_text()
    assert "library_name: mmsae" in card and "| fvu | 0.25 |" in card and "| concept23 |" in card
    assert "| store (embeddings trained on) | /data/store |" in card
    _same_codes(sae, load_sae(tmp_path / "up"))


def test_hub_export_names_of_another_sae(tmp_path, capsys):
    _save(tmp_path / "sae")
    _write_names(tmp_path / "sae", 10)  # not this SAE's 24 concepts
    args = ["export", str(tmp_path / "sae"), "--format", "hub", "--json"]
    assert main([*args, "--out", str(tmp_path / "up")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["names"] is None and "names not included" in report["notes"][0]
    assert "Concept names" not in (tmp_path / "up" / "README.md").read_text()
    rc = main([*args, "--out", str(tmp_path / "up2"), "--names", str(tmp_path / "sae" / "names.json")])
    one_line_error(capsys, rc, "names 10 concepts, not the SAE's 24")


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty hub cache with the hub switched off, and an empty working folder."""
    pytest.importorskip("huggingface_hub", reason="install the [hub] extra for hub ids")
    # its constants are read from the environment when first imported: now, not under this test's settings
    import huggingface_hub.constants  # noqa: F401

    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return home


def test_a_cached_hub_id_is_an_sae_argument(hf_home, tmp_path, capsys):
    commit = "f" * 40
    repo = hf_home / "hub" / "models--user--repo"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    sae = _save(repo / "snapshots" / commit / "topk-24")
    assert main(["export", "user/repo/topk-24", "--format", "saelens", "--out", str(tmp_path / "sl")]) == 0
    _same_codes(sae, load_sae(tmp_path / "sl"))


@pytest.mark.parametrize(
    "argv", [["export", "hf://user/nothing/here", "--format", "hub", "--out", "x"], ["info", "hf://user/nothing/here"]]
)
def test_an_uncached_hub_id_is_one_line(hf_home, capsys, argv):
    err = one_line_error(capsys, main(argv), "user/nothing/here")
    if argv[0] == "export":
        assert "not in the local cache" in err and str(hf_home / "hub") in err and "hf download" in err
    assert not Path("x").exists()


@pytest.mark.parametrize("first, then", [("hub", "saelens"), ("saelens", "hub")])
def test_overwriting_with_the_other_format_leaves_only_the_new_sae(tmp_path, capsys, first, then):
    """An --out holding the other format's SAE: after --overwrite, every reader sees the new SAE."""
    _save(tmp_path / "old", "topk")
    new = _save(tmp_path / "new", "relu")
    assert main(["export", str(tmp_path / "old"), "--format", first, "--out", str(tmp_path / "x")]) == 0
    argv = ["export", str(tmp_path / "new"), "--format", then, "--out", str(tmp_path / "x"), "--overwrite"]
    assert main(argv) == 0
    capsys.readouterr()
    got = load_sae(tmp_path / "x")
    assert got.architecture == "relu"
    _same_codes(new, got)
