"""The world's own vision-language model: a small CLIP (transformers `CLIPModel`) with a word-level
tokenizer over the world's words and a CLIP image processor for its pictures.

No pretrained VLM can be downloaded everywhere mmsae runs, so the project trains its own on the
world's pairs (`mmsae.train.clip`); what is defined here is everything that must be the same at
training and at use: the architecture, the tokenizer and the image preprocessing. All three are
transformers' own classes, saved with `save_pretrained`, so the folder loads with
`from_pretrained` like any user's model, and `mmsae embed --model hf:DIR` takes the same path.

The tokenizer needs no download: every word a caption or a zero-shot prompt can hold is listed
(`caption_words`), one token each, so a caption is never split into pieces nor read as unknown.
transformers is imported inside the functions (an optional extra, see CONVENTIONS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmsae.validate import check_all, check_types
from mmsae.world.attributes import ATTRIBUTES, TEXTURES
from mmsae.world.render import MIN_SIZE
from mmsae.world.vocab import vocabulary

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
"""Ids 0-3. The end-of-text id is 3, not 2: transformers' CLIP text tower treats `eos_token_id == 2`
as a legacy config and pools at the largest id instead of at the end-of-text token."""
PUNCTUATION = (",", ".", ":", ";", "(", ")", "-", "'", "!", "?")
"""Each a token of its own (the pre-tokenizer isolates every punctuation mark): the templates use
the first seven (`top-left: red triangle, ... (photo)`)."""
TEMPLATE_WORDS = (
    "a", "an", "the", "of", "showing", "in", "this", "there", "is", "at", "on", "against",
    "and", "shape", "shapes",
)  # fmt: skip
"""The words of the caption templates (`mmsae.world.captions`) that name no attribute value."""
PROMPT_WORDS = ("object", "objects", "thing", "with", "one", "some", "scene")
"""Words of zero-shot prompts (`a photo of a red object`) that no caption uses: their token exists,
untrained, so a prompt is never read as unknown."""


def caption_words() -> list[str]:
    """Every word token of the tokenizer, sorted: the words of every attribute phrase (texture
    words included, though no caption says them), of the templates, of the prompts and of the
    naming vocabulary with its distractors, split at spaces and punctuation as the tokenizer splits."""
    import re

    words: set[str] = set(TEMPLATE_WORDS) | set(PROMPT_WORDS)
    phrases = [p for a in ATTRIBUTES for ps in a.phrases.values() for p in ps] + list(TEXTURES) + vocabulary()
    for p in phrases:
        words.update(re.findall(r"[a-z0-9]+", p.lower()))
    return sorted(words)


@dataclass(frozen=True)
class WorldClipConfig:
    """The architecture of the world's CLIP: a ViT image tower and a causal text transformer, each
    projected to a shared space (sizes as in CLIP, scaled down to train on CPUs)."""

    image_size: int = 64
    """Picture size the model takes (the world's pictures are 64 pixels by default)."""
    patch_size: int = 8
    """ViT patch side in pixels: 64 / 8 = 64 patches; a small object (~10 pixels) spans a few."""
    vision_width: int = 128
    """Width of the image transformer (its MLP is 4 times wider)."""
    vision_layers: int = 4
    vision_heads: int = 4
    text_width: int = 128
    """Width of the text transformer (its MLP is 4 times wider)."""
    text_layers: int = 4
    text_heads: int = 4
    projection_dim: int = 128
    """Dimension of the shared embedding space (what `get_image_features` returns)."""
    max_text_length: int = 64
    """Longest token sequence, begin and end tokens included: the longest caption of 2,000 scenes
    is under 50 tokens, so no generated caption is truncated."""

    def __post_init__(self) -> None:
        check_types(self)
        check_all(
            [
                (self.image_size >= MIN_SIZE, f"image_size must be at least {MIN_SIZE}, got {self.image_size}"),
                (self.patch_size >= 1, f"patch_size must be positive, got {self.patch_size}"),
                (
                    self.image_size % self.patch_size == 0,
                    f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}",
                ),
                (min(self.vision_layers, self.text_layers) >= 1, "vision_layers and text_layers must be positive"),
                (min(self.vision_heads, self.text_heads) >= 1, "vision_heads and text_heads must be positive"),
                (
                    self.vision_width % self.vision_heads == 0,
                    f"vision_width {self.vision_width} must be a multiple of vision_heads {self.vision_heads}",
                ),
                (
                    self.text_width % self.text_heads == 0,
                    f"text_width {self.text_width} must be a multiple of text_heads {self.text_heads}",
                ),
                (self.projection_dim >= 1, f"projection_dim must be positive, got {self.projection_dim}"),
                (self.max_text_length >= 4, f"max_text_length must be at least 4, got {self.max_text_length}"),
            ]
        )

    def to_json(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)


def world_tokenizer(max_length: int = 64):
    """A `PreTrainedTokenizerFast`: lower-cases, splits at spaces and isolates each punctuation
    mark, maps each word of `caption_words()` to its own id (anything else to `<unk>`), and wraps
    the sequence in `<bos>` … `<eos>`, where CLIP's text tower pools."""
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate((*SPECIAL_TOKENS, *PUNCTUATION, *caption_words()))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"],
    )


def world_image_processor(image_size: int = 64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
    """transformers' `CLIPImageProcessor` for pictures of `image_size`: resize the short side to it,
    centre-crop it square, scale to [0, 1], normalise per channel. A world picture of that size
    passes the resize and the crop unchanged, so training can normalise its pixels directly.

    The Pillow implementation where transformers has one (5.x; its default class wants torchvision,
    which mmsae does not need): `AutoImageProcessor` loads the saved config either way."""
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(
        do_resize=True,
        size={"shortest_edge": image_size},
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[float(m) for m in mean],
        image_std=[float(s) for s in std],
        do_convert_rgb=True,
    )


def build_world_clip(cfg: WorldClipConfig, vocab_size: int, seed: int = 0):
    """A randomly initialised `CLIPModel` of this architecture (initialised from `seed`, so the
    same seed gives the same weights). Its MLPs use GELU rather than OpenAI CLIP's quick-GELU
    (`x·sigmoid(1.702x)`), which PyTorch runs as three separate operations: on a CPU they took
    about a third of a training step."""
    import torch
    import transformers

    pad, bos, eos = (SPECIAL_TOKENS.index(t) for t in (PAD, BOS, EOS))
    text = dict(
        vocab_size=vocab_size,
        hidden_size=cfg.text_width,
        intermediate_size=4 * cfg.text_width,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_text_length,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
        hidden_act="gelu",
    )
    vision = dict(
        hidden_size=cfg.vision_width,
        intermediate_size=4 * cfg.vision_width,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_act="gelu",
    )
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transformers.CLIPModel(config)
