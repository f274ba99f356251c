"""Synthetic paired image/text embeddings built from a known dictionary.

Three kinds of planted concepts: `shared` (fire on both sides of a pair), `image` (image rows
only) and `text` (text rows only). Each row is

    x = normalize(offset_modality + Σ_i a_i d_i + noise),

with heavy-tailed concept frequencies and lognormal magnitudes. The two modality offsets put
images and texts in separate cones, the CLIP modality gap. Defaults are calibrated to CLIP
ViT-B/32: mean of image embeddings with norm ≈ 0.68, image-image cosine mostly 0.45-0.7,
matched image-text cosine ≈ 0.3, unmatched ≈ 0.15 (see tests/data/test_synthetic.py).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import scipy.sparse as sp

from mmsae.data.manifest import MANIFEST_NAME
from mmsae.data.store import EmbeddingStore, StoreWriter
from mmsae.errors import MmsaeError
from mmsae.fileio import write_json_atomic
from mmsae.vectors import decoder_cosines, unit_rows

KINDS = ("shared", "image", "text")
GROUND_TRUTH_DIR = "ground_truth"


@dataclass(frozen=True)
class SynthConfig:
    """Size and geometry of a synthetic paired data set."""

    dim: int = 256
    """Embedding dimension D."""
    n_pairs: int = 20000
    """Image/text pairs; the store gets 2 × n_pairs rows."""
    n_shared: int = 192
    """Concepts that fire on both sides of a pair."""
    n_image: int = 96
    """Image-only concepts."""
    n_text: int = 96
    """Text-only concepts."""
    active_shared: float = 2.0
    """Expected shared concepts per pair."""
    active_specific: float = 4.0
    """Expected modality-specific concepts per row."""
    zipf_exponent: float = 0.6
    """Concept frequency ∝ (rank + 8)^-exponent: a few frequent concepts, many rare ones."""
    magnitude_sigma: float = 0.4
    """Sigma of the lognormal concept magnitudes."""
    pair_jitter: float = 0.3
    """Sigma of the lognormal factor between the image and the text magnitude of a shared concept."""
    offset_norm: float = 0.9
    """Norm of each modality offset relative to the concept signal (sets the cone width)."""
    offset_cosine: float = 0.33
    """Cosine between the image offset and the text offset (sets the modality gap)."""
    noise: float = 0.08
    """Per-dimension Gaussian noise, relative to the signal's per-dimension scale."""
    n_bridges: int = 0
    """Planted cross-modal bridges: image-only concept b is paired with text-only concept b (the first
    `n_bridges` of each kind); the text concept fires on a caption exactly when the image concept
    fires on its image, and their directions have cosine `bridge_cosine`."""
    bridge_cosine: float = 0.6
    """Cosine between the two directions of a planted bridge."""
    seed: int = 0
    """Seeds the dictionary and every row."""

    def __post_init__(self):
        from mmsae.validate import check_all, check_types, finite

        check_types(self)
        # generous bounds, but finite ones: beyond them the rows overflow float32
        floats = {
            "active_shared": 1e4,
            "active_specific": 1e4,
            "zipf_exponent": 10,
            "magnitude_sigma": 5,
            "pair_jitter": 5,
            "offset_norm": 1e3,
            "noise": 1e3,
        }
        check_all(
            [
                (self.dim > 1, f"dim must be at least 2, got {self.dim}"),
                (self.n_pairs > 0, f"n_pairs must be positive, got {self.n_pairs}"),
                (
                    min(self.n_shared, self.n_image, self.n_text) >= 0 and 0 < self.n_concepts <= 1_000_000,
                    f"concept counts must be 0 or more, with 1 to 1,000,000 in all, got {self.n_concepts}",
                ),
                *(
                    (
                        finite(getattr(self, f)) and 0 <= getattr(self, f) <= hi,
                        f"{f} must be in [0, {hi:g}], got {getattr(self, f)}",
                    )
                    for f, hi in floats.items()
                ),
                (
                    finite(self.offset_cosine) and -1 <= self.offset_cosine <= 1,
                    f"offset_cosine must be in [-1, 1], got {self.offset_cosine}",
                ),
                (
                    finite(self.bridge_cosine) and -1 <= self.bridge_cosine <= 1,
                    f"bridge_cosine must be in [-1, 1], got {self.bridge_cosine}",
                ),
                (
                    0 <= self.n_bridges <= min(self.n_image, self.n_text),
                    f"n_bridges must be in [0, min(n_image, n_text) = {min(self.n_image, self.n_text)}], got {self.n_bridges}",
                ),
                (0 <= self.seed < 2**63, f"seed must be in [0, 2^63), got {self.seed}"),
            ]
        )

    @property
    def n_concepts(self) -> int:
        return self.n_shared + self.n_image + self.n_text

    def bridges(self) -> list[tuple[int, int]]:
        """(image concept, text concept) of each planted bridge."""
        return [(self.n_shared + b, self.n_shared + self.n_image + b) for b in range(self.n_bridges)]


