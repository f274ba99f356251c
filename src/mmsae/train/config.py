"""Training configuration: one frozen dataclass, loadable from TOML/YAML and overridable by flags."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsae.errors import MmsaeError
from mmsae.validate import check_all, check_types, finite

SPARSITY_FIELDS = ("k", "l1_coef", "l0_coef")
"""The fields that set how sparse codes are; each architecture reads one (`TrainingHooks.sparsity_field`)."""
MAX_SEED = 2**63 - 2**20
"""Seeds are offset by small constants for derived streams; this keeps them inside int64."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; saved beside the SAE it produced."""

    arch: str = "topk"
    """Architecture: relu, topk, batchtopk, matryoshka, gated, jumprelu, or on pairs vlsae and multimodal."""
    dict_size: int = 4096
    """Number of latents F."""
    k: int = 32
    """Active latents per row (TopK family; the largest nested k for matryoshka)."""
    l1_coef: float = 5.0
    """L1 weight λ (relu, gated, and multimodal with sparsity l1), on inputs scaled to mean norm √D."""
    l0_coef: float = 1.0
    """jumprelu only: weight λ of the L0 penalty (active latents per row), on inputs scaled to mean norm √D."""
    sparsity: str = "topk"
    """multimodal only: topk or l1."""
    lambda_image: float = 1.0
    """multimodal only: weight of the image reconstruction loss (text has weight 1)."""
    lambda_align: float = 0.3
    """multimodal only: weight of the pair alignment term ‖z_txt − z_img‖². On the default planted data
    (F=1024, k=8) 0.3 kept FVU at 0.076 with 98% of shared concepts recovered; 1.0 raised FVU to 0.19."""
    vlsae_center: bool = False
    """vlsae only: subtract each modality's mean before the cosine encoder (not in the official code)."""
    matryoshka_ks: tuple[int, ...] = ()
    """Nested k values for matryoshka; empty means k/4, k/2, k, none below 4."""
    aux_k: int = 256
    """Dead latents in the AuxK loss (TopK family)."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss."""
    steps: int | None = None
    """Optimizer steps; None means `epochs` passes over the training split."""
    epochs: float = 10.0
    """Passes over the training split when `steps` is not given."""
    batch_size: int = 4096
    """Rows per step."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    warmup_frac: float = 0.05
    """Share of steps for the linear LR warm-up."""
    decay: str = "cosine"
    """LR decay after warm-up: cosine, linear or constant."""
    min_lr_frac: float = 0.0
    """Final LR as a share of the peak."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    normalize: str = "auto"
    """Input normalisation during training, folded into the saved weights: center_scale, scale, none, or
    auto (center_scale; per modality for multimodal; none for vlsae, which normalises its input itself)."""
    b_dec_init: str = "geometric_median"
    """Start b_dec at the (normalised) data's geometric_median, mean, or zeros."""
    init_rows: int = 65536
    """Rows sampled to estimate the normalisation and b_dec."""
    dead_after: int | None = None
    """A latent that has not fired for this many training rows is dead (AuxK); None: one epoch, at most 10M."""
    seed: int = 0
    """Seeds the initialisation and (unless `data_seed` is set) the data order."""
    data_seed: int | None = None
    """Seeds the batch order when set; runs that differ only in `seed` then see the same batches,
    which is what lets a sweep over seeds share one read of the data (`train_sweep`)."""
    val_fraction: float = 0.1
    """Share of pair ids held out for validation (both sides of a pair stay together); 0 trains on every
    row and reports training metrics. A store whose held-out split would have fewer than 2 rows (or
    pairs), or whose training split would be empty, trains on every row instead, and says so."""
    modality: str | None = None
    """Train on one modality only (None: all rows)."""
    mix: str | None = None
    """Image:text ratio of the training rows, e.g. "1:3": every row of the scarcer side is kept and rows
    of the other are dropped at random (fixed by row id) to reach it (None: the store's own mix)."""
    shuffle_buffer: int = 65536
    """Rows in the streaming shuffle buffer."""
    checkpoint_every: int = 500
    """Write a resumable checkpoint every this many steps (0: never)."""
    log_every: int = 10
    """Append a line to train_log.jsonl every this many steps."""
    device: str = "auto"
    """cpu, cuda, cuda:N or auto."""
    select_dtype: str = "float32"
    """TopK and Matryoshka (ignored by other architectures): precision of the encoder GEMM that chooses the active latents
    (`bfloat16`: ~3.5× faster GEMM on CPUs with AVX512-BF16/AMX and on GPUs); the chosen values and
    all gradients stay float32."""
    tensorboard: bool = False
    """Also log to TensorBoard (needs the `tensorboard` extra)."""
    wandb: str | None = None
    """Also log to this Weights & Biases project (needs the `wandb` extra; WANDB_MODE=offline logs to
    OUT/wandb for a later `wandb sync`)."""

    def __post_init__(self):
        from mmsae.models.registry import ARCHITECTURES

        check_types(self)
        if self.arch not in ARCHITECTURES:
            raise MmsaeError(f"unknown --arch {self.arch!r}; choose from {', '.join(sorted(ARCHITECTURES))}")
        arch = ARCHITECTURES[self.arch]
        checks = [
            (self.dict_size > 0, f"dict size must be positive, got {self.dict_size}"),
            (
                not arch.uses_k(self) or 0 < self.k <= self.dict_size,
                f"k must be in [1, dict size {self.dict_size}], got {self.k}",
            ),
            (self.batch_size > 0, f"batch size must be positive, got {self.batch_size}"),
            (finite(self.lr) and self.lr > 0, f"learning rate must be a positive number, got {self.lr}"),
            (self.steps is None or self.steps > 0, f"steps must be positive, got {self.steps}"),
            (finite(self.epochs) and self.epochs > 0, f"epochs must be a positive number, got {self.epochs}"),
            (
                finite(self.warmup_frac) and 0 <= self.warmup_frac < 1,
                f"warmup fraction must be in [0, 1), got {self.warmup_frac}",
            ),
            (
                finite(self.min_lr_frac) and 0 <= self.min_lr_frac <= 1,
                f"min lr fraction must be in [0, 1], got {self.min_lr_frac}",
            ),
            (
                finite(self.weight_decay) and self.weight_decay >= 0,
                f"weight decay must be 0 or more, got {self.weight_decay}",
            ),
            (
                finite(self.grad_clip) and self.grad_clip >= 0,
                f"grad clip must be 0 (off) or more, got {self.grad_clip}",
            ),
            (self.aux_k >= 0, f"aux k must be 0 or more, got {self.aux_k}"),
            (finite(self.aux_coef) and self.aux_coef >= 0, f"aux coefficient must be 0 or more, got {self.aux_coef}"),
            (self.init_rows > 0, f"init rows must be positive, got {self.init_rows}"),
            (self.dead_after is None or self.dead_after > 0, f"dead after must be positive, got {self.dead_after}"),
            (0 <= self.seed <= MAX_SEED, f"seed must be in [0, 2^63 - 2^20], got {self.seed}"),
            (
                self.data_seed is None or 0 <= self.data_seed <= MAX_SEED,
                f"data seed must be in [0, 2^63 - 2^20], got {self.data_seed}",
            ),
            (self.shuffle_buffer > 0, f"shuffle buffer must be positive, got {self.shuffle_buffer}"),
            (self.checkpoint_every >= 0, f"checkpoint every must be 0 (never) or more, got {self.checkpoint_every}"),
            (self.log_every > 0, f"log every must be positive, got {self.log_every}"),
            (self.modality is None or bool(self.modality), "modality must be a name or left out"),
            (self.wandb is None or bool(self.wandb.strip()), "wandb project must be a name or left out"),
            (
                self.decay in ("cosine", "linear", "constant"),
                f"decay must be cosine, linear or constant, got {self.decay!r}",
            ),
            (
                self.normalize in ("auto", "center_scale", "scale", "none"),
                f"normalize must be auto, center_scale, scale or none, got {self.normalize!r}",
            ),
            (self.sparsity in ("topk", "l1"), f"sparsity must be topk or l1, got {self.sparsity!r}"),
            (
                finite(self.lambda_align)
                and finite(self.lambda_image)
                and self.lambda_align >= 0
                and self.lambda_image >= 0,
                "lambda_align and lambda_image must be non-negative numbers",
            ),
            (
                not arch.paired or self.modality is None,
                f"--arch {self.arch} trains on image/text pairs; --modality does not apply",
            ),
            (
                not arch.paired or self.mix is None,
                f"--arch {self.arch} trains on image/text pairs; --mix does not apply",
            ),
            (self.mix is None or self.modality is None, "--mix and --modality exclude each other"),
            (
                self.b_dec_init in ("geometric_median", "mean", "zeros"),
                f"b_dec_init must be geometric_median, mean or zeros, got {self.b_dec_init!r}",
            ),
            (
                finite(self.val_fraction) and 0 <= self.val_fraction < 1,
                f"val fraction must be in [0, 1) (0: no held-out split), got {self.val_fraction}",
            ),
            (finite(self.l1_coef) and self.l1_coef >= 0, f"l1 coefficient must be non-negative, got {self.l1_coef}"),
            (finite(self.l0_coef) and self.l0_coef >= 0, f"l0 coefficient must be non-negative, got {self.l0_coef}"),
            (
                self.select_dtype in ("float32", "bfloat16", "float16"),
                f"select dtype must be float32, bfloat16 or float16, got {self.select_dtype!r}",
            ),
        ]
        check_all(checks + arch.train_checks(self))
        self.mix_ratio()
        if self.device != "auto":
            from mmsae.device import resolve_device

            resolve_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def paired(self) -> bool:
        """Whether this architecture trains on (image, text) pairs."""
        return len(self.groups) > 1

    @property
    def groups(self) -> tuple[str, ...]:
        """The architecture's input groups (`TrainingHooks.groups`): what one training example is."""
        from mmsae.models.registry import ARCHITECTURES

        return ARCHITECTURES[self.arch].groups

    def mix_ratio(self) -> tuple[float, float] | None:
        if self.mix is None:
            return None
        try:
            a, b = (float(v) for v in self.mix.split(":"))
        except ValueError:
            raise MmsaeError(f"--mix must look like 1:3 (image:text), got {self.mix!r}") from None
        if not (finite(a) and finite(b) and a > 0 and b > 0):
            raise MmsaeError(f"--mix parts must be positive numbers, got {self.mix!r}")
        return a, b

    def resolved_normalize(self) -> str:
        if self.normalize != "auto":
            return self.normalize
        from mmsae.models.registry import ARCHITECTURES

        return ARCHITECTURES[self.arch].default_normalize

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise MmsaeError(f"unknown training option(s): {', '.join(unknown)}")
        d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        try:
            return cls(**d)
        except TypeError as exc:
            raise MmsaeError(f"bad training options: {exc}") from None

    @property
    def stream_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def model_config(self, d_in: int) -> dict[str, Any]:
        """The architecture's own config fields (each architecture says which it takes)."""
        from mmsae.models.registry import ARCHITECTURES

        return ARCHITECTURES[self.arch].train_model_config(self, d_in)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Options from a TOML, YAML or JSON file (a `[train]` table is used if present)."""
    path = Path(path)
    if not path.is_file():
        raise MmsaeError(f"{path}: {'is a folder, not' if path.is_dir() else 'no such'} config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MmsaeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise MmsaeError(f"{path}: config must be .toml, .yaml/.yml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise MmsaeError(f"{path}: cannot parse ({' '.join(str(exc).split())[:200]})") from None
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise MmsaeError(f"{path}: cannot parse ({str(exc).splitlines()[0]})") from None
        raise
    if not isinstance(data, dict):
        raise MmsaeError(f"{path}: expected a table of options")
    if "train" in data and isinstance(data["train"], dict):
        data = data["train"]
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def check_architecture_options(opts: dict[str, Any], given: Iterable[str]) -> None:
    """One line for a field in `given` that the architecture `opts` names would ignore: each
    architecture lists the options it reads (`TrainingHooks.option_fields` / `sparsity_field`).
    `opts` holds the run's field values (the architecture, `sparsity`, ...)."""
    from mmsae.models.registry import ARCHITECTURES

    arch, sparsity = opts.get("arch", "topk"), opts.get("sparsity")
    cls = ARCHITECTURES.get(arch) if isinstance(arch, str) else None
    if cls is None or not isinstance(sparsity, (str, type(None))):
        return  # TrainConfig names the architectures there are, and refuses values of the wrong type
    knob = cls.sparsity_field(opts)
    with_opts = f"--arch {arch}" + (
        f" --sparsity {opts['sparsity']}" if opts.get("sparsity") not in (None, "topk") else ""
    )
    for field in given:
        if field in SPARSITY_FIELDS and field != knob:
            raise MmsaeError(
                f"{_flag(field)} does not apply to {with_opts}, which sets its sparsity with {_flag(knob)}"
            )
        users = [a for a, c in ARCHITECTURES.items() if field in c.option_fields]
        if users and field not in cls.option_fields:
            raise MmsaeError(f"{_flag(field)} applies to --arch {', '.join(users)} only")


def _flag(field: str) -> str:
    return "--l1" if field == "l1_coef" else f"--{field.replace('_', '-')}"
