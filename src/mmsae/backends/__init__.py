"""Encoders behind one interface (`embed_images`, `embed_texts`, `dim`, `model_id`): open_clip,
transformers (CLIP, SigLIP, SigLIP2, AIMv2) and the text-only MiniLM, plus the synthetic encoder
of generated stores. `embed.py` is the extraction pipeline that writes their output to a store."""

from mmsae.backends.base import Backend, BackendSpec, TextEncoder
from mmsae.backends.registry import load_backend, parse_model, text_encoder_for

__all__ = ["Backend", "BackendSpec", "TextEncoder", "load_backend", "parse_model", "text_encoder_for"]
