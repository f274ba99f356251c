"""saev (github.com/OSU-NLP-Group/saev): one file, `sae.pt`, holding a JSON header line followed
by `torch.save(sae.state_dict())` written into the same file.

Where the layout is defined: `src/saev/nn/modeling.py`, `dump` / `load` (`saev/nn.py` in the
releases before the 2025-06 move to `src/`; `saev` 0.1.0 on PyPI is one of those):

- header, by `schema`: 2 to 5 (current, 5): `{"schema", "cfg": {"d_model", "d_sae", "activation":
  {"cls": "Relu" | "TopK" | "BatchTopK", "params": {"top_k", ...}}, ...}, "commit", "lib"}`;
  1: `{"schema": 1, "cfg", "cls"}`, where `cls` named the activation in its first form (with
  `cfg.top_k`) and the config class in its second (with `cfg.activation` as above); no `schema`:
  the raw config (`d_vit`, `exp_factor`, ...), a ReLU SAE. `load` reads all of them the same way.
- state dict: `W_enc` [D, F], `b_enc` [F], `W_dec` [F, D], `b_dec` [D], and for BatchTopK the
  buffer `activation.threshold` (a scalar).
- encode (`SparseAutoencoder.encode` and the activation modules): h = x W_enc + b_enc, then
  `ReluActivation` relu(h); `TopKActivation` the k largest h of each row, as they are;
  `BatchTopKActivation` in eval mode h where h > θ (θ ≤ 0: where h > 0). decode: f W_dec + b_dec
  (the last of the Matryoshka prefix reconstructions, the one over the whole dictionary).
- A run writes `<run>/checkpoint/sae.pt` (`src/saev/disk.py`, `Run.ckpt`); older ones
  `<ckpt_dir>/<run id>/sae.pt`. Either folder loads: `checkpoint/` is searched one level down.

The input centring changed over saev's history: the code that wrote pre-schema and schema-1
files encoded (x − b_dec) W_enc + b_enc, and those load with that formula (`saev_centred: true`
in the provenance); from 2025-09 the encoder does not subtract b_dec, and schema 2 to 5 files load
as today's saev reads them, uncentred (b_dec W_enc moves into b_enc). A schema-2 file written
before 2025-09-05 came from the centred code and differs where its b_dec is not zero; saev's own
`load` reads it uncentred too.

Differences that remain: saev's TopK keeps a row's k largest pre-activations even where some are
negative, mmsae's zeroes those (they occur only when fewer than k of a row's F pre-activations are
positive). Refused: BatchTopK files from before saev's inference threshold (2025-11: no
`activation.threshold`), whose codes depend on the other rows of the batch.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from mmsae.errors import SAELoadError
from mmsae.models.base import SparseAutoencoder
from mmsae.models.formats._common import build, centred_bias, read_torch_weights, require

NAME = "saev"
LAYOUT = "sae.pt with a JSON header line (saev)"
WEIGHTS = "sae.pt"
NEWEST_SCHEMA = 5


def _header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a saev file, or None when the first line is not a JSON object."""
    try:
        with open(path, "rb") as fd:
            line = fd.readline(1 << 20)
        header = json.loads(line)
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def detect(folder: Path) -> bool:
    return (folder / WEIGHTS).is_file() and _header(folder / WEIGHTS) is not None


def _activation(header: dict[str, Any], where: str) -> tuple[str, int | None, bool]:
    """(activation class name, top_k, centred input) from any header saev ever wrote."""
    schema = header.get("schema")
    if schema is None:
        return "Relu", None, True
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise SAELoadError(f"{where}: header schema {schema!r} is not a saev schema")
    if schema > NEWEST_SCHEMA:
        raise SAELoadError(
            f"{where} was written by a newer saev (schema {schema}); mmsae reads schemas up to {NEWEST_SCHEMA}"
        )
    cfg = header.get("cfg")
    if not isinstance(cfg, dict):
        raise SAELoadError(f"{where}: header without a cfg object")
    if schema == 1 and header.get("cls") in ("Relu", "TopK", "BatchTopK"):
        return header["cls"], cfg.get("top_k", 32), True
    act = cfg.get("activation")
    if not isinstance(act, dict) or not isinstance(act.get("cls"), str):
        raise SAELoadError(f"{where}: header cfg without an activation {{cls, params}}")
    params = act.get("params") if isinstance(act.get("params"), dict) else {}
    return act["cls"], params.get("top_k", 32), schema == 1


def load(folder: Path) -> SparseAutoencoder:
    path = folder / WEIGHTS
    where = str(path)
    header = _header(path)
    if header is None:
        raise SAELoadError(f"{where} is not a saev checkpoint: its first line is not a JSON header")
    act, top_k, centred = _activation(header, where)
    try:
        with open(path, "rb") as fd:
            fd.readline(1 << 20)
            rest = fd.read()
    except OSError as exc:
        raise SAELoadError(f"{where}: cannot be read: {exc.strerror}") from None
    t = read_torch_weights(io.BytesIO(rest), where)
    if not isinstance(t, dict):
        raise SAELoadError(f"{where} is damaged: after the header comes a {type(t).__name__}, not a state dict")
    require(t, ("W_enc", "b_enc", "W_dec", "b_dec"), where, "saev SAE")
    W_enc_DF, b_enc_F, b_dec_D = t["W_enc"], t["b_enc"], t["b_dec"]
    if W_enc_DF.ndim != 2:
        raise SAELoadError(f"{where}: W_enc has shape {tuple(W_enc_DF.shape)}, expected [d_model, d_sae]")
    if not centred:
        b_enc_F = centred_bias(b_enc_F, b_dec_D, W_enc_DF, where)
    provenance = {"format": NAME, "source": where, "saev_header": header, "saev_centred": centred}
    weights = {"W_enc_DF": W_enc_DF, "b_enc_F": b_enc_F, "W_dec_FD": t["W_dec"], "b_dec_D": b_dec_D}
    if act == "Relu":
        return build("relu", where, **weights, provenance=provenance)
    if act == "TopK":
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise SAELoadError(f"{where}: TopK activation needs a positive top_k, got {top_k!r}")
        # saev takes min(top_k, d_sae)
        return build("topk", where, **weights, k=min(top_k, W_enc_DF.shape[-1]), provenance=provenance)
    if act == "BatchTopK":
        threshold = t.get("activation.threshold")
        if not isinstance(threshold, torch.Tensor):
            raise SAELoadError(
                f"{where}: a BatchTopK SAE from before saev's inference threshold (no activation.threshold): "
                "its codes depend on the other rows of the batch"
            )
        k = min(top_k, W_enc_DF.shape[-1]) if isinstance(top_k, int) and top_k > 0 else 1
        # saev's eval rule is h > θ for θ > 0 and h > 0 otherwise: mmsae's π > θ and π > 0
        return build("batchtopk", where, **weights, k=k, threshold_F=threshold.float(), provenance=provenance)
    raise SAELoadError(f"{where}: saev activation {act!r} is not supported (Relu, TopK, BatchTopK)")
