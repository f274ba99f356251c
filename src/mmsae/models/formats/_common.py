"""What the foreign formats share: reading weight files so that a damaged one is one line, and
turning a library's weights into an mmsae SAE with every shape checked.

Each format module maps its library's layout onto the four weights mmsae computes with,

    z = act((x − b_dec) @ W_enc + b_enc),    x̂ = z @ W_dec + b_dec,

folding the library's options (an encoder that does not subtract b_dec, a decoder stored as an
`nn.Linear` weight [D, F]) into them, and `build` checks the shapes against one another: a
mismatch would otherwise surface as a broadcasting error deep inside `encode`, which the CLI
reports as a bug in mmsae rather than a damaged file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from mmsae.errors import SAELoadError
from mmsae.models.base import SparseAutoencoder
from mmsae.models.batchtopk import BatchTopKConfig, BatchTopKSAE
from mmsae.models.gated import GatedConfig, GatedSAE
from mmsae.models.jumprelu import JumpReLUConfig, JumpReLUSAE
from mmsae.models.relu import ReLUConfig, ReLUSAE
from mmsae.models.topk import TopKConfig, TopKSAE

SMALLEST_THRESHOLD = torch.finfo(torch.float32).tiny
"""mmsae's JumpReLU keeps θ = exp(log θ) > 0; a library threshold θ ≤ 0 means "fire when the
ReLU'd pre-activation is positive", so it becomes the smallest normal float32 (1.2e-38): the two
differ only for 0 < π ≤ 1.2e-38, whose contribution to x̂ is below float32's resolution."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """A third-party exception's message on one line (torch and safetensors write several)."""
    return " ".join(str(exc).split())[:limit]


def read_json(path: Path) -> Any:
    """A library's JSON config, or one line saying why it cannot be read."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SAELoadError(f"{path.parent}: missing {path.name}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SAELoadError(f"{path} is damaged: {one_line(exc)}") from None


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise SAELoadError(f"{path.parent}: missing {path.name}") from None
    except Exception as exc:  # safetensors raises its own error type for truncated files
        raise SAELoadError(f"{path} is damaged: {one_line(exc)}") from None


