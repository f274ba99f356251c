"""overcomplete (github.com/KempnerInstitute/overcomplete): an SAE module saved whole with
`torch.save(sae, PATH)`, one `.pt` / `.pth` file in the folder.

overcomplete has no save function of its own; its tests save and load SAEs this way
(`tests/sae/test_save_and_load.py`, `torch.save(model, path)` then `torch.load(path,
weights_only=False)`), so the file is a pickle of the module tree. Where that tree is defined:

- `overcomplete/sae/base.py` `SAE`: `encoder` and `dictionary` submodules; encode is the
  encoder's `(pre_codes, codes)`, decode `z @ dictionary.get_dictionary()`: no decoder bias and no
  input centring, so mmsae's b_dec is 0.
- `overcomplete/sae/factory.py` "linear", the default encoder: `MLPEncoder` (`sae/modules.py`)
  with no hidden blocks, `final_block = Sequential(Linear(D, F), Identity())` and
  `final_activation = ReLU()`: codes relu(x Wᵀ + b). Or `TieableEncoder` (`sae.tied()` /
  `untied()`): relu(x Wᵀ + b) with its own `weight` [F, D], or the dictionary's when tied.
- `overcomplete/sae/dictionary.py` `DictionaryLayer`: `_weights` [F, D], `multiplier` (a scalar,
  log scale), `normalization` (`normalize_l2`, `normalize_max_l2`, `normalize_l1`,
  `normalize_max_l1`, `normalize_identity`). In training mode `get_dictionary()` is
  normalization(_weights)·exp(multiplier); `.eval()` stores that as `_fused_dictionary` and decode
  uses it. mmsae's W_dec is the fused dictionary when the file was saved in eval mode, else that
  product.
- Codes (mmsae architecture): `SAE` relu(π) (relu); `TopKSAE` (`sae/topk_sae.py`) the `top_k`
  largest of relu(π) (topk); `JumpSAE` (`sae/jump_sae.py`) relu(π) where relu(π) ≥ exp(thresholds)
  (jumprelu, log_threshold = `thresholds`); `BatchTopKSAE` (`sae/batchtopk_sae.py`) in eval mode
  relu(π) where relu(π) ≥ running_threshold (batchtopk). mmsae compares with > where these use ≥,
  which differs only for a pre-activation exactly equal to its threshold.

Reading a pickle can run any code its author chose, so mmsae never unpickles the file as is: a
restricted unpickler (the "restricting globals" pattern of Python's `pickle` documentation) lets
through only torch's own functions that rebuild tensors, and every other class or function the
file names becomes an inert record of its name and state, which this module then reads. The zip
archive is opened here rather than by `torch.load`, which would pass TorchScript archives to
`torch.jit.load` and legacy files to its tar loader; those are refused. So the file loads without
overcomplete installed, and nothing in it runs.

Refused, with the reason: a state dict (`torch.save(sae.state_dict())`: it does not say which SAE
class or `top_k` it had), deeper encoders (`mlp_*`, attention, resnet: their codes are not one
affine map of x), a `BatchTopKSAE` never run in training mode (no running threshold), custom
normalizations, and the other SAEs (`QSAE`, `MpSAE`, `OMPSAE`, archetypal `RATopKSAE` /
`RAJumpSAE`), whose encoders mmsae has no counterpart for.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any, ClassVar

import torch

from mmsae.errors import SAELoadError
from mmsae.models.base import SparseAutoencoder
from mmsae.models.formats._common import build, one_line

NAME = "overcomplete"
LAYOUT = "one torch.save'd overcomplete SAE module (*.pt, *.pth)"
SUFFIXES = (".pt", ".pth")
SUPPORTED = ("SAE", "TopKSAE", "JumpSAE", "BatchTopKSAE")


# --- reading a pickle without running it -------------------------------------------------------


class Record:
    """Stands for a class or function a pickle names: calling or instantiating it records the
    arguments, and `__setstate__` records the state (a module's `__dict__`). Nothing else runs."""

    origin: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Record:
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


_TORCH_REBUILD = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"),
    ("torch", "Tensor"),
    ("torch", "Size"),
    ("torch", "device"),
    ("collections", "OrderedDict"),
}
"""The globals a pickled module may call: torch's tensor and parameter rebuilders and the plain
containers they take (the same ones `torch.load(weights_only=True)` allows for them)."""


