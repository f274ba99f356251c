"""Training with the latents chosen by a bfloat16 GEMM recovers the planted concepts as fp32 does."""

import json

import pytest

from mmsae.data.synthetic import load_ground_truth, recovery
from mmsae.errors import MmsaeError
from mmsae.models.io import load_sae
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer


def test_bf16_selection_trains_like_fp32(small_synth, tmp_path):
    gt = load_ground_truth(small_synth)
    res = {}
    for dt in ("float32", "bfloat16"):
        cfg = TrainConfig(
            arch="topk",
            dict_size=256,
            k=8,
            epochs=20,
            batch_size=256,
            lr=3e-3,
            device="cpu",
            checkpoint_every=0,
            select_dtype=dt,
        )
        out = Trainer(small_synth, tmp_path / dt, cfg, progress=False).run()
        sae = load_sae(out.out_dir)
        assert sae.select_dtype is None  # a training setting: never saved into the model
        rec, _ = recovery(sae.W_dec.detach().numpy(), gt.dictionary_CD)
        res[dt] = (rec, out.val_metrics["fvu"])
        assert json.loads((tmp_path / dt / "train_config.json").read_text())["select_dtype"] == dt
    assert res["bfloat16"][0] >= 0.9 and res["float32"][0] >= 0.9
    assert abs(res["bfloat16"][1] - res["float32"][1]) < 0.01 + 0.1 * res["float32"][1], res


def test_select_dtype_is_checked():
    with pytest.raises(MmsaeError, match="select dtype"):
        TrainConfig(select_dtype="int8")
