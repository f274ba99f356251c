"""dictionary_learning (github.com/saprmarks/dictionary_learning): a trainer folder holding
`ae.pt` (the dictionary's `state_dict()`) and `config.json` (`{"trainer": trainer.config,
"buffer": ...}`), whose `trainer.dict_class` names the dictionary class.

Where the layout is defined: `dictionary_learning/training.py`, `trainSAE` (writes
`save_dir/trainer_N/config.json`, and at the end `ae.pt` with the biases scaled back to raw
activations when it normalised them); each class's `state_dict` and `encode` are in
`dictionary_learning/dictionary.py` and `dictionary_learning/trainers/*.py`:

| dict_class | tensors | encode | mmsae |
|---|---|---|---|
| `AutoEncoder` (dictionary.py) | `encoder.weight` [F, D], `encoder.bias`, `decoder.weight` [D, F], `bias` [D] | relu(encoder(x − bias)) | relu |
| `AutoEncoderNew` (dictionary.py) | `encoder.*`, `decoder.weight`, `decoder.bias` [D] | relu(encoder(x)) | relu, b_dec folded in |
| `GatedAutoEncoder` (dictionary.py) | `encoder.weight`, `decoder.weight`, `decoder_bias`, `r_mag`, `gate_bias`, `mag_bias` | H(π_gate)·relu(e^{r_mag}·encoder(x − decoder_bias) + mag_bias) | gated |
| `JumpReluAutoEncoder` (dictionary.py) | `W_enc` [D, F], `b_enc`, `W_dec` [F, D], `b_dec`, `threshold` [F] | relu(π·H(π − θ)), π = x W_enc + b_enc (`apply_b_dec_to_input` is False and not saved) | jumprelu, b_dec folded in |
| `AutoEncoderTopK` (trainers/top_k.py) | `encoder.*`, `decoder.weight`, `b_dec`, `k`, `threshold` | the k largest of relu(encoder(x − b_dec)) | topk |
| `BatchTopKSAE` (trainers/batch_top_k.py) | as TopK | relu(π)·(relu(π) > threshold), the inference default | batchtopk |
| `MatryoshkaBatchTopKSAE` (trainers/matryoshka_batch_top_k.py) | `W_enc` [D, F], `b_enc`, `W_dec` [F, D], `b_dec`, `k`, `threshold`, `group_sizes` | as BatchTopK (all groups active once loaded) | batchtopk |

The decoder of an `nn.Linear` is stored [D, F]; its transpose is mmsae's W_dec. The early
TopK class (2024-07) kept `decoder` [F, D] as a Parameter and `k` in the config only; both load.
`AutoEncoder.from_pretrained` rescales decoder columns to unit norm by default (the encoder rows
and bias by the same norms), which changes codes by that positive factor and leaves x̂ alone;
mmsae loads it the same way, so codes equal `AutoEncoder.from_pretrained(path).encode(x)` and the
decoder rows have mmsae's unit norm. The other classes load as saved.

Refused: `ae.pt` as a training backup (`{"step", "ae", "optimizer", ...}`, left by an interrupted
run, whose weights still act on normalised activations), BatchTopK files from before the
inference threshold (2024-12), whose codes depend on the rest of the batch, and dictionary
classes outside the table (crosscoders, `IdentityDict`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmsae.errors import SAELoadError
from mmsae.models.base import SparseAutoencoder
from mmsae.models.formats._common import build, centred_bias, read_json, read_torch_weights, require, transposed

NAME = "dictionary_learning"
LAYOUT = "ae.pt + config.json (dictionary_learning)"
WEIGHTS = "ae.pt"
CONFIG = "config.json"

_CLASS_ALIASES = {
    "TopKAutoEncoder": "AutoEncoderTopK",
    "MatroyshkaBatchTopKSAE": "MatryoshkaBatchTopKSAE",  # the spelling of early 2025 releases
}
_BY_TRAINER = {
    "StandardTrainer": "AutoEncoder",
    "StandardTrainerAprilUpdate": "AutoEncoder",
    "PAnnealTrainer": "AutoEncoder",
    "GatedSAETrainer": "GatedAutoEncoder",
    "GatedAnnealTrainer": "GatedAutoEncoder",
    "TrainerTopK": "AutoEncoderTopK",
    "TopKTrainer": "AutoEncoderTopK",
    "TrainerBatchTopK": "BatchTopKSAE",
    "BatchTopKTrainer": "BatchTopKSAE",
    "TrainerJumpRelu": "JumpReluAutoEncoder",
    "JumpReluTrainer": "JumpReluAutoEncoder",
    "MatroyshkaBatchTopKTrainer": "MatryoshkaBatchTopKSAE",
    "MatryoshkaBatchTopKTrainer": "MatryoshkaBatchTopKSAE",
}
"""Trainers that wrote no `dict_class`, and the class each trained."""
SUPPORTED = (
    "AutoEncoder",
    "AutoEncoderNew",
    "GatedAutoEncoder",
    "JumpReluAutoEncoder",
    "AutoEncoderTopK",
    "BatchTopKSAE",
    "MatryoshkaBatchTopKSAE",
)


def detect(folder: Path) -> bool:
    return (folder / WEIGHTS).is_file()


def _dict_class(trainer: dict[str, Any], t: dict[str, torch.Tensor]) -> str | None:
    """The dictionary class: from the config, else from the tensors where they tell it apart."""
    trainer_class = trainer.get("trainer_class")
    name = trainer.get("dict_class") or (_BY_TRAINER.get(trainer_class) if isinstance(trainer_class, str) else None)
    if isinstance(name, str):
        return _CLASS_ALIASES.get(name, name)
    if "group_sizes" in t:
        return "MatryoshkaBatchTopKSAE"
    if "r_mag" in t and "gate_bias" in t:
        return "GatedAutoEncoder"
    if "W_enc" in t and "threshold" in t and t["threshold"].ndim == 1:
        return "JumpReluAutoEncoder"
    if "bias" in t and "encoder.bias" in t:
        return "AutoEncoder"
    if "decoder.bias" in t:
        return "AutoEncoderNew"
    return None  # TopK and BatchTopK store the same tensors


def _k(t: dict[str, torch.Tensor], trainer: dict[str, Any]) -> Any:
    k = t.get("k")
    if isinstance(k, torch.Tensor) and k.numel() == 1:
        return int(k.item())
    return trainer.get("k")


def load(folder: Path) -> SparseAutoencoder:
    where = f"{folder}/{WEIGHTS}"
    config: Any = read_json(folder / CONFIG) if (folder / CONFIG).is_file() else {}
    if not isinstance(config, dict) or not isinstance(config.get("trainer", {}), dict):
        raise SAELoadError(f"{folder}/{CONFIG} is damaged: not a dictionary_learning config ({{trainer: ...}})")
    trainer = config.get("trainer", {})
    t = read_torch_weights(folder / WEIGHTS, where)
    if isinstance(t, dict) and isinstance(t.get("ae"), dict) and "optimizer" in t:
        raise SAELoadError(
            f"{where} is a training backup (step {t.get('step')!r} of an unfinished run, saved with its optimiser, "
            "its biases not yet scaled back to raw activations); load a finished run's ae.pt"
        )
    if not isinstance(t, dict) or not all(isinstance(v, torch.Tensor) for v in t.values()):
        raise SAELoadError(f"{where} is damaged: not a state dict of tensors")
    name = _dict_class(trainer, t)
    if name is None:
        raise SAELoadError(
            f"{where}: cannot tell AutoEncoderTopK from BatchTopKSAE without {CONFIG} (trainer.dict_class)"
        )
    if name not in SUPPORTED:
        raise SAELoadError(f"{where}: dictionary_learning class {name!r} is not supported ({', '.join(SUPPORTED)})")
    provenance = {"format": NAME, "source": str(folder), "dict_class": name, "trainer": trainer}
    if "decoder" in t and "decoder.weight" not in t:
        # the early TopK class kept a Parameter `decoder` [F, D], not an nn.Linear's weight [D, F]
        t = {**t, "decoder.weight": transposed(t["decoder"])}
    what = f"dictionary_learning {name}"

    if name == "AutoEncoder":
        require(t, ("encoder.weight", "encoder.bias", "decoder.weight", "bias"), where, what)
        W_enc_DF, b_enc_F, W_dec_FD = (
            transposed(t["encoder.weight"]).double(),
            t["encoder.bias"].double(),
            transposed(t["decoder.weight"]),
        )
        # from_pretrained(normalize_decoder=True): unless every decoder column already has unit norm
        # (torch.allclose), divide them by their norms and multiply the encoder rows and bias by them
        shapes_fit = W_dec_FD.ndim == 2 and W_dec_FD.T.shape == W_enc_DF.shape and b_enc_F.shape == W_dec_FD.shape[:1]
        norms_F = W_dec_FD.float().norm(dim=1) if shapes_fit else None  # in float32, as the library decides
        if norms_F is not None and bool((norms_F > 0).all()) and not torch.allclose(norms_F, torch.ones_like(norms_F)):
            norms_F = norms_F.double()
            W_enc_DF, b_enc_F, W_dec_FD = W_enc_DF * norms_F, b_enc_F * norms_F, W_dec_FD.double() / norms_F[:, None]
        return build(
            "relu",
            where,
            W_enc_DF=W_enc_DF,
            b_enc_F=b_enc_F,
            W_dec_FD=W_dec_FD,
            b_dec_D=t["bias"],
            provenance=provenance,
        )
    if name == "AutoEncoderNew":
        require(t, ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"), where, what)
        W_enc_DF, b_dec_D = transposed(t["encoder.weight"]), t["decoder.bias"]
        return build(
            "relu",
            where,
            W_enc_DF=W_enc_DF,
            b_enc_F=centred_bias(t["encoder.bias"], b_dec_D, W_enc_DF, where),
            W_dec_FD=transposed(t["decoder.weight"]),
            b_dec_D=b_dec_D,
            provenance=provenance,
        )
    if name == "GatedAutoEncoder":
        require(t, ("encoder.weight", "decoder.weight", "decoder_bias", "r_mag", "gate_bias", "mag_bias"), where, what)
        return build(
            "gated",
            where,
            W_enc_DF=transposed(t["encoder.weight"]),
            b_enc_F=t["gate_bias"],
            W_dec_FD=transposed(t["decoder.weight"]),
            b_dec_D=t["decoder_bias"],
            r_mag_F=t["r_mag"],
            b_mag_F=t["mag_bias"],
            provenance=provenance,
        )
    if name == "JumpReluAutoEncoder":
        require(t, ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"), where, what)
        W_enc_DF, b_dec_D = t["W_enc"], t["b_dec"]
        # relu(π·H(π − θ)) = π·H(π − θ)·H(π): mmsae's JumpReLU for θ > 0 (θ ≤ 0, see SMALLEST_THRESHOLD)
        return build(
            "jumprelu",
            where,
            W_enc_DF=W_enc_DF,
            b_enc_F=centred_bias(t["b_enc"], b_dec_D, W_enc_DF, where),  # apply_b_dec_to_input=False
            W_dec_FD=t["W_dec"],
            b_dec_D=b_dec_D,
            threshold_F=t["threshold"],
            provenance=provenance,
        )
    if name == "MatryoshkaBatchTopKSAE":
        require(t, ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"), where, what)
        W_enc_DF, b_enc_F, W_dec_FD = t["W_enc"], t["b_enc"], t["W_dec"]
        provenance["group_sizes"] = t["group_sizes"].tolist() if "group_sizes" in t else None
    else:  # AutoEncoderTopK, BatchTopKSAE
        require(t, ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec"), where, what)
        W_enc_DF, b_enc_F, W_dec_FD = (
            transposed(t["encoder.weight"]),
            t["encoder.bias"],
            transposed(t["decoder.weight"]),
        )
    k = _k(t, trainer)
    if name == "AutoEncoderTopK":
        return build(
            "topk",
            where,
            W_enc_DF=W_enc_DF,
            b_enc_F=b_enc_F,
            W_dec_FD=W_dec_FD,
            b_dec_D=t["b_dec"],
            k=k,
            provenance=provenance,
        )
    threshold = t.get("threshold")
    if not isinstance(threshold, torch.Tensor) or threshold.numel() != 1:
        raise SAELoadError(
            f"{where}: a {name} without its scalar inference threshold (from before 2024-12): "
            "its codes depend on the rest of the batch"
        )
    # relu(π)·(relu(π) > θ) = π·H(π − θ)·H(π), for any θ (−1 when never set: plain ReLU)
    return build(
        "batchtopk",
        where,
        W_enc_DF=W_enc_DF,
        b_enc_F=b_enc_F,
        W_dec_FD=W_dec_FD,
        b_dec_D=t["b_dec"],
        k=k,
        threshold_F=threshold.reshape(()).float(),
        provenance=provenance,
    )
