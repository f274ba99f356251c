"""A demo that cannot start leaves nothing behind and says where it looked (issue 18, defect 9)."""

import urllib.request

import pytest

from mmsae.cli.main import main
from mmsae.pipelines.common import DEMO_MARK, prepare_out


def test_coco_demo_without_captions_leaves_nothing_and_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MMSAE_SHARED_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    out = tmp_path / "run"
    assert main(["demo", "--data", "coco-captions", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--captions" in err and "MMSAE_SHARED_DATA" in err and "shared/data" in err
    assert not out.exists()


def test_a_failed_demo_folder_is_replaced_by_the_next_run(tmp_path):
    out = tmp_path / "run"
    prepare_out(out)
    (out / "half-written.npy").write_bytes(b"x")  # a run that died before writing its summary
    prepare_out(out)
    assert sorted(p.name for p in out.iterdir()) == [DEMO_MARK]


def test_a_folder_that_is_not_a_demo_is_refused(tmp_path):
    from mmsae.errors import MmsaeError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(MmsaeError, match="not an mmsae demo folder"):
        prepare_out(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
