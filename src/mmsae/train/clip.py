"""Training the world's CLIP (`mmsae.world.model`) contrastively on the scene world, and measuring it.

No pretrained vision-language model can be downloaded everywhere mmsae runs, so the project trains
its own small one on the world's pairs: its embeddings are real learned ones (with a modality gap,
imperfect binding, concepts the text never mentions) whose concepts have the world's ground truth.

Training (`train_world_clip`): scenes drawn in memory and rendered once; each epoch pairs every
picture with another caption of its scene (caption e mod V of `caption_scene(scene, seed, V)` in
epoch e, V = `caption_variants`), in an order drawn from the seed; the symmetric InfoNCE loss of
CLIP with a learned temperature; AdamW with linear warm-up and cosine decay. The same seed gives the
same weights on the same machine and thread count (CPU, the default); GPU kernels may round
differently from run to run, and on a GPU larger batches are affordable.

The folder is what `save_pretrained` writes for the model, the tokenizer and the image processor,
plus `world_clip.json` (how it was trained and what it measured), so transformers'
`from_pretrained` loads it and `mmsae embed --model hf:DIR` embeds with it.

Measurement (`measure_world_clip`), on held-out scenes of another seed, one caption each:
image→text and text→image recall@1, zero-shot colour and shape accuracy on the one-object scenes,
and the modality gap (the distance between the two modalities' mean unit embeddings, and how well
a linear classifier tells them apart, as Liang et al. 2022 measure it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmsae.errors import MmsaeError
from mmsae.fileio import write_json_atomic
from mmsae.metrics.crossmodal import retrieval_recall, zero_shot_accuracy
from mmsae.train.schedule import lr_factor
from mmsae.validate import check_all, check_types, finite
from mmsae.vectors import unit_rows
from mmsae.world.attributes import COLOURS, SHAPES
from mmsae.world.captions import caption_scene
from mmsae.world.model import WorldClipConfig, build_world_clip, world_image_processor, world_tokenizer
from mmsae.world.render import render
from mmsae.world.scenes import Scene, sample_scene, sample_scenes, vary_scene

RECORD_FILE = "world_clip.json"
"""Beside the transformers files: the configs, the pixel statistics, the training log's summary
and the measurements. Its presence marks a folder this module wrote (and may replace)."""
RECORD_FORMAT = "mmsae-world-clip"
TWIN_ATTRIBUTES = (("shape", 0.5), ("position", 0.3), ("size", 0.1), ("colour", 0.1))
"""What a twin changes (`ClipTrainConfig.twins`): mostly shape and position, which the image tower
learns last."""
MAX_LOGIT_SCALE = math.log(100.0)
"""CLIP clamps its learned inverse temperature at 100, so the logits cannot grow without bound."""


@dataclass(frozen=True)
class ClipTrainConfig:
    """How the world's CLIP is trained (the architecture is `WorldClipConfig`)."""

    scenes: int = 20_000
    """Training scenes, drawn from `seed` and rendered once."""
    epochs: int = 8
    """Passes over the scenes; each pairs every picture with another caption of its scene (the same
    ones again after `caption_variants` epochs)."""
    batch_size: int = 32
    """Pairs per step: each picture's caption is contrasted with the batch's other captions. Small by
    default, because within a CPU budget of minutes the number of steps limits learning more than
    the negatives a batch offers; with thousands of steps (a GPU), 1,024 is what makes the loss ask
    for shape and position, which colours and counts alone tell apart in a batch of 32 (docs/world.md)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW, reached after the warm-up (higher rates can collapse the
    4-layer model to one embedding per modality early on: docs/world.md)."""
    weight_decay: float = 0.1
    """AdamW's decoupled decay, on the weight matrices only (not biases, norms, the temperature)."""
    warmup_frac: float = 0.05
    """Share of the steps with a linearly rising learning rate; cosine decay to 0 after it."""
    seed: int = 0
    """Seeds the scenes, their captions, the initial weights and the order of the pairs."""
    image_size: int = 64
    """Size of the rendered pictures (the model's `image_size`)."""
    text_lr_scale: float = 1.0
    """The text tower's learning rate as a multiple of `lr`. Below 1 the text tower keeps what its
    random start tells apart (shape and position words among them) longer, as a target for the
    image tower (measured, without the hoped-for effect: docs/world.md)."""
    caption_variants: int = 8
    """Captions drawn per scene: epoch e pairs each picture with caption e mod this number (more
    epochs than variants repeat them; drawing and tokenizing a caption per scene per epoch would
    take longer than a long run's training on a GPU)."""
    twins: float = 0.0
    """Share of each batch's pairs that are varied copies of other scenes in the same batch
    (`mmsae.world.scenes.vary_scene` with TWIN_ATTRIBUTES: one object's shape, position, size or
    colour changed). Such hard negatives ask the image tower for what random batches rarely need:
    in a batch of 32 random scenes, colours, sizes and counts alone tell almost every pair apart."""

    def __post_init__(self) -> None:
        check_types(self)
        check_all(
            [
                (self.scenes >= 2, f"scenes must be at least 2, got {self.scenes}"),
                (self.epochs >= 1, f"epochs must be positive, got {self.epochs}"),
                (self.batch_size >= 2, f"batch_size must be at least 2 (a contrastive batch), got {self.batch_size}"),
                (finite(self.lr) and self.lr > 0, f"lr must be a positive number, got {self.lr}"),
                (
                    finite(self.weight_decay) and self.weight_decay >= 0,
                    f"weight_decay must be ≥ 0, got {self.weight_decay}",
                ),
                (
                    finite(self.warmup_frac) and 0 <= self.warmup_frac < 1,
                    f"warmup_frac must be in [0, 1), got {self.warmup_frac}",
                ),
                (self.seed >= 0, f"seed must be ≥ 0, got {self.seed}"),
                (self.caption_variants >= 1, f"caption_variants must be positive, got {self.caption_variants}"),
                (finite(self.twins) and 0 <= self.twins <= 0.5, f"twins must be in [0, 0.5], got {self.twins}"),
                (
                    finite(self.text_lr_scale) and self.text_lr_scale > 0,
                    f"text_lr_scale must be positive, got {self.text_lr_scale}",
                ),
            ]
        )

    @property
    def twins_per_batch(self) -> int:
        """Varied copies per batch (each of one of the batch's drawn scenes)."""
        return int(round(self.twins * self.batch_size))

    @property
    def base_scenes(self) -> int:
        """Scenes drawn at random (each has a varied copy when `twins` > 0: `scenes` in all)."""
        return self.scenes // 2 if self.twins_per_batch else self.scenes

    @property
    def base_per_batch(self) -> int:
        """Drawn scenes per batch."""
        return self.batch_size - self.twins_per_batch

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per epoch (the last partial one is dropped: every step contrasts as many
        pairs); one batch of all scenes when there are fewer than a batch."""
        return max(1, self.base_scenes // self.base_per_batch)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClipMeasurements:
    """What the learned embedding space does on held-out scenes, one caption per scene."""

    n_scenes: int
    seed: int
    """Seed of the held-out scenes (not the training seed)."""
    image_to_text_r1: float
    """Share of pictures whose most similar caption (cosine, among all n) is their own; ties count against."""
    text_to_image_r1: float
    """Share of captions whose most similar picture is their own."""
    image_to_text_r5: float
    text_to_image_r5: float
    zero_shot_colour: float
    """Share of one-object pictures nearest to the prompt `a photo of a COLOUR object` of their colour."""
    zero_shot_shape: float
    """Share of one-object pictures nearest to the prompt `a photo of a SHAPE` of their shape."""
    n_single: int
    """One-object scenes the zero-shot accuracies are measured on."""
    gap: float
    """Distance between the mean unit image embedding and the mean unit text embedding (0: none)."""
    separability: float
    """Held-out accuracy of a logistic regression telling image from text embeddings (0.5: none)."""
    pair_cosine: float
    """Mean cosine of a picture with its own caption."""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """A few lines for the terminal."""
        return (
            f"held-out: {self.n_scenes:,} scenes of seed {self.seed}, one caption each\n"
            f"  retrieval R@1  image→text {self.image_to_text_r1:.3f}  text→image {self.text_to_image_r1:.3f}"
            f"  (R@5 {self.image_to_text_r5:.3f} / {self.text_to_image_r5:.3f})\n"
            f"  zero-shot on {self.n_single} one-object scenes  colour {self.zero_shot_colour:.3f}"
            f"  shape {self.zero_shot_shape:.3f}\n"
            f"  modality gap  distance of means {self.gap:.3f}  linear separability {self.separability:.3f}"
            f"  mean pair cosine {self.pair_cosine:.3f}"
        )


@dataclass(frozen=True)
class ClipTrainResult:
    """What `train_world_clip` did."""

    out: Path
    steps: int
    epochs: int
    """As asked, or as many as fit in `minutes`."""
    seconds: float
    """Wall-clock time of the training loop (drawing the scenes excluded)."""
    first_loss: float
    """Mean loss of the first epoch's first 10 steps (or fewer)."""
    last_loss: float
    """Mean loss of the last 10 steps (or fewer)."""
    losses: list[float]
    """The loss of every step."""
    measurements: ClipMeasurements | None
    """None when training was asked not to measure."""

    def to_json(self) -> dict:
        return {
            "out": str(self.out),
            "steps": self.steps,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
            "measurements": None if self.measurements is None else self.measurements.to_json(),
        }