@dataclass
class GroundTruth:
    """What was planted: directions, kinds, names, frequencies, and every row's code."""

    dictionary_CD: np.ndarray
    kinds: list[str]
    names: list[str]
    frequency_C: np.ndarray
    codes: sp.csr_matrix | None = None
    """[N_rows, C] concept coefficients of each row, in the units of the normalised row."""
    bridges: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    """Planted (image concept, text concept) bridges."""


def planted_dictionary(cfg: SynthConfig) -> GroundTruth:
    rng = np.random.default_rng([cfg.seed, 0])
    dictionary_CD = unit_rows(rng.standard_normal((cfg.n_concepts, cfg.dim))).astype(np.float32)
    kinds = ["shared"] * cfg.n_shared + ["image"] * cfg.n_image + ["text"] * cfg.n_text
    names = [f"{k}-{i:04d}" for i, k in enumerate(kinds)]
    freq = np.empty(cfg.n_concepts)
    for kind, n, active in (
        ("shared", cfg.n_shared, cfg.active_shared),
        ("image", cfg.n_image, cfg.active_specific),
        ("text", cfg.n_text, cfg.active_specific),
    ):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if n == 0:
            continue
        w = (rng.permutation(n) + 8.0) ** -cfg.zipf_exponent
        freq[idx] = np.minimum(w / w.sum() * active, 0.9)
    if cfg.n_bridges > min(cfg.n_image, cfg.n_text):
        raise MmsaeError(f"n_bridges ({cfg.n_bridges}) cannot exceed the image-only or text-only concepts")
    if not -1.0 < cfg.bridge_cosine < 1.0:
        raise MmsaeError(f"bridge_cosine must be in (-1, 1), got {cfg.bridge_cosine}")
    for i, t in cfg.bridges():
        d_i = dictionary_CD[i].astype(np.float64)
        u = dictionary_CD[t] - (dictionary_CD[t] @ d_i) * d_i
        dictionary_CD[t] = cfg.bridge_cosine * d_i + np.sqrt(1 - cfg.bridge_cosine**2) * unit_rows(u)
        freq[t] = freq[i]
    return GroundTruth(dictionary_CD, kinds, names, freq, bridges=cfg.bridges())


