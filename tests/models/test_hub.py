"""Hugging Face hub ids as SAE arguments (resolved from a hub cache built on disk, never the
network) and the folder `export_hub` writes for uploading, with its model card."""

import json
from pathlib import Path

import pytest
import torch

huggingface_hub = pytest.importorskip("huggingface_hub", reason="install the [hub] extra for hub ids")
# its constants (cache folder, offline switch) are read from the environment when first imported:
# now, before a test sets HF_HOME or HF_HUB_OFFLINE, so that no test's settings outlive it
pytest.importorskip("huggingface_hub.constants")

from mmsae.errors import SAELoadError  # noqa: E402
from mmsae.models import build_sae, load_sae, save_sae  # noqa: E402
from mmsae.models.hub import looks_like_hub_id  # noqa: E402
from tests.helpers import assert_same_codes  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _sae(seed=0, arch="topk"):
    sae = build_sae(arch, d_in=16, dict_size=24, k=4)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return sae.eval()


def _snapshot(hf_home: Path, repo_id: str) -> Path:
    """The folder huggingface_hub's cache keeps a repository's files in for its main branch:
    HF_HOME/hub/models--user--repo/snapshots/COMMIT, with refs/main naming COMMIT."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    return snap


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty hub cache, the hub switched off, and a working folder with nothing in it (so
    `user/...` is not a local path)."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return home


@pytest.fixture
def calls(monkeypatch):
    """Every snapshot_download call's local_files_only and allow_patterns, passed on to the real one."""
    seen = []
    real = huggingface_hub.snapshot_download

    def spy(repo_id, **kw):
        seen.append((repo_id, kw.get("local_files_only"), kw.get("allow_patterns")))
        return real(repo_id, **kw)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    return seen


def _same_codes(a, b):
    assert_same_codes(a, b, d_in=16, seed=5)


def test_a_cached_hub_id_loads_offline_from_the_cache_only(hf_home, calls):
    sae = _sae()
    save_sae(sae, _snapshot(hf_home, "user/repo") / "topk-24")
    got = load_sae("user/repo/topk-24")
    assert got.architecture == "topk"
    _same_codes(sae, got)
    assert calls == [("user/repo", True, ["topk-24/*"])]


def test_a_cached_saelens_subfolder_and_an_sae_at_the_repository_root_load(hf_home):
    from mmsae.models.saelens import export_saelens

    sae, other = _sae(1, "gated"), _sae(2, "relu")
    export_saelens(sae, _snapshot(hf_home, "user/repo") / "saelens" / "gated")
    save_sae(other, _snapshot(hf_home, "org/single"))
    _same_codes(sae, load_sae("user/repo/saelens/gated"))
    _same_codes(other, load_sae("org/single"))


def test_an_uncached_hub_id_offline_is_one_line_saying_what_is_missing(hf_home):
    with pytest.raises(SAELoadError) as info:
        load_sae("hf://user/nothing/here")
    msg = str(info.value)
    assert len(msg.splitlines()) == 1
    for needle in ("user/nothing", "'here'", "not in the local cache", str(hf_home / "hub"), "HF_HUB_OFFLINE"):
        assert needle in msg, msg
    assert "hf download user/nothing --include 'here/*'" in msg


def test_a_cached_repository_without_the_subfolder_is_not_taken_for_it(hf_home):
    save_sae(_sae(), _snapshot(hf_home, "user/repo") / "topk-24")
    with pytest.raises(SAELoadError, match="subfolder 'relu-24' of the Hugging Face hub repository user/repo"):
        load_sae("user/repo/relu-24")


