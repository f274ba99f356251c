"""EleutherAI sparsify (github.com/EleutherAI/sparsify): one folder per hookpoint holding
`cfg.json` + `sae.safetensors`, a TopK SAE.

Where the layout is defined: `sparsify/sparse_coder.py`, `SparseCoder.save_to_disk` /
`load_from_disk` (the class was `Sae` in `sae/sae.py` before the 2025-02 rename):

- `sae.safetensors` is `safetensors.torch.save_model(sae)`, the module's parameters by name:
  `encoder.weight` [F, D] and `encoder.bias` [F] (an `nn.Linear`), `W_dec` [F, D], `b_dec` [D],
  and `W_skip` [D, D] when the config has `skip_connection`. The first releases (June 2024) stored
  `W_enc` [D, F] and `b_enc` [F] instead of the Linear; both load. Weights may be bfloat16
  (sparsify trained in it); they are read as float32.
- `cfg.json` is `SparseCoderConfig.to_dict()` plus `d_in`: `k`, `activation` ("topk" or
  "groupmax"), `transcode`, `skip_connection`, `num_latents`, `expansion_factor`,
  `normalize_decoder`, `multi_topk` (mid-2024 releases also had `signed`).
- encode (`SparseCoder.encode`, then `sparsify/fused_encoder.py` `FusedEncoder.forward`):
  relu((x − b_dec) Wᵀ + b), then the k largest per row; decode (`SparseCoder.decode`): the top
  activations times their rows of W_dec, plus b_dec. That is mmsae's TopK SAE with
  W_enc = encoder.weightᵀ, exactly (ReLU before or after the top-k selection keeps the same values).
- A training run writes `save_dir/run_name/<hookpoint>/` per hookpoint, beside the run's
  `config.json` (`sparsify/trainer.py` `Trainer._checkpoint`); `mmsae.models.formats` loads a run
  folder with one hookpoint, and names the hookpoints of one with several.

Refused, with the reason: transcoders (`transcode`: the decoder predicts another module's output
and the input is not centred, so x̂ is not a reconstruction of x), skip connections (x̂ adds
x W_skipᵀ, which mmsae's decoder has no term for), `groupmax` (one latent per block of F/k, not
the k largest), `signed` SAEs (the k largest by |π|, keeping negative codes), and a folder saved
without its decoder.
"""

from __future__ import annotations

from pathlib import Path

from mmsae.errors import SAELoadError
from mmsae.models.base import SparseAutoencoder
from mmsae.models.formats._common import build, read_json, read_safetensors, require, transposed

NAME = "sparsify"
LAYOUT = "cfg.json + sae.safetensors (sparsify)"
CONFIG = "cfg.json"
WEIGHTS = "sae.safetensors"


def detect(folder: Path) -> bool:
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def load(folder: Path) -> SparseAutoencoder:
    cfg = read_json(folder / CONFIG)
    where = f"{folder}/{CONFIG}"
    if not isinstance(cfg, dict):
        raise SAELoadError(f"{where} is damaged: not a sparsify config object")
    for flag, why in (
        ("transcode", "a transcoder (its decoder predicts another module's output), not an autoencoder"),
        ("skip_connection", "an SAE with a skip connection (x̂ adds x W_skipᵀ, which mmsae's decoder has no term for)"),
        ("signed", "a signed SAE (the k largest |π|, keeping negative codes)"),
    ):
        if cfg.get(flag):
            raise SAELoadError(f"{folder}: {why}; mmsae reads sparsify TopK autoencoders only")
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise SAELoadError(f"{folder}: sparsify activation {activation!r} is not supported (only 'topk')")
    t = read_safetensors(folder / WEIGHTS)
    weights = f"{folder}/{WEIGHTS}"
    if "W_skip" in t:
        raise SAELoadError(f"{weights} has a skip connection (W_skip), which mmsae's decoder has no term for")
    if "encoder.weight" in t:
        require(t, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), weights, "sparsify SAE")
        W_enc_DF, b_enc_F = transposed(t["encoder.weight"]), t["encoder.bias"]
    else:  # the June 2024 layout
        require(t, ("W_enc", "b_enc", "W_dec", "b_dec"), weights, "sparsify SAE")
        W_enc_DF, b_enc_F = t["W_enc"], t["b_enc"]
    d_in = cfg.get("d_in")
    if d_in is not None and W_enc_DF.ndim == 2 and d_in != W_enc_DF.shape[0]:
        raise SAELoadError(f"{where} says d_in={d_in!r}, the weights have {W_enc_DF.shape[0]} inputs")
    return build(
        "topk",
        weights,
        W_enc_DF=W_enc_DF,
        b_enc_F=b_enc_F,
        W_dec_FD=t["W_dec"],
        b_dec_D=t["b_dec"],
        k=cfg.get("k"),
        provenance={"format": NAME, "source": str(folder), "sparsify_config": cfg},
    )