class _RestrictedUnpickler(pickle.Unpickler):
    _records: dict[tuple[str, str], type[Record]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TORCH_REBUILD:
            return getattr(importlib.import_module(module), name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "torch" and name.endswith("Storage") and isinstance(getattr(torch, name, None), type):
            return getattr(torch, name)  # a storage's type in the archive's persistent ids (its dtype)
        key = (module, name)
        if key not in self._records:
            self._records[key] = type(name, (Record,), {"origin": f"{module}.{name}", "__module__": __name__})
        return self._records[key]


_ZIP_MEMBERS = ("data.pkl", "version", "byteorder", ".format_version", ".storage_alignment")
"""The files of a plain `torch.save` zip archive besides its storages (`data/N`, `.data/...`)."""


def read_pickled_module(path: Path) -> Any:
    """The object tree `torch.save(obj, path)` wrote, with `Record`s for everything but tensors and
    plain containers. The zip archive is read here, not by `torch.load`: torch hands an archive
    holding TorchScript (`constants.pkl`, `code/`) to `torch.jit.load`, and a non-zip file to its
    legacy tar loader, and both can run what the file says; only a plain archive whose `data.pkl`
    goes through the restricted unpickler above is read."""
    import io
    import zipfile

    if not path.is_file():
        raise SAELoadError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise SAELoadError(
            f"{path} is damaged, or not a torch.save zip archive (files in torch's legacy format are not "
            "read: loading them can run code; re-save such a file with a current PyTorch)"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            prefix = names[0].split("/", 1)[0] if names else ""
            odd = [
                n
                for n in names
                if not n.startswith(prefix + "/")
                or not (n[len(prefix) + 1 :] in _ZIP_MEMBERS or n[len(prefix) + 1 :].startswith(("data/", ".data/")))
            ]
            if odd or f"{prefix}/data.pkl" not in names:
                raise SAELoadError(
                    f"{path} is not a plain torch.save archive (it holds {', '.join(sorted(odd)[:3]) or 'no data.pkl'}"
                    "; TorchScript files are not read: loading them can run code)"
                )

            class _Unpickler(_RestrictedUnpickler):
                def persistent_load(self, pid: Any) -> Any:
                    _, storage_type, key, _location, _numel = pid
                    dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type._dtype
                    raw = bytearray(zf.read(f"{prefix}/data/{key}"))
                    untyped = (
                        torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
                    )
                    return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)

            return _Unpickler(io.BytesIO(zf.read(f"{prefix}/data.pkl"))).load()
    except SAELoadError:
        raise
    except Exception as exc:  # zip, pickle and runtime errors for damaged files
        raise SAELoadError(f"{path} is damaged: {one_line(exc)}") from None


# --- reading the module tree ---------------------------------------------------------------------


def _origin(obj: Any) -> str:
    return obj.origin if isinstance(obj, Record) else f"{type(obj).__module__}.{type(obj).__qualname__}"


def _short(obj: Any) -> str:
    return _origin(obj).rsplit(".", 1)[-1]


def _state(obj: Any) -> dict[str, Any]:
    state = obj.state if isinstance(obj, Record) else None
    if isinstance(state, tuple) and state and isinstance(state[0], dict):
        state = state[0]  # (dict state, slot state)
    return state if isinstance(state, dict) else {}


def _part(obj: Any, kind: str, name: str) -> Any:
    """A module's parameter, buffer or submodule (`kind` is "_parameters", "_buffers", "_modules")."""
    table = _state(obj).get(kind)
    return table.get(name) if isinstance(table, dict) else None


def _tensor(obj: Any, name: str) -> torch.Tensor | None:
    for kind in ("_parameters", "_buffers"):
        t = _part(obj, kind, name)
        if isinstance(t, torch.Tensor):
            return t.detach()
    t = _state(obj).get(name)
    return t.detach() if isinstance(t, torch.Tensor) else None


def _children(obj: Any) -> list[Any]:
    modules = _state(obj).get("_modules")
    return [m for m in modules.values() if m is not None] if isinstance(modules, dict) else []


_NORMALIZATIONS = {
    "normalize_l2": lambda W_FD: W_FD / (W_FD.norm(p=2, dim=1, keepdim=True) + 1e-8),
    "normalize_max_l2": lambda W_FD: W_FD / W_FD.norm(p=2, dim=1, keepdim=True).amax(dim=0, keepdim=True),
    "normalize_l1": lambda W_FD: W_FD / (W_FD.norm(p=1, dim=1, keepdim=True) + 1e-8),
    "normalize_max_l1": lambda W_FD: W_FD / W_FD.norm(p=1, dim=1, keepdim=True).amax(dim=0, keepdim=True),
    "normalize_identity": lambda W_FD: W_FD,
}
"""`overcomplete/sae/dictionary.py`'s normalizations, by function name."""


def _dictionary_FD(dictionary: Any, where: str) -> torch.Tensor:
    """What `DictionaryLayer.get_dictionary()` returns: the fused dictionary in eval mode, else
    normalization(_weights)·exp(multiplier)."""
    if _short(dictionary) != "DictionaryLayer":
        raise SAELoadError(
            f"{where}: dictionary {_origin(dictionary)} is not supported (only overcomplete's DictionaryLayer)"
        )
    state = _state(dictionary)
    fused = state.get("_fused_dictionary")
    if state.get("training") is False and isinstance(fused, torch.Tensor) and fused.ndim == 2:
        return fused.detach().double()
    weights_FD = _tensor(dictionary, "_weights")
    if weights_FD is None or weights_FD.ndim != 2:
        raise SAELoadError(f"{where}: DictionaryLayer without its _weights matrix")
    norm = state.get("normalization", state.get("normalize"))  # a function, pickled by name
    shown = norm.origin if isinstance(norm, type) and issubclass(norm, Record) else type(norm).__name__
    norm_name = shown.rsplit(".", 1)[-1] if shown.startswith("overcomplete.") else None
    if norm_name not in _NORMALIZATIONS:
        raise SAELoadError(f"{where}: dictionary normalization {shown} is not supported ({', '.join(_NORMALIZATIONS)})")
    multiplier = _tensor(dictionary, "multiplier")
    scale = float(multiplier.double().exp()) if multiplier is not None and multiplier.numel() == 1 else 1.0
    return _NORMALIZATIONS[norm_name](weights_FD.double()) * scale


def _encoder(encoder: Any, dictionary_FD: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_enc [D, F], b_enc [F]) of a one-layer ReLU encoder, or one line saying why it is not one."""
    kind = _short(encoder)
    F_ = dictionary_FD.shape[0]
    if kind == "TieableEncoder":
        weight_FD = _tensor(encoder, "weight")
        if weight_FD is None:  # tied: the dictionary's transpose
            weight_FD = dictionary_FD
        bias_F = _tensor(encoder, "bias")
    elif kind == "MLPEncoder":
        if _children(_part(encoder, "_modules", "mlp_blocks")):
            raise SAELoadError(f"{where}: an MLP encoder with hidden blocks; mmsae reads one-layer encoders only")
        layers = _children(_part(encoder, "_modules", "final_block"))
        if not layers or _short(layers[0]) != "Linear" or any(_short(m) != "Identity" for m in layers[1:]):
            found = ", ".join(_short(m) for m in layers) or "nothing"
            raise SAELoadError(
                f"{where}: encoder final block is {found}; mmsae reads Linear (+ Identity), overcomplete's 'linear'"
            )
        activation = _part(encoder, "_modules", "final_activation")
        if _short(activation) != "ReLU":
            raise SAELoadError(f"{where}: encoder activation {_short(activation)} is not supported (only ReLU)")
        weight_FD, bias_F = _tensor(layers[0], "weight"), _tensor(layers[0], "bias")
    else:
        raise SAELoadError(
            f"{where}: encoder {_origin(encoder)} is not supported (overcomplete's 'linear' MLPEncoder or TieableEncoder)"
        )
    if weight_FD is None or weight_FD.ndim != 2:
        raise SAELoadError(f"{where}: {kind} without its weight matrix")
    return weight_FD.double().T, (bias_F.double() if bias_F is not None else torch.zeros(F_, dtype=torch.float64))


def detect(folder: Path) -> bool:
    return len(candidates(folder)) == 1


def candidates(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def load(folder: Path) -> SparseAutoencoder:
    (path,) = candidates(folder)
    where = str(path)
    root = read_pickled_module(path)
    if isinstance(root, dict) and root and all(isinstance(v, torch.Tensor) for v in root.values()):
        raise SAELoadError(
            f"{where} is a state dict, which does not say which overcomplete SAE or top_k it was; save the "
            "module itself (torch.save(sae, path)), as overcomplete's own tests do"
        )
    origin = _origin(root)
    if not origin.startswith("overcomplete."):
        raise SAELoadError(f"{where} holds a {origin}, not an overcomplete SAE")
    kind = _short(root)
    if kind not in SUPPORTED:
        raise SAELoadError(f"{where}: overcomplete {kind} is not supported ({', '.join(SUPPORTED)})")
    encoder, dictionary = _part(root, "_modules", "encoder"), _part(root, "_modules", "dictionary")
    if encoder is None or dictionary is None:
        raise SAELoadError(f"{where}: overcomplete {kind} without its encoder or dictionary")
    W_dec_FD = _dictionary_FD(dictionary, where)
    W_enc_DF, b_enc_F = _encoder(encoder, W_dec_FD, where)
    F_, D = W_dec_FD.shape
    state = _state(root)
    provenance: dict[str, Any] = {"format": NAME, "source": where, "overcomplete_class": kind}
    weights = {"W_enc_DF": W_enc_DF, "b_enc_F": b_enc_F, "W_dec_FD": W_dec_FD, "b_dec_D": torch.zeros(D)}
    if kind == "SAE":
        return build("relu", where, **weights, provenance=provenance)
    if kind == "TopKSAE":
        return build("topk", where, **weights, k=state.get("top_k"), provenance=provenance)
    if kind == "JumpSAE":
        log_threshold = _tensor(root, "thresholds")
        if log_threshold is None:
            raise SAELoadError(f"{where}: JumpSAE without its thresholds")
        return build("jumprelu", where, **weights, threshold_F=log_threshold.double().exp(), provenance=provenance)
    threshold = state.get("running_threshold")
    if not isinstance(threshold, torch.Tensor) or threshold.numel() != 1:
        raise SAELoadError(
            f"{where}: a BatchTopKSAE never run in training mode has no running_threshold to encode with"
        )
    top_k = state.get("top_k")
    provenance["overcomplete_top_k"] = top_k  # over a whole batch, not per row
    k = max(1, min(top_k, F_)) if isinstance(top_k, int) else 1
    return build(
        "batchtopk", where, **weights, k=k, threshold_F=threshold.detach().reshape(()).float(), provenance=provenance
    )