class _FakeHub:
    """snapshot_download against an in-memory hub: the cache answers local_files_only calls, an
    online call "downloads" (saves the SAE into the cache), or fails as a lost connection would."""

    def __init__(self, hf_home: Path, sae, online: bool):
        self.hf_home, self.sae, self.online, self.calls = hf_home, sae, online, []

    def __call__(self, repo_id, *, allow_patterns=None, local_files_only=False, cache_dir=None, **kw):
        from huggingface_hub.utils import LocalEntryNotFoundError

        self.calls.append(("local" if local_files_only else "online", allow_patterns))
        repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        if local_files_only:
            if not (repo / "refs" / "main").is_file():
                raise LocalEntryNotFoundError("no cached snapshot")
            return str(repo / "snapshots" / COMMIT)
        if not self.online:
            raise LocalEntryNotFoundError("ConnectError: [Errno -3] Temporary failure in name resolution")
        snap = _snapshot(self.hf_home, repo_id)
        save_sae(self.sae, snap / allow_patterns[0].removesuffix("/*"))
        return str(snap)


def _online(monkeypatch):
    """The hub switched on (the environment running the tests may switch it off)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def test_an_uncached_hub_id_is_fetched_once_then_read_from_the_cache(hf_home, monkeypatch):
    _online(monkeypatch)
    sae = _sae(3)
    hub = _FakeHub(hf_home, sae, online=True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    _same_codes(sae, load_sae("hf://user/repo/sub"))
    assert hub.calls == [("local", ["sub/*"]), ("online", ["sub/*"])]
    hub.calls.clear()
    _same_codes(sae, load_sae("user/repo/sub"))  # cached now: the bare id finds it without the network
    assert hub.calls == [("local", ["sub/*"])]


def test_a_bare_uncached_id_never_reaches_the_network(hf_home, monkeypatch):
    """`runs/sae` typed in the wrong folder reads like a hub id; without hf:// it is looked up in
    the cache only, and the message says how to fetch it if a hub id was meant."""
    _online(monkeypatch)
    hub = _FakeHub(hf_home, _sae(), online=True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    with pytest.raises(SAELoadError) as info:
        load_sae("runs/sae")
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and "no such SAE folder" in msg and "hf://runs/sae" in msg, msg
    assert [kind for kind, _ in hub.calls] == ["local"]


def test_a_lost_connection_is_one_line(hf_home, monkeypatch):
    _online(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _FakeHub(hf_home, _sae(), online=False))
    with pytest.raises(SAELoadError) as info:
        load_sae("hf://user/repo/sub")
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and "could not be fetched" in msg and "name resolution" in msg, msg


def test_a_local_path_wins_over_a_hub_id(hf_home):
    hub_sae, local_sae = _sae(1), _sae(2)
    save_sae(hub_sae, _snapshot(hf_home, "user/repo") / "sub")
    save_sae(local_sae, Path("user/repo/sub"))
    _same_codes(local_sae, load_sae("user/repo/sub"))
    # a missing folder under an existing local one is a mistyped path, not a hub id
    with pytest.raises(SAELoadError, match="no such SAE folder"):
        load_sae("user/repo/typo")


@pytest.mark.parametrize(
    "spec,hub",
    [
        ("user/repo", True),
        ("user/repo/sub/folder", True),
        ("Org-1/my.repo_2/k32", True),
        ("repo", False),
        ("/abs/user/repo", False),
        ("./user/repo", False),
        ("user/../repo", False),
        ("user/re--po", False),
        ("user/repo/", False),
        ("~/user/repo", False),
        ("user/repo:main", False),
    ],
)
def test_what_reads_as_a_hub_id(hf_home, spec, hub):
    assert looks_like_hub_id(spec) is hub


# --- export_hub and the model card -------------------------------------------------------------------


def _names(dict_size):
    from mmsae.analysis.naming import ConceptName

    return [
        ConceptName(j, f"dog|{j}" if j % 3 else None, [f"dog{j}", "puppy", "cat"], [0.5, 0.4, 0.3], 0.01 * j)
        for j in range(dict_size)
    ]


def _front_matter(card: str) -> dict:
    import yaml

    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture
def trained(tmp_path):
    """An SAE folder as `mmsae train` leaves it: provenance, metrics.json, and names beside it."""
    from mmsae.analysis.naming import write_names

    folder = tmp_path / "sae"
    sae = _sae()
    save_sae(
        sae,
        folder,
        {
            "store": "/data/coco-vitb32",
            "store_model_id": "open_clip:ViT-B-32/laion2b_s34b_b79k",
            "n_train_rows": 123456,
            "val_metrics": {"fvu": 0.5},
        },
    )
    metrics = {
        "fvu": 0.123456,
        "l0": 4.0,
        "by_modality": {"image": {"fvu": 0.2}, "text": {"fvu": 0.05}},
        "split": "val",
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    write_names(_names(24), folder, {"vocab": "vocab.txt", "method": "decoder"})
    return folder


def test_export_hub_writes_a_loadable_folder_with_a_model_card(trained, tmp_path):
    from mmsae.models.publish import export_hub

    sae = load_sae(trained)
    names = _names(24)
    written = export_hub(
        sae, tmp_path / "up", source=trained, names=names, names_file=trained / "names.json", repo_id="me/saes/k4"
    )
    out = tmp_path / "up"
    assert {p.name for p in written} == {"model.safetensors", "config.json", "metrics.json", "names.json", "README.md"}
    _same_codes(sae, load_sae(out))
    assert json.loads((out / "names.json").read_text())["method"] == "decoder"  # copied as it was

    card = (out / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "mmsae"
    assert "sparse-autoencoder" in meta["tags"] and "topk" in meta["tags"]
    assert 'load_sae("hf://me/saes/k4")' in card
    assert "/data/coco-vitb32" in card and "open_clip:ViT-B-32/laion2b_s34b_b79k" in card and "123456" in card
    assert "| fvu | 0.1235 | 0.2 | 0.05 |" in card  # metrics.json, not the provenance's 0.5
    # the names table: named concepts only, most confident first, the table's separator escaped
    rows = [line for line in card.splitlines() if line.startswith("| ") and "dog\\|" in line]
    named = [j for j in range(24) if j % 3]
    assert [int(r.split("|")[1]) for r in rows] == sorted(named, reverse=True)
    assert "| 23 | dog\\|23 | 0.23 | puppy, cat |" in card


def test_export_hub_falls_back_to_the_provenance_metrics_and_drops_stale_files(trained, tmp_path):
    from mmsae.models.publish import export_hub

    sae = load_sae(trained)
    out = tmp_path / "up"
    export_hub(sae, out, source=trained, names=_names(24))
    (trained / "metrics.json").unlink()
    export_hub(sae, out, source=trained)
    card = (out / "README.md").read_text()
    assert "| fvu | 0.5 |" in card
    assert "Concept names" not in card and not (out / "names.json").exists()
    assert json.loads((out / "metrics.json").read_text()) == {"fvu": 0.5}


def test_find_names_takes_only_the_names_of_this_sae(trained, tmp_path):
    from mmsae.runs import find_names

    assert find_names(trained) == trained / "names.json"
    run = tmp_path / "run"
    for name in ("sae-topk", "sae-relu"):
        save_sae(_sae(), run / name)
    (run / "analysis" / "names").mkdir(parents=True)
    (run / "analysis" / "names" / "names.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"sae": "sae-topk", "store": "store"}))
    assert find_names(run / "sae-topk") == run / "analysis" / "names" / "names.json"
    assert find_names(run / "sae-relu") is None


def test_info_reads_a_cached_hub_id_and_refuses_an_uncached_one_in_one_line(hf_home, capsys):
    import json

    from mmsae.cli.main import main

    save_sae(_sae(), _snapshot(hf_home, "user/repo") / "topk-24")
    assert main(["info", "user/repo/topk-24"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["architecture"] == "topk" and out["dict_size"] == 24
    assert main(["info", "hf://user/nothing/here"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not in the local cache" in err
