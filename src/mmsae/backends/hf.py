"""Hugging Face transformers: CLIP, SigLIP, SigLIP2 and AIMv2 (what the installed transformers
has) through `from_pretrained(name_or_local_folder)`. Embeddings are `get_image_features` /
`get_text_features`: the projected, shared-space vectors; `embed --layer/--tokens` reads the
vision tower's hidden states instead (`vision_hidden`, `mmsae.backends.tokens`), or the text
tower's on captions (`text_hidden`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmsae.backends.base import (
    Backend,
    BackendSpec,
    blank_picture,
    load_offline_first,
    quiet_transformers,
    weights_error,
)
from mmsae.errors import MmsaeError

# SigLIP-family text towers were trained on text padded to a fixed length; padding otherwise
# changes the embedding, so they get what they were trained with.
FIXED_LENGTH_TEXT = ("siglip", "siglip2")


class HFImageTransform:
    """PIL image -> the image processor's tensors for one image; picklable for DataLoader workers."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image):
        batch = self.processor(images=[image], return_tensors="pt")
        return {k: v[0] for k, v in batch.items()}


def _features(out):
    """transformers 5 returns an output object whose `pooler_output` is the projection; 4.x a tensor."""
    return out if hasattr(out, "shape") else out.pooler_output


class HFBackend(Backend):
    def __init__(self, spec: BackendSpec, device: str = "cpu", precision: str = "fp32"):
        try:
            import transformers
        except ImportError:
            raise MmsaeError("the transformers backend needs transformers: pip install 'mmsae[hf]'") from None
        import torch

        self.spec, self.device, self.precision = spec, device, precision
        if ("/" in spec.name and spec.name.startswith((".", "/", "~"))) and not Path(spec.name).expanduser().is_dir():
            raise MmsaeError(f"--model hf:{spec.name}: no such folder")
        name = str(Path(spec.name).expanduser()) if Path(spec.name).expanduser().is_dir() else spec.name

        def load(local_only: bool):
            model = transformers.AutoModel.from_pretrained(name, local_files_only=local_only)
            processor = None
            if hasattr(model, "get_image_features"):
                processor = transformers.AutoImageProcessor.from_pretrained(name, local_files_only=local_only)
            return model, processor, transformers.AutoTokenizer.from_pretrained(name, local_files_only=local_only)

        with quiet_transformers():
            if Path(name).is_dir():
                try:
                    model, self._image_processor, self._tokenizer = load(True)
                except Exception as exc:  # a local folder missing a file: say which folder and what
                    raise weights_error(spec, exc) from None
            else:
                model, self._image_processor, self._tokenizer = load_offline_first(spec, load)
        self._model = model.to(device).eval()
        if not hasattr(self._model, "get_text_features"):
            raise MmsaeError(
                f"{spec.name} ({type(self._model).__name__}) has no get_text_features/get_image_features; "
                "use a vision-language model such as CLIP, SigLIP, SigLIP2 or AIMv2"
            )
        if self._image_processor is None:
            self.modalities = ("text",)
        self._model_type = getattr(self._model.config, "model_type", "")
        cfg = getattr(self._model.config, "text_config", None)
        self._max_length = int(getattr(cfg, "max_position_embeddings", 77) or 77)
        with torch.inference_mode():
            self.dim = int(self.encode_texts(self.tokenize(["a"])).shape[-1])

    def image_transform(self):
        if self._image_processor is None:
            return super().image_transform()
        return HFImageTransform(self._image_processor)

    def encode_images(self, pixels):
        import torch

        batch = pixels if isinstance(pixels, dict) else {"pixel_values": pixels}
        with torch.inference_mode(), self.autocast():
            return _features(self._model.get_image_features(**{k: v.to(self.device) for k, v in batch.items()}))

    def _vision_tower(self):
        tower = getattr(self._model, "vision_model", None)
        if tower is None or self._image_processor is None:
            return super().token_layout()  # the one-line refusal
        if getattr(self._model.config.vision_config, "is_native", False):
            raise MmsaeError(
                "--layer/--tokens: native-resolution AIMv2 towers are not read; fixed-grid towers (CLIP, SigLIP, "
                "AIMv2) and SigLIP2 are"
            )
        return tower

    def token_layout(self):
        """Read from one blank picture through the tower: its sequence length, width and hidden states.
        SigLIP2 sizes its grid per picture (`vision_grids`), so its layout has none."""
        from mmsae.backends.tokens import TokenLayout

        self._vision_tower()
        vc = self._model.config.vision_config
        if self._model_type == "siglip2":
            blank = self.image_transform()(blank_picture(64))
            hidden = self._hidden_states({k: v[None] for k, v in blank.items()})
            return TokenLayout(None, False, len(hidden), int(hidden[0].shape[-1]))
        side = int(vc.image_size) // int(vc.patch_size)
        blank = self.image_transform()(blank_picture(int(vc.image_size)))
        return TokenLayout.of_grid((side, side), self._hidden_states({k: v[None] for k, v in blank.items()}))

    def _hidden_states(self, pixels):
        import torch

        tower = self._vision_tower()
        batch = pixels if isinstance(pixels, dict) else {"pixel_values": pixels}
        with torch.inference_mode(), self.autocast():
            out = tower(**{k: v.to(self.device) for k, v in batch.items()}, output_hidden_states=True)
        return out.hidden_states

    def centre_crops(self) -> bool:
        return bool(getattr(self._image_processor, "do_center_crop", False))

    def vision_grids(self, pixels):
        """[B, 2] each picture's patch grid (h, w), for a tower that sizes it per picture (SigLIP2's
        `spatial_shapes`); its patches come first in the sequence, in reading order, then padding."""
        return pixels["spatial_shapes"].cpu().numpy().astype(np.int64)

    # --- the text tower's hidden states (embed --layer/--tokens on captions) ----------------------
    def _text_tower(self):
        tower = getattr(self._model, "text_model", None)
        if tower is None:
            raise MmsaeError(f"--layer/--tokens: {self.model_id} has no text tower mmsae reads")
        return tower

    def text_layout(self):
        """The text tower's depth and width, read from one caption through it."""
        from mmsae.backends.tokens import TokenLayout

        hidden, _, _, _ = self._text_states(["a"])
        return TokenLayout((0, 0), False, len(hidden), int(hidden[0].shape[-1]), tower="text")

    def _text_states(self, texts: Sequence[str]):
        """(hidden states, each caption's real token positions, token pieces, character spans or None)
        of a batch: the tower sees the captions as `encode_texts` does (SigLIP's fixed-length padding
        included); how many tokens are real comes from the same captions tokenized without padding,
        and where they sit from the tokenizer's padding side (SigLIP2's pads on the left)."""
        import torch

        tower = self._text_tower()
        tokens = self.tokenize(texts)
        names = set(getattr(self._tokenizer, "model_input_names", ["input_ids", "attention_mask"])) - {"token_type_ids"}
        keep = {k: v.to(self.device) for k, v in tokens.items() if k in names}
        with torch.inference_mode(), self.autocast():
            hidden = tower(**keep, output_hidden_states=True).hidden_states
        fast = bool(getattr(self._tokenizer, "is_fast", False))
        plain = self._tokenizer(list(texts), truncation=True, max_length=self._max_length, return_offsets_mapping=fast)
        ids = plain["input_ids"]
        pieces = [self._tokenizer.convert_ids_to_tokens(row) for row in ids]
        spans = [[tuple(o) for o in row] for row in plain["offset_mapping"]] if fast else None
        T = int(hidden[0].shape[1])
        left = getattr(self._tokenizer, "padding_side", "right") == "left"
        real = [np.arange(T - len(row), T) if left else np.arange(len(row)) for row in ids]
        return hidden, real, pieces, spans

    def text_hidden(self, texts: Sequence[str], layer: int):
        """([B, T, W] float32 hidden states after `layer`, each caption's real token positions,
        pieces, spans)."""
        hidden, real, pieces, spans = self._text_states(texts)
        return hidden[layer].float().cpu().numpy(), real, pieces, spans

    def tokenize(self, texts: Sequence[str]):
        fixed = self._model_type in FIXED_LENGTH_TEXT
        return self._tokenizer(
            list(texts),
            padding="max_length" if fixed else True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        )

    def encode_texts(self, tokens):
        import torch

        # what the tokenizer says the model takes: SigLIP's is input_ids alone (it attends to padding)
        names = set(getattr(self._tokenizer, "model_input_names", ["input_ids", "attention_mask"])) - {"token_type_ids"}
        keep = {k: v.to(self.device) for k, v in tokens.items() if k in names}
        with torch.inference_mode(), self.autocast():
            return _features(self._model.get_text_features(**keep))