# ----------------------------------------------------------------------------- data


def render_scenes(scenes: list[Scene], size: int, progress: bool = False) -> torch.Tensor:
    """The scenes' pictures as one uint8 tensor [N, size, size, 3] (drawn once, normalised per batch)."""
    from tqdm import tqdm

    out_NYX3 = torch.empty((len(scenes), size, size, 3), dtype=torch.uint8)
    for i, s in enumerate(tqdm(scenes, desc="drawing scenes", unit="scene", disable=not progress)):
        out_NYX3[i] = torch.from_numpy(np.array(render(s, size)))
    return out_NYX3


def pixel_stats(images_NYX3: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the pictures in [0, 1] (rounded to 4 decimals:
    they are written to the image processor's config)."""
    # exact integer sums, a block of pictures at a time: a float64 copy of 20,000 pictures is 2 GB
    total_3 = torch.zeros(3, dtype=torch.int64)
    squares_3 = torch.zeros(3, dtype=torch.int64)
    for block in images_NYX3.split(1024):
        v = block.reshape(-1, 3).to(torch.int64)
        total_3 += v.sum(0)
        squares_3 += (v * v).sum(0)
    n = images_NYX3[..., 0].numel()
    mean_3 = total_3.double() / n
    var_3 = (squares_3.double() - total_3.double() * mean_3) / max(n - 1, 1)  # unbiased, as Tensor.std
    return [round(float(v), 4) for v in mean_3 / 255], [round(float(v), 4) for v in var_3.sqrt() / 255]


def pixel_values(images_BYX3: torch.Tensor, mean, std) -> torch.Tensor:
    """[B, 3, H, W] model input: what the image processor gives for pictures of the model's size
    (its resize and crop leave them unchanged; the tests hold the two equal)."""
    x = images_BYX3.permute(0, 3, 1, 2).float() / 255
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


@dataclass(frozen=True)
class TokenTable:
    """Every training caption's ids, right-padded to the longest: one slice and one comparison make a
    batch (padding per batch in Python cost more than a GPU step at batch 1,024)."""

    ids_VNL: torch.Tensor
    """Variant v of scene n's caption: ids, `pad_id` after its end (on the training device)."""
    lengths_VN: torch.Tensor
    """Its length (on the training device)."""
    cpu_lengths_VN: torch.Tensor
    """The same on the CPU: a batch's longest length is read without waiting for the GPU."""

    @classmethod
    def build(cls, ids: list[list[list[int]]], pad_id: int) -> TokenTable:
        """From `ids[v][n]`, a list of ids per variant and scene."""
        lengths_VN = np.array([[len(r) for r in per] for per in ids], dtype=np.int64)
        ids_VNL = np.full((*lengths_VN.shape, int(lengths_VN.max())), pad_id, dtype=np.int64)
        for v, per in enumerate(ids):
            for n, r in enumerate(per):
                ids_VNL[v, n, : len(r)] = r
        lengths = torch.from_numpy(lengths_VN)
        return cls(torch.from_numpy(ids_VNL), lengths, lengths)

    def to(self, device: torch.device) -> TokenTable:
        return TokenTable(self.ids_VNL.to(device), self.lengths_VN.to(device), self.cpu_lengths_VN)

    def batch(self, variant: int, rows_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [B, L], attention mask [B, L]) of the rows' captions (`rows_B` on the CPU), as long
        as the batch's longest, on the training device."""
        L = int(self.cpu_lengths_VN[variant, rows_B].max())
        rows_B = rows_B.to(self.ids_VNL.device)
        ids_BL = self.ids_VNL[variant, rows_B, :L]
        mask_BL = (torch.arange(L, device=ids_BL.device)[None, :] < self.lengths_VN[variant, rows_B][:, None]).long()
        return ids_BL, mask_BL


def _features(out) -> torch.Tensor:
    """transformers 5 returns an output object whose `pooler_output` is the projection; 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def clip_loss(img_BD: torch.Tensor, txt_BD: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP: row b of each side should pick row b of the other among the batch,
    at the learned inverse temperature exp(logit_scale)."""
    img = torch.nn.functional.normalize(img_BD.float(), dim=-1)
    txt = torch.nn.functional.normalize(txt_BD.float(), dim=-1)
    logits_BB = logit_scale.exp() * img @ txt.T
    target_B = torch.arange(len(img), device=img.device)
    ce = torch.nn.functional.cross_entropy
    return (ce(logits_BB, target_B) + ce(logits_BB.T, target_B)) / 2


# ----------------------------------------------------------------------------- training


def _optimizer(model, cfg: ClipTrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on the weight matrices only, and the text tower at `text_lr_scale` × lr."""
    groups: dict[tuple[bool, bool], list] = {}
    for n, p in model.named_parameters():
        decays = p.ndim >= 2 and "embedding" not in n
        groups.setdefault((n.startswith("text_"), decays), []).append(p)
    return torch.optim.AdamW(
        [
            {
                "params": ps,
                "weight_decay": cfg.weight_decay if decays else 0.0,
                "lr": cfg.lr * (cfg.text_lr_scale if text else 1.0),
            }
            for (text, decays), ps in groups.items()
        ],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


class _Pairs:
    """The rendered pictures and tokenized captions, on the training device, and one optimisation
    step on a batch of them."""

    def __init__(self, images_NYX3: torch.Tensor, tokens: TokenTable, mean, std, device: torch.device):
        self.images_NYX3 = images_NYX3.to(device)
        self.tokens = tokens.to(device)
        self.mean, self.std, self.device = mean, std, device

    def step(self, model, opt, rows_B: torch.Tensor, variant: int) -> torch.Tensor:
        """One AdamW step on the rows' pairs; the loss, still on the device (reading it waits for the GPU)."""
        ids_BL, mask_BL = self.tokens.batch(variant, rows_B)
        rows_B = rows_B.to(self.device)
        img_BD = _features(
            model.get_image_features(pixel_values=pixel_values(self.images_NYX3[rows_B], self.mean, self.std))
        )
        txt_BD = _features(model.get_text_features(input_ids=ids_BL, attention_mask=mask_BL))
        loss = clip_loss(img_BD, txt_BD, model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return loss.detach()


def _batch_rows(drawn: torch.Tensor, cfg: ClipTrainConfig, n_base: int) -> torch.Tensor:
    """A batch's rows: the drawn scenes, then the varied copies of the first few (`twins`; copy i
    of scene i is row n_base + i)."""
    if not cfg.twins_per_batch:
        return drawn
    return torch.cat([drawn, drawn[: cfg.twins_per_batch] + n_base])


def _seconds_per_step(model, cfg: ClipTrainConfig, pairs: _Pairs, n_base: int, steps: int = 12) -> float:
    """Wall-clock time of one training step, timed on a copy of the model and its own optimizer (the
    run itself starts from the untouched initial weights), after two untimed steps."""
    import copy

    probe = copy.deepcopy(model)
    opt = _optimizer(probe, cfg)
    rows = _batch_rows(
        torch.arange(min(cfg.base_per_batch, n_base)), cfg, n_base
    )  # which rows: no matter; how many: does
    sync = (lambda: torch.cuda.synchronize(pairs.device)) if pairs.device.type == "cuda" else (lambda: None)
    for _ in range(2):
        pairs.step(probe, opt, rows, 0)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        pairs.step(probe, opt, rows, 0)
    sync()
    return (time.perf_counter() - start) / steps


def train_world_clip(
    out: str | os.PathLike,
    cfg: ClipTrainConfig = ClipTrainConfig(),
    model_cfg: WorldClipConfig | None = None,
    *,
    measure: bool = True,
    eval_scenes: int = 1000,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "cpu",
    minutes: float | None = None,
) -> ClipTrainResult:
    """Train the world's CLIP and save it to `out` (see the module's docstring); with `measure`,
    measure it on `eval_scenes` held-out scenes of seed `cfg.seed + 1` and record the result.

    `minutes` replaces `cfg.epochs` by as many epochs as fit in that time (at least one), from the
    time of a few steps on a copy of the model; the record keeps the epochs chosen, so
    `epochs=` reproduces the run. `minutes` budgets the training loop alone: drawing and tokenizing
    the scenes, the timed steps, saving and measuring come on top. `device` is `cpu`, `cuda`,
    `cuda:N` or `auto`; on CUDA, float32 matrix products run in TF32."""
    from tqdm import tqdm

    from mmsae.device import resolve_device

    dev = resolve_device(device)
    model_cfg = model_cfg or WorldClipConfig(image_size=cfg.image_size)
    if model_cfg.image_size != cfg.image_size:
        raise MmsaeError(f"the model takes {model_cfg.image_size}-pixel pictures but image_size is {cfg.image_size}")
    if measure and eval_scenes < 2:
        raise MmsaeError(f"measuring needs at least 2 held-out scenes, got {eval_scenes}")
    if minutes is not None and not (finite(minutes) and minutes > 0):
        raise MmsaeError(f"minutes must be a positive number, got {minutes}")
    out = Path(out)
    _check_out(out, overwrite)

    n_base = cfg.base_scenes
    scenes = sample_scenes(n_base, cfg.seed)
    if cfg.twins_per_batch:
        scenes += [vary_scene(s, cfg.seed, n_base + i, TWIN_ATTRIBUTES) for i, s in enumerate(scenes)]
    images_NYX3 = render_scenes(scenes, cfg.image_size, progress)
    mean, std = pixel_stats(images_NYX3)
    tokenizer = world_tokenizer(model_cfg.max_text_length)
    processor = world_image_processor(cfg.image_size, mean, std)
    # caption v of each scene is its caption in epochs v, v + V, ...: all drawn and tokenized up front.
    # A copy's captions draw their wording from its original's generator (its id), so in each epoch
    # the two captions differ only where the scenes differ: telling them apart needs exactly that word.
    variants = cfg.caption_variants if minutes is not None else min(cfg.epochs, cfg.caption_variants)
    captions = [caption_scene(dataclasses.replace(s, id=s.id % n_base), cfg.seed, variants) for s in scenes]
    ids = [tokenizer([c[v].text for c in captions], truncation=True)["input_ids"] for v in range(variants)]
    pairs = _Pairs(images_NYX3, TokenTable.build(ids, tokenizer.pad_token_id), mean, std, dev)
    del ids, captions

    previous_precision = torch.get_float32_matmul_precision()
    if dev.type == "cuda":
        torch.set_float32_matmul_precision("high")
    try:
        model = build_world_clip(model_cfg, len(tokenizer), seed=cfg.seed).to(dev)
        model.train()
        per_step = None
        if minutes is not None:
            per_step = _seconds_per_step(model, cfg, pairs, n_base)
            cfg = dataclasses.replace(cfg, epochs=max(1, int(minutes * 60 / per_step) // cfg.steps_per_epoch))
        opt = _optimizer(model, cfg)
        total, warmup = cfg.steps, int(cfg.warmup_frac * cfg.steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, "cosine", 0.0))
        order = torch.Generator().manual_seed(cfg.seed)
        per = min(cfg.base_per_batch, n_base)  # fewer scenes than a batch: one batch of all

        losses_S: list[torch.Tensor] = []
        start = time.perf_counter()
        with tqdm(total=total, desc="training the world's CLIP", unit="step", disable=not progress) as bar:
            for epoch in range(cfg.epochs):
                perm = torch.randperm(n_base, generator=order)
                for j in range(cfg.steps_per_epoch):
                    rows = _batch_rows(perm[j * per : (j + 1) * per], cfg, n_base)
                    losses_S.append(pairs.step(model, opt, rows, epoch % variants))
                    sched.step()
                    if len(losses_S) % 25 == 0 or len(losses_S) == total:  # reading the loss waits for a GPU
                        temp = model.logit_scale.exp().item()
                        bar.set_postfix(epoch=epoch + 1, loss=f"{float(losses_S[-1]):.3f}", temp=f"{temp:.1f}")
                    bar.update(1)
        losses = torch.stack(losses_S).cpu().tolist()
        seconds = time.perf_counter() - start
    except torch.cuda.OutOfMemoryError:
        raise MmsaeError(
            f"out of GPU memory at batch size {cfg.batch_size} on {dev}; use a smaller --batch-size"
        ) from None
    finally:
        torch.set_float32_matmul_precision(previous_precision)
    model = model.cpu().eval()

    record = {
        "format": RECORD_FORMAT,
        "version": 1,
        "model": model_cfg.to_json(),
        "train": cfg.to_json(),
        "device": str(dev) if dev.type == "cpu" else f"{dev} ({torch.cuda.get_device_name(dev)})",
        "minutes": minutes,
        "probe_seconds_per_step": per_step,
        "image_mean": mean,
        "image_std": std,
        "steps": total,
        "train_seconds": round(seconds, 1),
        "first_loss": float(np.mean(losses[:10])),
        "last_loss": float(np.mean(losses[-10:])),
        "inverse_temperature": model.logit_scale.exp().item(),
        "measurements": None,
    }
    save_world_clip(out, model, tokenizer, processor, record)
    measured = None
    if measure:
        measured = measure_world_clip(model, tokenizer, processor, n_scenes=eval_scenes, seed=cfg.seed + 1)
        write_json_atomic(out / RECORD_FILE, {**record, "measurements": measured.to_json()})
    return ClipTrainResult(out, total, cfg.epochs, seconds, record["first_loss"], record["last_loss"], losses, measured)


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a file, a folder holding something else, a trained model without `overwrite`, or a
    place that cannot be written, before any training."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MmsaeError(f"cannot write {out}: {exc.strerror or exc}") from None
    if not os.access(out.parent, os.W_OK):
        raise MmsaeError(f"cannot write {out}: permission denied")
    if out.exists() and not out.is_dir():
        raise MmsaeError(f"{out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / RECORD_FILE).exists():
            raise MmsaeError(f"{out} is not empty and holds no world model; choose another --out")
        if not overwrite:
            raise MmsaeError(
                f"{out} already holds a trained world model; pass --overwrite to replace it, or choose another --out"
            )


def save_world_clip(out: str | os.PathLike, model, tokenizer, processor, record: dict | None = None) -> Path:
    """Save model, tokenizer and image processor with `save_pretrained`, and `record` as
    world_clip.json. The folder is written beside `out` and renamed into place, so `out` is never
    half written: a reader sees the old model or the new one (an old one is moved aside, then removed)."""
    from mmsae.backends.base import quiet_transformers

    out = Path(out)
    record = record if record is not None else {"format": RECORD_FORMAT, "version": 1}
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        with quiet_transformers():
            model.save_pretrained(stage)
            tokenizer.save_pretrained(stage)
            processor.save_pretrained(stage)
        write_json_atomic(stage / RECORD_FILE, record)
        _default_modes(stage)
        if out.exists() and any(out.iterdir()):
            os.replace(out, old)
        elif out.exists():
            out.rmdir()
        os.replace(stage, out)
    except OSError as exc:
        raise MmsaeError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out


def _default_modes(folder: Path) -> None:
    """Give every file the mode a new file gets (0644 under the usual umask): transformers writes the
    weights through a private temporary file (0600), which would leave the shipped model unreadable
    to other users of a shared installation."""
    probe = folder / ".mode-probe"
    probe.touch()
    mode = probe.stat().st_mode & 0o777
    probe.unlink()
    for p in folder.iterdir():
        if p.is_file():
            p.chmod(mode)


def load_world_clip(folder: str | os.PathLike):
    """(model, tokenizer, image processor) of a saved folder, through transformers' own
    `from_pretrained`; a folder that is not one is a one-line `MmsaeError`."""
    import transformers

    from mmsae.backends.base import quiet_transformers

    folder = Path(folder)
    if not folder.is_dir():
        raise MmsaeError(f"{folder}: no such folder")
    try:
        with quiet_transformers():
            model = transformers.CLIPModel.from_pretrained(folder, local_files_only=True)
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
            processor = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a missing or damaged file, in transformers' own words
        raise MmsaeError(f"{folder} is not a loadable CLIP folder: {' '.join(str(exc).split())[:300]}") from None
    return model.eval(), tokenizer, processor


# ----------------------------------------------------------------------------- measurement


@torch.no_grad()
def embed_pictures(model, processor, pictures, batch_size: int = 256) -> np.ndarray:
    """Unit-norm `get_image_features` of PIL pictures, through the image processor: [N, D]."""
    out = []
    for lo in range(0, len(pictures), batch_size):
        batch = processor(images=pictures[lo : lo + batch_size], return_tensors="pt")
        out.append(_features(model.get_image_features(pixel_values=batch["pixel_values"])))
    return unit_rows(torch.cat(out).float()).numpy()


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """Unit-norm `get_text_features` of texts, padded per batch: [N, D]."""
    out = []
    for lo in range(0, len(texts), batch_size):
        enc = tokenizer(texts[lo : lo + batch_size], padding=True, truncation=True, return_tensors="pt")
        out.append(_features(model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])))
    return unit_rows(torch.cat(out).float()).numpy()


def recall_at(query_ND: np.ndarray, gallery_ND: np.ndarray, ks=(1, 5)) -> dict[str, float]:
    """Recall@k of row i of the queries retrieving row i of the gallery (by cosine, ties against)."""
    keys_N = np.arange(len(query_ND))
    q, g = np.ascontiguousarray(query_ND), np.ascontiguousarray(gallery_ND)  # torch takes no negative strides
    return retrieval_recall(q, g, keys_N, keys_N, ks=ks)


def modality_gap(img_ND: np.ndarray, txt_ND: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(distance between the mean unit image and text embeddings, held-out accuracy of a logistic
    regression telling the two apart). Rows are pairs; half the pairs (drawn from `seed`) train the
    classifier, the other half test it, so a pair is never split across the two."""
    from sklearn.linear_model import LogisticRegression

    img = unit_rows(np.asarray(img_ND, dtype=np.float64))
    txt = unit_rows(np.asarray(txt_ND, dtype=np.float64))
    gap = float(np.linalg.norm(img.mean(0) - txt.mean(0)))
    perm = np.random.default_rng(seed).permutation(len(img))
    train, test = perm[: len(perm) // 2], perm[len(perm) // 2 :]

    def rows(idx):
        return np.concatenate([img[idx], txt[idx]]), np.r_[np.ones(len(idx)), np.zeros(len(idx))]

    X, y = rows(train)
    clf = LogisticRegression(max_iter=2000).fit(X, y)
    X, y = rows(test)
    return gap, float((clf.predict(X) == y).mean())


def colour_prompts() -> list[str]:
    return [f"a photo of a {c} object" for c in COLOURS]


def shape_prompts() -> list[str]:
    return [f"a photo of {'an' if s[0] in 'aeiou' else 'a'} {s}" for s in SHAPES]


def measure_embeddings(
    img_ND: np.ndarray,
    txt_ND: np.ndarray,
    scenes: list[Scene],
    colour_CD: np.ndarray,
    shape_CD: np.ndarray,
    seed: int,
) -> ClipMeasurements:
    """Every measurement from embeddings already made: `img_ND[i]` and `txt_ND[i]` are scene i's
    picture and caption; `colour_CD` / `shape_CD` the prompts of `colour_prompts()` / `shape_prompts()`."""
    i2t, t2i = recall_at(img_ND, txt_ND), recall_at(txt_ND, img_ND)
    single = [i for i, s in enumerate(scenes) if s.count == 1]
    colour_N = np.array([list(COLOURS).index(scenes[i].objects[0].colour) for i in single], dtype=np.int64)
    shape_N = np.array([list(SHAPES).index(scenes[i].objects[0].shape) for i in single], dtype=np.int64)
    img_single = img_ND[single]
    gap, sep = modality_gap(img_ND, txt_ND, seed)
    pair = float((unit_rows(np.asarray(img_ND, np.float64)) * unit_rows(np.asarray(txt_ND, np.float64))).sum(1).mean())
    return ClipMeasurements(
        n_scenes=len(scenes),
        seed=seed,
        image_to_text_r1=i2t["recall@1"],
        text_to_image_r1=t2i["recall@1"],
        image_to_text_r5=i2t["recall@5"],
        text_to_image_r5=t2i["recall@5"],
        zero_shot_colour=zero_shot_accuracy(img_single, colour_N, colour_CD) if single else math.nan,
        zero_shot_shape=zero_shot_accuracy(img_single, shape_N, shape_CD) if single else math.nan,
        n_single=len(single),
        gap=gap,
        separability=sep,
        pair_cosine=pair,
    )


def measure_world_clip(model, tokenizer, processor, n_scenes: int = 1000, seed: int = 1) -> ClipMeasurements:
    """Measure a model on `n_scenes` scenes of `seed` (held out: not the training seed), one
    caption each, through the image processor and the tokenizer as a user's embedding would go."""
    if n_scenes < 2:
        raise MmsaeError(f"measuring needs at least 2 scenes, got {n_scenes}")
    size = int(model.config.vision_config.image_size)
    scenes = sample_scenes(n_scenes, seed)
    model = model.eval()
    img_ND = embed_pictures(model, processor, [render(s, size) for s in scenes])
    txt_ND = embed_texts(model, tokenizer, [caption_scene(s, seed, 1)[0].text for s in scenes])
    colour_CD = embed_texts(model, tokenizer, colour_prompts())
    shape_CD = embed_texts(model, tokenizer, shape_prompts())
    return measure_embeddings(img_ND, txt_ND, scenes, colour_CD, shape_CD, seed)


def read_record(folder: str | os.PathLike) -> dict:
    """The `world_clip.json` beside a model (how it was trained, what it measured); {} for a folder
    this module did not write, or whose record cannot be read."""
    import json

    try:
        record = json.loads((Path(folder) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def training_seed(folder: str | os.PathLike) -> int | None:
    """The seed `train_world_clip` drew the folder's training scenes from, if it records one."""
    try:
        return int(read_record(folder)["train"]["seed"])
    except (KeyError, TypeError, ValueError):
        return None


def held_out_seed(folder: str | os.PathLike) -> int:
    """The seed to measure a folder on: its training seed + 1 (1 for a CLIP folder without a record)."""
    seed = training_seed(folder)
    return 1 if seed is None else seed + 1


def measure_folder(folder: str | os.PathLike, n_scenes: int = 1000, seed: int | None = None) -> ClipMeasurements:
    """`measure_world_clip` of a saved folder; the held-out seed defaults to `held_out_seed`."""
    seed = held_out_seed(folder) if seed is None else seed
    return measure_world_clip(*load_world_clip(folder), n_scenes=n_scenes, seed=seed)


# ----------------------------------------------------------------------------- diagnosis

PROBED_ATTRIBUTES = ("shape", "colour", "size", "position")


def attribute_probes(
    model, tokenizer, processor, n_scenes: int = 1400, seed: int = 7, n_fit: int = 1000
) -> dict[str, dict[str, float]]:
    """What the embeddings hold of each object attribute: the held-out accuracy of a logistic
    regression reading it from the image embeddings of one-object scenes (`n_fit` to fit, the rest
    to test), and from the text embeddings of their captions that say it (70% to fit)."""
    from sklearn.linear_model import LogisticRegression

    size = int(model.config.vision_config.image_size)
    scenes: list[Scene] = []
    i = 0
    while len(scenes) < n_scenes:  # the first one-object scenes of this seed, in order
        s = sample_scene(i, seed)
        if s.count == 1:
            scenes.append(s)
        i += 1
    captions = [caption_scene(s, seed, 1)[0] for s in scenes]
    img = embed_pictures(model, processor, [render(s, size) for s in scenes])
    txt = embed_texts(model, tokenizer, [c.text for c in captions])
    out: dict[str, dict[str, float]] = {}
    for attr in PROBED_ATTRIBUTES:
        y = np.array([getattr(s.objects[0], attr) for s in scenes])
        fit = LogisticRegression(max_iter=3000).fit(img[:n_fit], y[:n_fit])
        out[attr] = {"image": float(fit.score(img[n_fit:], y[n_fit:]))}
        said = np.array([any(k.startswith(attr + "=") for k in c.mentions) for c in captions])
        if attr != "size" and said.sum() >= 50:
            xs, ys = txt[said], y[said]
            cut = int(0.7 * len(ys))
            out[attr]["text"] = float(
                LogisticRegression(max_iter=3000).fit(xs[:cut], ys[:cut]).score(xs[cut:], ys[cut:])
            )
    return out


def oracle_recall(scenes: list[Scene], captions: list, attributes) -> float:
    """Image→text R@1 of an oracle that knows, of each caption, only the values of `attributes` it
    mentions, and of each picture its values: it ranks the captions consistent with a picture by how
    many such values they say (ties against, like `recall_at`). What a model that learned exactly
    those attributes could reach, binding of values to objects aside."""
    attributes = set(attributes)
    shows = [s.values() for s in scenes]
    says = [frozenset(k for k in c.mentions if k.split("=", 1)[0] in attributes) for c in captions]
    hits = 0
    for i, values in enumerate(shows):
        rival = max((len(m) for j, m in enumerate(says) if j != i and m <= values), default=-1)
        hits += len(says[i]) > rival
    return hits / len(scenes)