def _offsets(cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([cfg.seed, 1])
    u, v = unit_rows(rng.standard_normal((2, cfg.dim)))
    v = unit_rows(v - (v @ u) * u)
    img = u
    txt = cfg.offset_cosine * u + np.sqrt(1 - cfg.offset_cosine**2) * v
    return img, txt


def _signal_scale(cfg: SynthConfig) -> float:
    e_a2 = np.exp(2 * cfg.magnitude_sigma**2)
    return float(np.sqrt((cfg.active_shared + cfg.active_specific) * e_a2))


def sample_codes(cfg: SynthConfig, gt: GroundTruth, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Raw concept coefficients [n, C] of n pairs: (image side, text side)."""
    kinds = np.array(gt.kinds)
    C = cfg.n_concepts
    fires_NC = rng.random((n, C)) < gt.frequency_C
    mag_NC = rng.lognormal(0.0, cfg.magnitude_sigma, (n, C))
    jitter_NC = rng.lognormal(0.0, cfg.pair_jitter, (n, C))
    shared, img_only, txt_only = kinds == "shared", kinds == "image", kinds == "text"
    code_img = np.where(fires_NC & (shared | img_only), mag_NC, 0.0)
    code_txt = np.where(fires_NC & shared, mag_NC * jitter_NC, 0.0)
    code_txt = np.where(fires_NC & txt_only, mag_NC, code_txt)
    for i, t in cfg.bridges():
        code_txt[:, t] = np.where(code_img[:, i] > 0, mag_NC[:, t], 0.0)
    return code_img, code_txt


def embed_codes(
    cfg: SynthConfig, gt: GroundTruth, code_NC: np.ndarray, modality: str, rng: np.random.Generator, noise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Rows x = normalize(offset_modality + code @ D + noise) and their codes in the row's units."""
    off_img, off_txt = _offsets(cfg)
    offset = off_img if modality == "image" else off_txt
    scale = _signal_scale(cfg)
    raw = cfg.offset_norm * scale * offset + code_NC @ gt.dictionary_CD.astype(np.float64)
    if noise:
        raw = raw + cfg.noise * scale / np.sqrt(cfg.dim) * rng.standard_normal((len(code_NC), cfg.dim))
    norm = np.linalg.norm(raw, axis=1, keepdims=True)
    return (raw / norm).astype(np.float32), code_NC / norm


def generate_chunk(cfg: SynthConfig, gt: GroundTruth, chunk: int, n: int):
    """Rows for pairs [chunk_start, chunk_start + n): (img_ND, txt_ND, codes_img, codes_txt)."""
    import scipy.sparse as sp  # here, not at import: training never needs it

    rng = np.random.default_rng([cfg.seed, 2, chunk])
    code_img, code_txt = sample_codes(cfg, gt, n, rng)
    img, c_img = embed_codes(cfg, gt, code_img, "image", rng)
    txt, c_txt = embed_codes(cfg, gt, code_txt, "text", rng)
    return img, txt, sp.csr_matrix(c_img), sp.csr_matrix(c_txt)


def write_synthetic(
    out: str | os.PathLike,
    cfg: SynthConfig = SynthConfig(),
    chunk_pairs: int = 16384,
    progress: bool = False,
    dtype: str = "float32",
    images: bool = False,
) -> EmbeddingStore:
    """Write the data set as a store (images then texts per chunk) plus its ground truth.

    Pair p has pair id p; its image and text rows carry it. With `images`, each image row also
    gets a picture of its planted concepts (`synthetic_images`) under STORE/images/.
    """
    import scipy.sparse as sp  # here, not at import: training never needs it

    out = Path(out)
    if (out / MANIFEST_NAME).exists():
        raise MmsaeError(f"{out} already holds a store; choose another --out or delete it")
    if cfg.n_pairs <= 0 or cfg.dim <= 1 or cfg.n_concepts <= 0:
        raise MmsaeError("synthetic data needs n_pairs > 0, dim > 1 and at least one concept")
    gt = planted_dictionary(cfg)
    # a chunk holds ~8 dense [pairs, concepts] float64 arrays: keep them within ~2 GB, whatever the
    # number of concepts (the chunking is a function of the config, so the data stay deterministic)
    chunk_pairs = min(chunk_pairs, max(16, (2 << 30) // (64 * cfg.n_concepts)))
    preprocessing = {"l2_normalized": True, "synthetic": asdict(cfg)}
    if images:
        from mmsae.data import synthetic_images as pics
        from mmsae.data.images import IMAGE_ROOT_KEY

        preprocessing[IMAGE_ROOT_KEY] = pics.IMAGE_DIR
        ranks = pics.visible_ranks(gt.kinds)
    writer = StoreWriter(
        out,
        dim=cfg.dim,
        dtype=dtype,
        model_id="synthetic",
        preprocessing=preprocessing,
        shard_rows=max(2 * chunk_pairs, 1024),
    )
    from tqdm.auto import tqdm

    codes = []
    bar = tqdm(total=cfg.n_pairs, desc="synth", unit="pair", disable=not progress)
    for chunk, start in enumerate(range(0, cfg.n_pairs, chunk_pairs)):
        n = min(chunk_pairs, cfg.n_pairs - start)
        img, txt, c_img, c_txt = generate_chunk(cfg, gt, chunk, n)
        pid = np.arange(start, start + n)
        img_names = [" ".join(gt.names[j] for j in c_img[i].indices) for i in range(n)]
        txt_names = [" ".join(gt.names[j] for j in c_txt[i].indices) for i in range(n)]
        if images:
            sources = [pics.image_name(p) for p in pid]
            for i, name in enumerate(sources):
                row = c_img[i]
                pics.render(row.indices, row.data, ranks, out / pics.IMAGE_DIR / name)
        else:
            sources = [f"synthetic://image/{p}" for p in pid]
        writer.append(img, "image", pair_id=pid, source=sources, text=img_names)
        writer.append(txt, "text", pair_id=pid, source=[f"synthetic://text/{p}" for p in pid], text=txt_names)
        codes += [c_img, c_txt]
        bar.update(n)
    bar.close()
    store = writer.close()
    gt.codes = sp.vstack(codes).tocsr()
    save_ground_truth(out, gt, cfg)
    write_vocabulary(out)
    return store


def save_ground_truth(root: Path, gt: GroundTruth, cfg: SynthConfig) -> None:
    import scipy.sparse as sp  # here, not at import: training never needs it

    d = Path(root) / GROUND_TRUTH_DIR
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "dictionary.npy", gt.dictionary_CD)
    partner = np.full(len(gt.kinds), -1)
    for i, t in gt.bridges:
        partner[i], partner[t] = t, i
    pq.write_table(
        pa.table(
            {
                "concept": np.arange(len(gt.kinds)),
                "kind": gt.kinds,
                "name": gt.names,
                "frequency": gt.frequency_C,
                "bridge": partner,
            }
        ),
        d / "concepts.parquet",
    )
    if gt.codes is not None:
        sp.save_npz(d / "codes.npz", gt.codes)
    write_json_atomic(d / "config.json", asdict(cfg))


def load_ground_truth(root: str | os.PathLike) -> GroundTruth:
    import scipy.sparse as sp  # here, not at import: training never needs it

    d = Path(root) / GROUND_TRUTH_DIR
    if not (d / "dictionary.npy").exists():
        raise MmsaeError(f"{root} has no planted ground truth (only `mmsae synth` stores do)")
    t = pq.read_table(d / "concepts.parquet")
    codes = sp.load_npz(d / "codes.npz").tocsr() if (d / "codes.npz").exists() else None
    bridges = []
    if "bridge" in t.column_names:
        partner = t.column("bridge").to_numpy()
        kinds = t.column("kind").to_pylist()
        bridges = [(int(i), int(partner[i])) for i in range(len(partner)) if partner[i] >= 0 and kinds[i] == "image"]
    return GroundTruth(
        np.load(d / "dictionary.npy"),
        t.column("kind").to_pylist(),
        t.column("name").to_pylist(),
        t.column("frequency").to_numpy(),
        codes,
        bridges,
    )


def recovery(W_dec_FD: np.ndarray, dictionary_CD: np.ndarray, threshold: float = 0.9) -> tuple[float, np.ndarray]:
    """Share of planted directions that some decoder row matches with cosine ≥ threshold.

    Returns (share, best cosine per planted concept).
    """
    best_C = decoder_cosines(W_dec_FD, dictionary_CD).max(axis=0)
    return float((best_C >= threshold).mean()), best_C


def _shared_idx(gt: GroundTruth) -> np.ndarray:
    return np.nonzero(np.array(gt.kinds) == "shared")[0]


def hallucination_set(cfg: SynthConfig, gt: GroundTruth, n: int, seed: int = 0, corrupt_fraction: float = 0.5):
    """Fresh labelled (image, caption) pairs, never in the store: matched ones, and corrupted ones
    whose caption has one object concept swapped for a shared concept absent from the image.

    Returns (img_ND, txt_ND, label_N (1 = corrupted), swapped_N2 (removed, added concept; -1 if none)).
    Only pairs with at least one shared concept are drawn, so every corruption has something to swap.
    """
    rng = np.random.default_rng([cfg.seed, 7, seed])
    shared = _shared_idx(gt)
    if len(shared) < 2:
        raise MmsaeError("planted hallucinations need at least two shared concepts")
    imgs, txts = [], []
    while sum(len(c) for c in imgs) < n:
        ci, ct = sample_codes(cfg, gt, 2 * n, rng)
        ok = (ct[:, shared] > 0).any(axis=1)
        imgs.append(ci[ok])
        txts.append(ct[ok])
    code_img, code_txt = np.concatenate(imgs)[:n], np.concatenate(txts)[:n].copy()
    label = (rng.random(n) < corrupt_fraction).astype(np.int64)
    swapped = np.full((n, 2), -1, dtype=np.int64)
    for i in np.nonzero(label)[0]:
        present = shared[code_txt[i, shared] > 0]
        absent = shared[(code_txt[i, shared] == 0) & (code_img[i, shared] == 0)]
        old, new = rng.choice(present), rng.choice(absent)
        code_txt[i, new], code_txt[i, old] = code_txt[i, old], 0.0
        swapped[i] = (old, new)
    img, _ = embed_codes(cfg, gt, code_img, "image", rng)
    txt, _ = embed_codes(cfg, gt, code_txt, "text", rng)
    return img, txt, label, swapped


def zero_shot_set(cfg: SynthConfig, gt: GroundTruth, n: int, n_classes: int = 20, seed: int = 0):
    """A synthetic zero-shot task: each image shows exactly one of the `n_classes` most frequent
    shared concepts (plus its usual image-only concepts); each class prompt is the text-side
    embedding of that concept alone, as "a photo of a {class}" would be.

    Returns (images_ND, labels_N, prompts_CD, class concept ids).
    """
    rng = np.random.default_rng([cfg.seed, 8, seed])
    shared = _shared_idx(gt)
    classes = shared[np.argsort(-gt.frequency_C[shared], kind="stable")[:n_classes]]
    code_img, _ = sample_codes(cfg, gt, n, rng)
    code_img[:, shared] = 0.0
    labels = rng.integers(0, len(classes), n)
    code_img[np.arange(n), classes[labels]] = rng.lognormal(0.0, cfg.magnitude_sigma, n)
    images, _ = embed_codes(cfg, gt, code_img, "image", rng)
    onehot = np.zeros((len(classes), cfg.n_concepts))
    onehot[np.arange(len(classes)), classes] = np.exp(cfg.magnitude_sigma**2 / 2)
    prompts, _ = embed_codes(cfg, gt, onehot, "text", rng, noise=False)
    return images, labels, prompts, classes


def fresh_pairs(cfg: SynthConfig, gt: GroundTruth, n: int, seed: int = 0):
    """New pairs from the same distribution as the store (held out by construction), with their raw
    codes: (img_ND, txt_ND, code_img_NC, code_txt_NC)."""
    rng = np.random.default_rng([cfg.seed, 9, seed])
    code_img, code_txt = sample_codes(cfg, gt, n, rng)
    img, _ = embed_codes(cfg, gt, code_img, "image", rng)
    txt, _ = embed_codes(cfg, gt, code_txt, "text", rng)
    return img, txt, code_img, code_txt


def has_ground_truth(root: str | os.PathLike) -> bool:
    """Whether a store carries planted ground truth (written by `mmsae synth`): the one test every
    command uses to decide between scoring against the truth and the real-data path."""
    d = Path(root) / GROUND_TRUTH_DIR
    return (d / "config.json").is_file() and (d / "dictionary.npy").is_file()


def synth_config_of(root: str | os.PathLike) -> SynthConfig:
    """The generator settings a synthetic store was written with."""
    import json

    path = Path(root) / GROUND_TRUTH_DIR / "config.json"
    if not path.exists():
        raise MmsaeError(f"{root} has no planted ground truth (only `mmsae synth` stores do)")
    return SynthConfig(**json.loads(path.read_text()))


def name_embeddings(root: str | os.PathLike, n_distractors: int | None = None) -> tuple[list[str], np.ndarray]:
    """The synthetic vocabulary: every planted concept's name with its name embedding (the text
    side of that concept alone, no noise), plus as many distractor terms (random directions with
    the text offset) as there are concepts. Deterministic from the store's config."""
    cfg = synth_config_of(root)
    gt = load_ground_truth(root)
    rng = np.random.default_rng([cfg.seed, 10])
    C = cfg.n_concepts
    onehot = np.eye(C) * np.exp(cfg.magnitude_sigma**2 / 2)
    named, _ = embed_codes(cfg, gt, onehot, "text", rng, noise=False)
    n_d = C if n_distractors is None else n_distractors
    off_img, off_txt = _offsets(cfg)
    scale = _signal_scale(cfg)
    raw = cfg.offset_norm * scale * off_txt + np.exp(cfg.magnitude_sigma**2 / 2) * unit_rows(
        rng.standard_normal((n_d, cfg.dim))
    )
    distract = unit_rows(raw).astype(np.float32)
    terms = list(gt.names) + [f"distractor-{i:04d}" for i in range(n_d)]
    return terms, np.concatenate([named, distract])


def write_vocabulary(root: str | os.PathLike) -> Path:
    """STORE/ground_truth/vocab.txt: the synthetic vocabulary (planted names and distractors), one a line."""
    terms, _ = name_embeddings(root)
    path = Path(root) / GROUND_TRUTH_DIR / "vocab.txt"
    path.write_text("\n".join(terms) + "\n")
    return path