def read_torch_weights(source: Any, where: str) -> Any:
    """`torch.load` with `weights_only=True`: tensors and plain containers come back, and nothing
    in the file can run code. A file holding Python objects (a pickled module, an optimiser's
    custom class) is refused by name rather than unpickled."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SAELoadError(f"{where}: no such file") from None
    except Exception as exc:  # torch raises zip, pickle and runtime errors for damaged files
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        if found:
            raise SAELoadError(
                f"{where} holds a Python object ({found.group(1)}), not only tensors; mmsae reads such "
                "files without running code from them"
            ) from None
        raise SAELoadError(f"{where} is damaged: {one_line(exc)}") from None


def require(tensors: dict[str, torch.Tensor], names: tuple[str, ...], where: str, what: str) -> None:
    """One line naming every tensor `what` needs and `where` lacks."""
    missing = [n for n in names if not isinstance(tensors.get(n), torch.Tensor)]
    if missing:
        raise SAELoadError(f"{where}: {what} without tensor(s) {', '.join(missing)} (found: {_names(tensors)})")


def _names(tensors: dict[str, Any]) -> str:
    names = sorted(str(n) for n in tensors)
    return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "") or "none"


def transposed(W: torch.Tensor) -> torch.Tensor:
    """A stored [out, in] matrix as [in, out]; any other shape is left for `build` to refuse by name."""
    return W.T if W.ndim == 2 else W


def centred_bias(b_enc_F: torch.Tensor, b_dec_D: torch.Tensor, W_enc_DF: torch.Tensor, where: str) -> torch.Tensor:
    """The b_enc that makes mmsae's centred encoder equal an uncentred one:
    act(x W + b) = act((x − b_dec) W + (b + b_dec W)). In float64, so the fold adds no error a
    float32 comparison could see."""
    _check_shapes(W_enc_DF, b_enc_F, None, b_dec_D, where)
    return b_enc_F.double() + b_dec_D.double() @ W_enc_DF.double()


def _check_shapes(W_enc_DF, b_enc_F, W_dec_FD, b_dec_D, where: str, **extra_F) -> tuple[int, int]:
    if W_enc_DF.ndim != 2:
        raise SAELoadError(f"{where}: encoder weight has shape {tuple(W_enc_DF.shape)}, expected a matrix")
    D, F_ = W_enc_DF.shape
    want = {"encoder bias": (b_enc_F, (F_,)), "decoder bias": (b_dec_D, (D,))}
    if W_dec_FD is not None:
        want["decoder weight"] = (W_dec_FD, (F_, D))
    want |= {name: (t, (F_,)) for name, t in extra_F.items() if t is not None}
    for name, (t, shape) in want.items():
        if tuple(t.shape) != shape:
            raise SAELoadError(
                f"{where}: {name} has shape {tuple(t.shape)}, the encoder ({D} inputs, {F_} latents) implies {shape}"
            )
    return D, F_


def build(
    architecture: str,
    where: str,
    *,
    W_enc_DF: torch.Tensor,
    b_enc_F: torch.Tensor,
    W_dec_FD: torch.Tensor,
    b_dec_D: torch.Tensor,
    provenance: dict[str, Any],
    k: int | None = None,
    threshold_F: torch.Tensor | None = None,
    r_mag_F: torch.Tensor | None = None,
    b_mag_F: torch.Tensor | None = None,
) -> SparseAutoencoder:
    """An mmsae SAE of `architecture` ("relu", "topk", "batchtopk", "jumprelu", "gated") holding
    these weights, in eval mode, with `provenance` saying where they came from.

    `threshold_F` is the inference threshold (batchtopk: any value, compared as π > θ and π > 0;
    jumprelu: θ ≤ 0 is read as `SMALLEST_THRESHOLD`); a scalar is one threshold for every latent.
    """
    if threshold_F is not None and threshold_F.ndim == 0:
        threshold_F = threshold_F.expand(W_enc_DF.shape[-1] if W_enc_DF.ndim == 2 else 1)
    D, F_ = _check_shapes(
        W_enc_DF, b_enc_F, W_dec_FD, b_dec_D, where, threshold=threshold_F, r_mag=r_mag_F, b_mag=b_mag_F
    )
    if architecture in ("topk", "batchtopk") and (not isinstance(k, int) or isinstance(k, bool) or not 0 < k <= F_):
        raise SAELoadError(f"{where}: k must be a whole number in [1, {F_}] (the latents), got {k!r}")
    if threshold_F is not None and torch.isnan(threshold_F).any():
        raise SAELoadError(f"{where}: the threshold holds NaN")
    if architecture == "relu":
        sae: SparseAutoencoder = ReLUSAE(ReLUConfig(d_in=D, dict_size=F_))
    elif architecture == "topk":
        sae = TopKSAE(TopKConfig(d_in=D, dict_size=F_, k=k))
    elif architecture == "batchtopk":
        sae = BatchTopKSAE(BatchTopKConfig(d_in=D, dict_size=F_, k=k))
    elif architecture == "jumprelu":
        sae = JumpReLUSAE(JumpReLUConfig(d_in=D, dict_size=F_))
    elif architecture == "gated":
        sae = GatedSAE(GatedConfig(d_in=D, dict_size=F_))
    else:  # pragma: no cover - the format modules name only the five above
        raise ValueError(f"unknown architecture {architecture!r}")
    with torch.no_grad():
        sae.W_enc.copy_(W_enc_DF.float())
        sae.b_enc.copy_(b_enc_F.float())
        sae.W_dec.copy_(W_dec_FD.float())
        sae.b_dec.copy_(b_dec_D.float())
        if isinstance(sae, BatchTopKSAE):
            sae.threshold.copy_(threshold_F.float())
        elif isinstance(sae, JumpReLUSAE):
            sae.log_threshold.copy_(threshold_F.double().clamp_min(SMALLEST_THRESHOLD).log())
        elif isinstance(sae, GatedSAE):
            sae.r_mag.copy_(r_mag_F.float())
            sae.b_mag.copy_(b_mag_F.float())
    sae.provenance = provenance
    return sae.eval()
