"""open_clip (`open-clip-torch`): any architecture with a pretrained tag, a local checkpoint file,
a local folder (`open_clip_config.json` + weights) or random weights (`none`). Embeddings are
`encode_image` / `encode_text`: the projected, shared-space vectors. `embed --layer/--tokens` reads
the hidden states of an open_clip VisionTransformer tower (timm and ResNet towers are refused)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmsae.backends.base import Backend, BackendSpec, blank_picture, load_offline_first, weights_error
from mmsae.errors import MmsaeError


class OpenClipBackend(Backend):
    def __init__(self, spec: BackendSpec, device: str = "cpu", precision: str = "fp32"):
        try:
            import open_clip
        except ImportError as exc:
            raise MmsaeError(
                f"the open_clip backend needs open-clip-torch and torchvision: pip install 'mmsae[clip]' "
                f"({type(exc).__name__}: {str(exc)[:120]})"
            ) from None
        import torch

        self.spec, self.device, self.precision = spec, device, precision
        weights = spec.weights if spec.weights not in (None, "", "none") else None
        name, pretrained = spec.name, weights
        if weights is not None and Path(weights).is_dir():
            name, pretrained = f"local-dir:{Path(weights).resolve()}", None
        elif weights is not None and ("/" in weights or Path(weights).suffix) and not Path(weights).is_file():
            raise MmsaeError(f"--weights {weights}: no such checkpoint file or folder")
        if spec.name not in open_clip.list_models() and not name.startswith("local-dir:"):
            raise MmsaeError(
                f"open_clip has no architecture {spec.name!r}; see open_clip.list_models() "
                f"(e.g. ViT-B-32, ViT-B-16-SigLIP, ViT-L-14)"
            )

        def load(local_only: bool):
            import logging

            import huggingface_hub.constants as hub

            was, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, bool(local_only or hub.HF_HUB_OFFLINE)
            logging.disable(logging.ERROR)  # open_clip logs failed tries to the root logger; ours is the message
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
                return model, preprocess, open_clip.get_tokenizer(name)
            finally:
                hub.HF_HUB_OFFLINE = was
                logging.disable(logging.NOTSET)

        if pretrained is None or Path(pretrained).is_file():
            try:
                model, preprocess, self._tokenizer = load(True)
            except Exception as exc:  # a damaged or mismatched checkpoint: say which and why
                raise weights_error(spec, exc) from None
        else:  # a pretrained tag: the local cache, then the hub
            model, preprocess, self._tokenizer = load_offline_first(spec, load)
        self._model = model.eval()
        self._preprocess = preprocess
        with torch.inference_mode():
            self.dim = int(self._model.encode_text(self._tokenizer(["a"]).to(device)).shape[-1])

    def image_transform(self):
        return self._preprocess

    def encode_images(self, pixels):
        import torch

        with torch.inference_mode(), self.autocast():
            return self._model.encode_image(pixels.to(self.device, non_blocking=True))

    def tokenize(self, texts: Sequence[str]):
        return self._tokenizer(list(texts))

    def encode_texts(self, tokens):
        import torch

        with torch.inference_mode(), self.autocast():
            return self._model.encode_text(tokens.to(self.device, non_blocking=True))

    # --- the vision tower's hidden states (embed --layer/--tokens) -------------------------------
    def _tower(self):
        visual = getattr(self._model, "visual", None)
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        if blocks is None or not hasattr(visual, "ln_pre") or not hasattr(visual, "grid_size"):
            raise MmsaeError(
                f"--layer/--tokens: the vision tower of {self.model_id} is not an open_clip VisionTransformer "
                "(timm and ResNet towers are not read)"
            )
        return visual, blocks

    def _hidden_states(self, pixels) -> list:
        """[B, T, W] after ln_pre (index 0, as transformers counts) and after each block, taken by
        forward hooks: open_clip has no output_hidden_states, and hooks see what its own forward computes."""
        import torch

        visual, blocks = self._tower()
        # open_clip before 2.26 has no batch_first and permutes to [T, B, W] before the blocks
        batch_first = getattr(visual.transformer, "batch_first", False)
        states: list = []

        def keep(first: bool):
            def hook(module, inputs, output):
                out = output[0] if isinstance(output, tuple) else output
                states.append(out if first or batch_first else out.transpose(0, 1))

            return hook

        handles = [visual.ln_pre.register_forward_hook(keep(True))]
        handles += [b.register_forward_hook(keep(False)) for b in blocks]
        try:
            with torch.inference_mode(), self.autocast():
                visual(pixels.to(self.device, non_blocking=True))
        finally:
            for h in handles:
                h.remove()
        return states

    def token_layout(self):
        """Read from one blank picture through the tower, as for transformers towers."""
        from mmsae.backends.tokens import TokenLayout

        visual, _ = self._tower()
        gh, gw = (int(g) for g in visual.grid_size)
        size = visual.image_size
        blank = self._preprocess(blank_picture(int(max(size) if isinstance(size, (tuple, list)) else size)))
        return TokenLayout.of_grid((gh, gw), self._hidden_states(blank[None]))

    def centre_crops(self) -> bool:
        return any(type(t).__name__ == "CenterCrop" for t in getattr(self._preprocess, "transforms", []))
