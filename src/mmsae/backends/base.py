"""One interface for every encoder, and finding the encoder a store was made with.

A backend splits embedding into the part that runs in DataLoader workers (`image_transform`:
PIL image -> tensor; `tokenize`) and the part that runs on the device (`encode_images`,
`encode_texts`: batched tensors -> projected shared-space embeddings). The pipeline and the
convenience `embed_images` / `embed_texts` both go through those four, so a store's rows equal
a direct call of the model on the same inputs.

A store records how to rebuild its backend (`manifest.preprocessing["backend"]`); naming and
search embed words with it, in the same space as the store. Heavy libraries load only when used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mmsae.errors import MmsaeError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
BACKEND_KEY = "backend"
TOKENS_KEY = "tokens"
"""`manifest.preprocessing[TOKENS_KEY]`: how a store's token rows were read (`embed --layer/--tokens`;
absent for pooled embeddings)."""
KINDS = ("open_clip", "hf", "minilm")


class TextEncoder(Protocol):
    model_id: str
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """[N, dim] float32, L2-normalised (as the store's text rows are)."""
        ...


@dataclass(frozen=True)
class BackendSpec:
    """How to build a backend; recorded in the store so it can be rebuilt."""

    kind: str
    """`open_clip`, `hf` (transformers) or `minilm`."""
    name: str
    """open_clip architecture (`ViT-B-32`), a transformers hub name or local folder, or `minilm`."""
    weights: str | None = None
    """open_clip: a pretrained tag (`openai`), a checkpoint file, a folder, or `none` for random
    weights. transformers: unused (the name is the weights)."""

    @property
    def model_id(self) -> str:
        if self.kind == "minilm":
            return MINILM_ID
        if self.kind == "open_clip":
            w = self.weights or "none"
            tag = "random" if w == "none" else (Path(w).name if ("/" in w or Path(w).exists()) else w)
            return f"open_clip:{self.name}/{tag}"
        return f"hf:{self.name}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Backend:
    """A vision-language (or text-only) encoder. Subclasses set the attributes and the four
    batched methods; everything else is shared."""

    spec: BackendSpec
    dim: int
    modalities: tuple[str, ...] = ("image", "text")
    device: str = "cpu"
    precision: str = "fp32"

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def text_only(self) -> bool:
        return "image" not in self.modalities

    def image_transform(self) -> Callable[[Any], Any]:
        """PIL image -> preprocessed tensor; picklable, so DataLoader workers can run it."""
        raise MmsaeError(f"{self.model_id} is a text-only encoder; it cannot embed images")

    def encode_images(self, pixels: Any):
        """Batch from `image_transform`, stacked -> [B, dim] projected embeddings (not normalised)."""
        raise MmsaeError(f"{self.model_id} is a text-only encoder; it cannot embed images")

    def token_layout(self):
        """The vision tower's token layout (`mmsae.backends.tokens.TokenLayout`), for
        `embed --layer/--tokens`; backends whose towers mmsae cannot read say so in one line."""
        raise MmsaeError(
            f"--layer/--tokens read the vision tower of a transformers or open_clip model "
            f"(--model hf:... or open_clip:...); {self.model_id} is not one"
        )

    def centre_crops(self) -> bool:
        """Whether the image transform centre-crops pictures to a square (CLIP's) rather than resizing
        them whole (SigLIP's): heatmaps lay the patch grid over that square or the whole picture."""
        return True

    def _hidden_states(self, pixels: Any) -> Sequence[Any]:
        """Every hidden state of the vision tower ([B, T, W] tensors, 0: the embeddings), which
        backends that read their towers give."""
        raise MmsaeError(f"{self.model_id}: its vision tower's layers cannot be read")

    def vision_hidden(self, pixels: Any, layer: int) -> np.ndarray:
        """[B, T, W] float32 hidden states of the vision tower after `layer` (0: the embeddings)."""
        return self._hidden_states(pixels)[layer].float().cpu().numpy()

    def tokenize(self, texts: Sequence[str]) -> Any:
        raise NotImplementedError

    def encode_texts(self, tokens: Any):
        """Output of `tokenize` -> [B, dim] projected embeddings (not normalised)."""
        raise NotImplementedError

    def autocast(self):
        """fp16/bf16 autocast on a GPU; nothing on the CPU, where fp32 is the reference."""
        import contextlib

        import torch

        if self.precision == "fp32" or not str(self.device).startswith("cuda"):
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.float16 if self.precision == "fp16" else torch.bfloat16)

    def embed_images(self, images: Sequence[Any], normalize: bool = True, batch_size: int = 64) -> np.ndarray:
        """[N, dim] float32 embeddings of PIL images, in one process (the pipeline uses workers)."""
        from torch.utils.data import default_collate

        tf = self.image_transform()
        out = []
        for i in range(0, len(images), batch_size):
            pixels = default_collate([tf(im) for im in images[i : i + batch_size]])
            out.append(self.finish(self.encode_images(pixels), normalize))
        return np.concatenate(out) if out else np.empty((0, self.dim), np.float32)

    def embed_texts(
        self, texts: Sequence[str], normalize: bool = True, batch_size: int = 256, progress: bool = False
    ) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            out.append(self.finish(self.encode_texts(self.tokenize(list(texts[i : i + batch_size]))), normalize))
        return np.concatenate(out) if out else np.empty((0, self.dim), np.float32)

    @staticmethod
    def finish(emb_BD, normalize: bool) -> np.ndarray:
        """Model output -> float32 numpy, L2-normalised when asked: the one place rows are finished."""
        import torch

        emb_BD = emb_BD.float()
        if normalize:
            emb_BD = torch.nn.functional.normalize(emb_BD, dim=-1)
        return emb_BD.cpu().numpy()


