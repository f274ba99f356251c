"""Which encoder a model spec names, and loading it: the one place that knows every backend.

`base.py` holds what the backends share (the Backend interface, specs, offline-first loading); the
backends import it, and this module imports them, lazily, so the dependency runs one way and a
command that never embeds does not pay for torch vision or transformers imports.
"""

from __future__ import annotations

from pathlib import Path

from mmsae.backends.base import BACKEND_KEY, KINDS, MINILM_ID, TOKENS_KEY, Backend, BackendSpec, TextEncoder
from mmsae.data.manifest import TEXT_ENCODER_KEY
from mmsae.errors import MmsaeError


def parse_model(model: str, weights: str | None = None) -> BackendSpec:
    """`open_clip:ARCH[/TAG]`, `hf:NAME_OR_DIR`, `minilm`; a bare local folder holding a
    `config.json` or a bare `org/name` means transformers."""
    if model in ("minilm", MINILM_ID, "all-MiniLM-L6-v2"):
        return BackendSpec("minilm", "minilm")
    kind, sep, rest = model.partition(":")
    if sep and kind in ("open_clip", "openclip", "open-clip"):
        name, slash, tag = rest.partition("/")
        if not name:
            raise MmsaeError("open_clip needs an architecture, e.g. --model open_clip:ViT-B-32 --weights openai")
        if slash and weights is not None and weights != tag:
            raise MmsaeError(f"--model names weights {tag!r} and --weights {weights!r}; give them once")
        return BackendSpec("open_clip", name, weights if weights is not None else (tag or None))
    if sep and kind in ("hf", "transformers"):
        if not rest:
            raise MmsaeError("hf needs a model name or folder, e.g. --model hf:openai/clip-vit-base-patch32")
        return BackendSpec("hf", rest if weights is None else weights)
    if Path(model).is_dir() or ("/" in model and not sep):
        return BackendSpec("hf", model if weights is None else weights)
    raise MmsaeError(
        f"unknown model {model!r}; use open_clip:ARCH (with --weights TAG|FILE|DIR), hf:NAME_OR_DIR, or minilm"
    )


def load_backend(spec: BackendSpec, device: str = "cpu", precision: str = "fp32") -> Backend:
    if precision not in ("fp32", "fp16", "bf16"):
        raise MmsaeError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
    if spec.kind == "open_clip":
        from mmsae.backends.open_clip import OpenClipBackend

        return OpenClipBackend(spec, device=device, precision=precision)
    if spec.kind == "hf":
        from mmsae.backends.hf import HFBackend

        return HFBackend(spec, device=device, precision=precision)
    if spec.kind == "minilm":
        from mmsae.backends.minilm import MiniLMTextEncoder

        return MiniLMTextEncoder(device=device)
    raise MmsaeError(f"unknown backend kind {spec.kind!r} (known: {', '.join(KINDS)})")


NO_TEXT_ENCODER = (
    "pass --text-encoder SPEC (minilm, hf:DIR, or open_clip:ARCH with --weights) naming the model that "
    "made the store's text embeddings, or record it once with `mmsae import ... --text-encoder SPEC`"
)


def text_encoder_for(store, spec: str | None = None, weights: str | None = None) -> TextEncoder:
    """The text encoder for the store's space: `spec` when given, else the one recorded in its
    manifest (by `import --text-encoder` or by `embed`), else a one-line error saying what to pass.

    The encoder must produce vectors of the store's width: a wrong model fails here, in one line,
    rather than as a shape error deep inside naming or search.
    """
    if spec is not None:
        encoder = load_backend(parse_model(spec, weights))
    else:
        encoder = _recorded_text_encoder(store)
    dim = getattr(encoder, "dim", None)
    if dim is not None and dim != store.dim:
        raise MmsaeError(
            f"the text encoder {encoder.model_id} gives {dim}-d embeddings but the store holds "
            f"{store.dim}-d ones; {NO_TEXT_ENCODER}"
        )
    return encoder


def _recorded_text_encoder(store) -> TextEncoder:
    model_id = store.manifest.model_id
    if model_id == "synthetic":
        from mmsae.backends.synthetic import SyntheticTextEncoder

        return SyntheticTextEncoder.from_store(store)
    pre = store.manifest.preprocessing
    if pre.get(TOKENS_KEY):
        raise MmsaeError(
            f"the store holds a {pre[TOKENS_KEY].get('tower', 'vision')} tower's token activations "
            "(`embed --layer/--tokens`), not the shared image-text space: no text encoder reads them, so they "
            "cannot be named or searched with words"
        )
    for key in (TEXT_ENCODER_KEY, BACKEND_KEY):
        recorded = pre.get(key)
        if isinstance(recorded, dict) and recorded.get("kind") in KINDS:
            return load_backend(BackendSpec(**{k: recorded.get(k) for k in ("kind", "name", "weights")}))
    if model_id == MINILM_ID:
        return load_backend(BackendSpec("minilm", "minilm"))
    raise MmsaeError(f"no text encoder is known for the store's model {model_id!r}; {NO_TEXT_ENCODER}")