class quiet_transformers:
    """Silences transformers' weight-loading chatter and bars while a backend loads; failures
    still raise and become one-line errors."""

    def __enter__(self):
        try:
            import transformers
        except ImportError:
            self.tf = None
            return self
        self.tf = transformers
        self.verbosity = transformers.logging.get_verbosity()
        self.bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        if self.tf is not None:
            self.tf.logging.set_verbosity(self.verbosity)
            if self.bars:
                self.tf.utils.logging.enable_progress_bar()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub (or $HF_ENDPOINT) answers; False at once under HF_HUB_OFFLINE."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_offline_first(spec: BackendSpec, load: Callable[[bool], Any]) -> Any:
    """`load(local_only=True)` from the local cache first; the hub only when it answers, so an
    offline machine gets its one-line error at once instead of minutes of download retries."""
    try:
        return load(True)
    except MmsaeError:
        raise
    except Exception as exc:  # not cached (or not loadable): the hub is the only other place
        first = exc
    if not hub_reachable():
        raise weights_error(spec, first, offline=True) from None
    try:
        return load(False)
    except MmsaeError:
        raise
    except Exception as exc:
        raise weights_error(spec, exc) from None


def weights_error(spec: BackendSpec, exc: BaseException, offline: bool = False) -> MmsaeError:
    """One line that says what is missing and how to supply it, for any failure to load weights."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if spec.kind == "open_clip":
        how = (
            "download the checkpoint where a network exists and pass it with --weights FILE (or a folder "
            "holding open_clip_config.json and the weights), or --weights none for random weights"
        )
    else:
        how = (
            "download the model folder where a network exists (e.g. `huggingface-cli download NAME "
            "--local-dir DIR`) and pass --model hf:DIR, or set HF_HOME to a cache that holds it"
        )
    where = (
        "not in the local cache and the model hub cannot be reached" if offline else f"{type(exc).__name__}: {reason}"
    )
    return MmsaeError(f"cannot load weights for {spec.model_id} ({where}); {how}")


def blank_picture(size: int):
    """A grey picture of the tower's size: what `token_layout` runs through a tower once."""
    from PIL import Image

    return Image.new("RGB", (size, size), (128, 128, 128))
