"""Other libraries' SAEs load into mmsae and encode and decode as the library does.

None of the libraries is a test dependency, so each test writes a checkpoint in the library's
layout itself (the layout each `mmsae.models.formats` module cites) with random weights, loads it
with `load_sae`, and compares codes and reconstructions against the library's encode and decode
transcribed here from its source (file and line at the commit named, the newest read):
sparsify 9d3b136, saev 3d73f1f, dictionary_learning 60ec6bf, overcomplete a1781af.
"""

from __future__ import annotations

import io
import json
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from mmsae.errors import SAELoadError
from mmsae.models import load_sae
from tests.helpers import one_line_error

D, F_, K = 16, 48, 5
"""Input width, latents, and k of the TopK variants."""


def randn(*shape: int, seed: int, scale: float = 0.3) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def x_BD() -> torch.Tensor:
    """Inputs off-centre, as embeddings are, so that a wrongly folded b_dec shows."""
    return randn(64, D, seed=99, scale=1.0) + 0.5


def assert_same(ours, z_ref_BF, x_hat_ref_BD, x_BD, live_rows: float = 1.0):
    """Codes and reconstructions equal the library's to 1e-5, and the codes are not trivially
    equal (some latents fire, not all)."""
    z_BF = ours.encode(x_BD)
    torch.testing.assert_close(z_BF, z_ref_BF, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.decode(z_BF), x_hat_ref_BD, rtol=1e-5, atol=1e-5)
    fired = (z_ref_BF != 0).float().mean()
    assert 0 < fired < 1, fired
    assert (z_ref_BF != 0).any(dim=1).float().mean() >= live_rows


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 600, msg
    return msg


# --- sparsify --------------------------------------------------------------------------------------


def sparsify_encode(x_BD, weight_FD, bias_F, b_dec_D, k):
    """sparsify/sparse_coder.py:189-196 (`x = x - self.b_dec` for autoencoders) and
    sparsify/fused_encoder.py:29-33 (relu(linear), then topk of the ReLU'd values), scattered dense."""
    pre_BF = F.relu(F.linear(x_BD - b_dec_D, weight_FD, bias_F))
    val_BK, idx_BK = torch.topk(pre_BF, k, dim=-1, sorted=False)
    return torch.zeros_like(pre_BF).scatter(-1, idx_BK, val_BK)


def sparsify_decode(z_BF, W_dec_FD, b_dec_D):
    """sparsify/sparse_coder.py:198-202: the top activations times their W_dec rows, plus b_dec."""
    return z_BF @ W_dec_FD + b_dec_D


def write_sparsify(folder, *, old_layout=False, dtype=torch.float32, **cfg_changes):
    """`SparseCoder.save_to_disk` (sparse_coder.py:167-177): save_model(self) + cfg.json with d_in."""
    folder.mkdir(parents=True)
    w = {
        "encoder.weight": randn(F_, D, seed=1),
        "encoder.bias": randn(F_, seed=2),
        "W_dec": randn(F_, D, seed=3),
        "b_dec": randn(D, seed=4),
    }
    if old_layout:  # June 2024: W_enc [D, F] and b_enc instead of the nn.Linear
        w = {
            "W_enc": w["encoder.weight"].T.contiguous(),
            "b_enc": w["encoder.bias"],
            "W_dec": w["W_dec"],
            "b_dec": w["b_dec"],
        }
    save_file({n: t.to(dtype) for n, t in w.items()}, str(folder / "sae.safetensors"))
    cfg = {
        "activation": "topk",
        "expansion_factor": 32,
        "normalize_decoder": True,
        "num_latents": F_,
        "k": K,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": D,
    } | cfg_changes
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return {n: t.to(dtype).float() for n, t in w.items()}


@pytest.mark.parametrize("old_layout,dtype", [(False, torch.float32), (True, torch.float32), (False, torch.bfloat16)])
def test_sparsify_topk_matches_sparsify(tmp_path, x_BD, old_layout, dtype):
    w = write_sparsify(tmp_path / "layers.6", old_layout=old_layout, dtype=dtype)
    weight_FD, bias_F = (w["W_enc"].T, w["b_enc"]) if old_layout else (w["encoder.weight"], w["encoder.bias"])
    ours = load_sae(tmp_path / "layers.6")
    assert ours.architecture == "topk" and ours.cfg.k == K and ours.provenance["format"] == "sparsify"
    z_BF = sparsify_encode(x_BD, weight_FD, bias_F, w["b_dec"], K)
    assert_same(ours, z_BF, sparsify_decode(z_BF, w["W_dec"], w["b_dec"]), x_BD)


def test_sparsify_run_folder(tmp_path, x_BD):
    """A run folder (`Trainer._checkpoint`: one subfolder per hookpoint beside the run's
    config.json) loads when it has one hookpoint, and names them when it has several."""
    run = tmp_path / "run"
    write_sparsify(run / "layers.3")
    (run / "config.json").write_text(json.dumps({"sae": {"k": K}, "batch_size": 32}))
    assert load_sae(run).provenance["source"] == str(run / "layers.3")
    write_sparsify(run / "layers.10")
    with pytest.raises(SAELoadError) as exc:
        load_sae(run)
    assert "2 SAEs" in one_line(exc) and "layers.3 (sparsify)" in str(exc.value) and "layers.10" in str(exc.value)


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"transcode": True}, "transcoder"),
        ({"skip_connection": True}, "skip connection"),
        ({"activation": "groupmax"}, "'groupmax' is not supported"),
        ({"k": F_ + 1}, "k must be"),
    ],
)
def test_sparsify_refuses_what_mmsae_cannot_compute(tmp_path, changes, needle):
    write_sparsify(tmp_path / "sae", **changes)
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path / "sae")
    assert needle in one_line(exc)


def test_sparsify_damaged(tmp_path):
    write_sparsify(tmp_path / "sae")
    weights = tmp_path / "sae" / "sae.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path / "sae")
    assert "sae.safetensors is damaged" in one_line(exc)


def test_sparsify_wrong_shapes_are_one_line(tmp_path):
    write_sparsify(tmp_path / "sae")
    t = {"encoder.weight": randn(F_, D, seed=1), "encoder.bias": randn(F_, seed=2), "W_dec": randn(F_, D + 1, seed=3)}
    save_file(t | {"b_dec": randn(D, seed=4)}, str(tmp_path / "sae" / "sae.safetensors"))
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path / "sae")
    assert "decoder weight has shape (48, 17)" in one_line(exc)


# --- saev ------------------------------------------------------------------------------------------


def saev_encode(x_BD, w, act, *, k=None, threshold=None, centred=False):
    """src/saev/nn/modeling.py:343-349 (h = x W_enc + b_enc; before 2025-09 x − b_dec) and the
    activations: ReluActivation (:150) relu; TopKActivation (:160-180) the k largest h of each
    row kept as they are; BatchTopKActivation in eval mode (:221-225) h > θ, or h > 0 if θ ≤ 0."""
    h_BF = (x_BD - w["b_dec"] if centred else x_BD) @ w["W_enc"] + w["b_enc"]
    if act == "Relu":
        return F.relu(h_BF)
    if act == "TopK":
        _, idx_BK = torch.topk(h_BF, min(k, h_BF.shape[1]), dim=-1, sorted=False)
        return torch.zeros_like(h_BF).scatter(-1, idx_BK, 1.0) * h_BF
    theta = float(threshold)
    return torch.where(h_BF > (theta if theta > 0 else 0.0), h_BF, torch.zeros_like(h_BF))


def saev_decode(f_BF, w):
    """modeling.py decode: f W_dec + b_dec (the last prefix, the whole dictionary)."""
    return f_BF @ w["W_dec"] + w["b_dec"]


def write_saev(path, header: dict, w: dict, extra: dict | None = None):
    """`dump` (modeling.py:549-575): one JSON header line, then torch.save(state_dict) into the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fd:
        fd.write((json.dumps(header) + "\n").encode())
        torch.save(w | (extra or {}), fd)


def saev_weights() -> dict[str, torch.Tensor]:
    return {
        "W_enc": randn(D, F_, seed=5),
        "b_enc": randn(F_, seed=6),
        "W_dec": randn(F_, D, seed=7),
        "b_dec": randn(D, seed=8),
    }


def saev_header(cls: str, schema: int = 5, **params) -> dict:
    activation = {"cls": cls, "params": {"key": cls.lower(), **params}}
    return {"schema": schema, "cfg": {"d_model": D, "d_sae": F_, "activation": activation}, "commit": "x", "lib": "x"}


@pytest.mark.parametrize(
    "act,extra,threshold",
    [
        ("Relu", {}, None),
        ("TopK", {"top_k": K}, None),
        ("BatchTopK", {"top_k": K}, 0.25),
        ("BatchTopK", {"top_k": K}, 0.0),
    ],
)
def test_saev_matches_saev(tmp_path, x_BD, act, extra, threshold):
    w = saev_weights()
    state = {} if threshold is None else {"activation.threshold": torch.tensor(threshold)}
    write_saev(tmp_path / "run" / "checkpoint" / "sae.pt", saev_header(act, **extra), w, state)
    ours = load_sae(tmp_path / "run")  # a run folder: checkpoint/sae.pt (src/saev/disk.py:145)
    assert ours.architecture == {"Relu": "relu", "TopK": "topk", "BatchTopK": "batchtopk"}[act]
    assert ours.provenance["saev_centred"] is False
    z_BF = saev_encode(x_BD, w, act, k=K, threshold=threshold)
    if act == "TopK":  # where all k are positive, saev's TopK and mmsae's agree (see formats/saev.py)
        assert (torch.topk(z_BF, K).values > 0).all()
    assert_same(ours, z_BF, saev_decode(z_BF, w), x_BD)


@pytest.mark.parametrize(
    "header,act",
    [
        # saev 0.1.0 (PyPI), saev/nn.py `dump`: the raw config, a ReLU SAE that subtracted b_dec
        ({"d_vit": D, "exp_factor": 3, "sparsity_coeff": 4e-4, "seed": 0}, "Relu"),
        # schema 1, first form: "cls" names the activation, cfg.top_k
        ({"schema": 1, "cls": "TopK", "cfg": {"d_vit": D, "exp_factor": 3, "top_k": K}, "commit": "x"}, "TopK"),
    ],
)
def test_saev_before_schema_2_is_centred(tmp_path, x_BD, header, act):
    w = saev_weights()
    write_saev(tmp_path / "sae.pt", header, w)
    ours = load_sae(tmp_path)
    assert ours.provenance["saev_centred"] is True
    z_BF = saev_encode(x_BD, w, act, k=K, centred=True)
    assert_same(ours, z_BF, saev_decode(z_BF, w), x_BD)
    # the centring matters for these weights: the uncentred codes differ
    assert not torch.allclose(saev_encode(x_BD, w, act, k=K), z_BF, atol=1e-3)


@pytest.mark.parametrize(
    "header,state,needle",
    [
        (saev_header("BatchTopK", top_k=K), {}, "depend on the other rows"),
        (saev_header("Relu", schema=6), {}, "newer saev (schema 6)"),
        (saev_header("Gated"), {}, "'Gated' is not supported"),
    ],
)
def test_saev_refusals(tmp_path, header, state, needle):
    write_saev(tmp_path / "sae.pt", header, saev_weights(), state)
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path)
    assert needle in one_line(exc)


def test_saev_damaged(tmp_path):
    write_saev(tmp_path / "sae.pt", saev_header("Relu"), saev_weights())
    data = (tmp_path / "sae.pt").read_bytes()
    (tmp_path / "sae.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path)
    assert "sae.pt is damaged" in one_line(exc)
    write_saev(tmp_path / "sae.pt", saev_header("Relu"), {"W_enc": randn(D, F_, seed=5)})
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path)
    assert "without tensor(s) b_enc, W_dec, b_dec" in one_line(exc)


# --- dictionary_learning ---------------------------------------------------------------------------


def dl_weights(kind: str) -> dict[str, torch.Tensor]:
    """Each class's state_dict names and shapes (dictionary.py:43-430, trainers/top_k.py:51-82,
    trainers/batch_top_k.py:17-35, trainers/matryoshka_batch_top_k.py:32-66). nn.Linear(F, D)
    stores its weight [D, F]."""
    enc = {"encoder.weight": randn(F_, D, seed=11), "encoder.bias": randn(F_, seed=12)}
    dec = {"decoder.weight": randn(D, F_, seed=13)}
    if kind == "AutoEncoder":  # decoder columns of norm ≈ 1.2, not 1: from_pretrained rescales them
        return enc | dec | {"bias": randn(D, seed=14)}
    if kind == "AutoEncoderNew":
        return enc | dec | {"decoder.bias": randn(D, seed=14)}
    if kind == "GatedAutoEncoder":
        return {
            "decoder_bias": randn(D, seed=14),
            "encoder.weight": enc["encoder.weight"],
            "r_mag": randn(F_, seed=15),
            "gate_bias": randn(F_, seed=16),
            "mag_bias": randn(F_, seed=17),
        } | dec
    plain = {
        "W_enc": randn(D, F_, seed=11),
        "b_enc": randn(F_, seed=12),
        "W_dec": randn(F_, D, seed=13),
        "b_dec": randn(D, seed=14),
    }
    if kind == "JumpReluAutoEncoder":
        return plain | {"threshold": 0.1 + 0.1 * torch.rand(F_, generator=torch.Generator().manual_seed(18))}
    topk = {"k": torch.tensor(K, dtype=torch.int), "threshold": torch.tensor(0.2)}
    if kind == "MatryoshkaBatchTopKSAE":
        return plain | topk | {"group_sizes": torch.tensor([16, 32])}
    return enc | dec | {"b_dec": randn(D, seed=14)} | topk  # AutoEncoderTopK, BatchTopKSAE


def dl_reference(kind: str, w: dict[str, torch.Tensor], x_BD: torch.Tensor):
    """(codes, reconstruction) as each class's encode and decode compute them."""
    if kind == "AutoEncoder":
        # from_pretrained(normalize_decoder=True) -> normalize_decoder (dictionary.py:103-126)
        enc_w, enc_b, dec_w = w["encoder.weight"], w["encoder.bias"], w["decoder.weight"]
        norms = dec_w.norm(dim=0)
        assert not torch.allclose(norms, torch.ones_like(norms))
        dec_w, enc_w, enc_b = dec_w / norms, enc_w * norms[:, None], enc_b * norms
        f = F.relu(F.linear(x_BD - w["bias"], enc_w, enc_b))  # encode, :64-65
        return f, F.linear(f, dec_w) + w["bias"]  # decode, :67-68
    if kind == "AutoEncoderNew":  # :408-412
        f = F.relu(F.linear(x_BD, w["encoder.weight"], w["encoder.bias"]))
        return f, F.linear(f, w["decoder.weight"], w["decoder.bias"])
    if kind == "GatedAutoEncoder":  # :228-257
        x_enc = F.linear(x_BD - w["decoder_bias"], w["encoder.weight"])
        f_gate = (x_enc + w["gate_bias"] > 0).float()
        f = f_gate * F.relu(w["r_mag"].exp() * x_enc + w["mag_bias"])
        return f, F.linear(f, w["decoder.weight"]) + w["decoder_bias"]
    if kind == "JumpReluAutoEncoder":  # :313-326, apply_b_dec_to_input = False
        pre = x_BD @ w["W_enc"] + w["b_enc"]
        f = F.relu(pre * (pre > w["threshold"]))
        return f, f @ w["W_dec"] + w["b_dec"]
    if kind == "MatryoshkaBatchTopKSAE":  # trainers/matryoshka_batch_top_k.py:71-88, use_threshold
        post = F.relu((x_BD - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
        f = post * (post > w["threshold"])
        return f, f @ w["W_dec"] + w["b_dec"]
    post = F.relu(F.linear(x_BD - w["b_dec"], w["encoder.weight"], w["encoder.bias"]))
    if kind == "AutoEncoderTopK":  # trainers/top_k.py:83-117, use_threshold=False by default
        top = post.topk(K, sorted=False, dim=-1)
        f = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
    else:  # BatchTopKSAE, trainers/batch_top_k.py:37-42, use_threshold=True by default
        f = post * (post > w["threshold"])
    return f, F.linear(f, w["decoder.weight"]) + w["b_dec"]


def write_dl(folder, kind: str, w: dict[str, torch.Tensor], trainer: dict | None = None):
    """training.py:179-187 (config.json = {"trainer": trainer.config, "buffer": ...}) and :264-266
    (ae.pt = the state dict, on CPU)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(w, folder / "ae.pt")
    trainer = {"dict_class": kind, "activation_dim": D, "dict_size": F_, "lm_name": "x"} if trainer is None else trainer
    (folder / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"d_submodule": D}}))


@pytest.mark.parametrize(
    "kind,arch",
    [
        ("AutoEncoder", "relu"),
        ("AutoEncoderNew", "relu"),
        ("GatedAutoEncoder", "gated"),
        ("JumpReluAutoEncoder", "jumprelu"),
        ("AutoEncoderTopK", "topk"),
        ("BatchTopKSAE", "batchtopk"),
        ("MatryoshkaBatchTopKSAE", "batchtopk"),
    ],
)
def test_dictionary_learning_matches_dictionary_learning(tmp_path, x_BD, kind, arch):
    w = dl_weights(kind)
    write_dl(tmp_path / "trainer_0", kind, w)
    ours = load_sae(tmp_path)  # a save_dir of one trainer_N
    assert ours.architecture == arch and ours.provenance["dict_class"] == kind
    z_BF, x_hat_BD = dl_reference(kind, w, x_BD)
    assert_same(ours, z_BF, x_hat_BD, x_BD, live_rows=0.9)
    if kind == "AutoEncoder":  # loaded as from_pretrained does: unit decoder rows, mmsae's convention
        torch.testing.assert_close(ours.W_dec.norm(dim=1), torch.ones(F_))


def test_dictionary_learning_early_topk(tmp_path, x_BD):
    """The 2024-07 AutoEncoderTopK: a `decoder` Parameter [F, D], k only in the config, and a
    trainer_class instead of a dict_class."""
    w = dl_weights("AutoEncoderTopK")
    old = {"encoder.weight": w["encoder.weight"], "encoder.bias": w["encoder.bias"], "b_dec": w["b_dec"]}
    old["decoder"] = w["decoder.weight"].T.contiguous()
    write_dl(tmp_path, "", old, trainer={"trainer_class": "TrainerTopK", "k": K})
    z_BF, x_hat_BD = dl_reference("AutoEncoderTopK", w, x_BD)
    assert_same(load_sae(tmp_path), z_BF, x_hat_BD, x_BD)


def test_dictionary_learning_jumprelu_threshold_at_or_below_zero(tmp_path, x_BD):
    """relu(π·H(π − θ)) with θ ≤ 0 is relu(π); mmsae's JumpReLU keeps θ > 0 (the smallest float32)."""
    w = dl_weights("JumpReluAutoEncoder")
    w["threshold"][:10] = torch.tensor([0.0, -1.0] * 5)
    write_dl(tmp_path, "JumpReluAutoEncoder", w)
    z_BF, x_hat_BD = dl_reference("JumpReluAutoEncoder", w, x_BD)
    assert_same(load_sae(tmp_path), z_BF, x_hat_BD, x_BD)


def test_dictionary_learning_refusals(tmp_path):
    cases = {
        "backup": (
            {"step": 10, "ae": dl_weights("AutoEncoder"), "optimizer": {}, "config": {}},
            "AutoEncoder",
            "training backup",
        ),
        "no-threshold": (
            {n: t for n, t in dl_weights("BatchTopKSAE").items() if n != "threshold"},
            "BatchTopKSAE",
            "rest of the batch",
        ),
        "crosscoder": (dl_weights("AutoEncoder"), "CrossCoder", "'CrossCoder' is not supported"),
        "missing": ({"bias": randn(D, seed=1)}, "AutoEncoder", "without tensor(s) encoder.weight, encoder.bias"),
    }
    for name, (w, kind, needle) in cases.items():
        write_dl(tmp_path / name, kind, w)
        with pytest.raises(SAELoadError) as exc:
            load_sae(tmp_path / name)
        assert needle in one_line(exc), name
    (tmp_path / "ambiguous").mkdir()
    torch.save(dl_weights("BatchTopKSAE"), tmp_path / "ambiguous" / "ae.pt")  # no config.json
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path / "ambiguous")
    assert "cannot tell AutoEncoderTopK from BatchTopKSAE" in one_line(exc)


def test_dictionary_learning_damaged(tmp_path):
    write_dl(tmp_path, "AutoEncoder", dl_weights("AutoEncoder"))
    (tmp_path / "ae.pt").write_bytes((tmp_path / "ae.pt").read_bytes()[:300])
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path)
    assert "ae.pt is damaged" in one_line(exc)


# --- overcomplete ----------------------------------------------------------------------------------
# overcomplete saves nothing itself; its tests do `torch.save(model, path)` (tests/sae/
# test_save_and_load.py:63), so the file is the pickled module tree. These stand-ins have
# overcomplete's module paths, class names and attributes (what a pickle records), registered in
# sys.modules only while a test saves; encode and decode below transcribe overcomplete's.


def overcomplete_name(module: str, name: str):
    """Give a stand-in the module path and name the real class or function has."""

    def named(obj):
        obj.__module__, obj.__qualname__ = module, name
        return obj

    return named


@overcomplete_name("overcomplete.sae.dictionary", "normalize_l2")
def _normalize_l2(x):
    """overcomplete/sae/dictionary.py:9-24."""
    return x / (torch.norm(x, p=2, dim=1, keepdim=True) + 1e-8)


@overcomplete_name("overcomplete.sae.dictionary", "DictionaryLayer")
class DictionaryLayer(nn.Module):
    """sae/dictionary.py:98-216: `_weights` [F, D], `multiplier` (a buffer, a Parameter with
    use_multiplier), `normalization`, `_fused_dictionary` set by eval()."""

    def __init__(self, use_multiplier: bool):
        super().__init__()
        self.in_dimensions, self.nb_concepts, self.device = D, F_, "cpu"
        self.normalization = _normalize_l2
        self._weights = nn.Parameter(randn(F_, D, seed=21, scale=1.0))
        if use_multiplier:
            self.multiplier = nn.Parameter(torch.tensor(0.4))
        else:
            self.register_buffer("multiplier", torch.tensor(0.0))
        self._fused_dictionary = None

    def get_dictionary(self):  # :183-200
        if self.training:
            with torch.no_grad():
                self._weights.data = self.normalization(self._weights)
            return self._weights * torch.exp(self.multiplier)
        return self._fused_dictionary

    def train(self, mode=True):  # :202-216
        if not mode:
            self._fused_dictionary = self.get_dictionary()
        return super().train(mode)


@overcomplete_name("overcomplete.sae.modules", "MLPEncoder")
class MLPEncoder(nn.Module):
    """sae/modules.py:49-146 as factory.py "linear" builds it (nb_blocks=0, norm_layer=Identity)."""

    def __init__(self):
        super().__init__()
        self.input_size, self.n_components, self.nb_blocks = D, F_, 0
        self.hidden_activation, self.output_activation, self.norm_layer = nn.ReLU, nn.ReLU, nn.Identity
        self.mlp_blocks = nn.ModuleList()
        self.final_block = nn.Sequential(nn.Linear(D, F_), nn.Identity())
        with torch.no_grad():
            self.final_block[0].weight.copy_(randn(F_, D, seed=22))
            self.final_block[0].bias.copy_(randn(F_, seed=23))
        self.final_activation = nn.ReLU()

    def forward(self, x):  # :117-146
        pre_z = self.final_block(x)
        return pre_z, self.final_activation(pre_z)


@overcomplete_name("overcomplete.sae.modules", "TieableEncoder")
class TieableEncoder(nn.Module):
    """sae/modules.py:469-537: relu(x Wᵀ + b), W its own or the dictionary's (tied)."""

    def __init__(self, tied_to):
        super().__init__()
        self.tied_to = tied_to
        self.register_parameter("weight", None)
        self.bias = nn.Parameter(randn(F_, seed=24))

    def forward(self, x):
        z_pre = x @ self.tied_to.get_dictionary().T + self.bias
        return z_pre, torch.relu(z_pre)


@overcomplete_name("overcomplete.sae.base", "SAE")
class SAE(nn.Module):
    """sae/base.py:64-160: encoder + dictionary; decode z @ get_dictionary(), no bias."""

    def __init__(self, tied=False, use_multiplier=False):
        super().__init__()
        self.nb_concepts, self.device = F_, "cpu"
        self.dictionary = DictionaryLayer(use_multiplier)
        self.encoder = TieableEncoder(self.dictionary) if tied else MLPEncoder()

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return z @ self.dictionary.get_dictionary()


@overcomplete_name("overcomplete.sae.topk_sae", "TopKSAE")
class TopKSAE(SAE):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.top_k = K

    def encode(self, x):  # sae/topk_sae.py:71-92
        pre, codes = self.encoder(x)
        top = torch.topk(codes, self.top_k, dim=-1)
        return pre, torch.zeros_like(codes).scatter(-1, top.indices, top.values)


@overcomplete_name("overcomplete.sae.jump_sae", "JumpSAE")
class JumpSAE(SAE):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.bandwidth = torch.tensor(1e-3)
        self.thresholds = nn.Parameter(
            torch.log(0.1 + 0.1 * torch.rand(F_, generator=torch.Generator().manual_seed(25)))
        )

    def encode(self, x):  # sae/jump_sae.py:275-303 and JumpReLU.forward :18-41 (zero where x < θ)
        pre, _ = self.encoder(x)
        codes = torch.relu(pre)
        return pre, codes * (codes >= torch.exp(self.thresholds))


@overcomplete_name("overcomplete.sae.batchtopk_sae", "BatchTopKSAE")
class BatchTopKSAE(SAE):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.top_k, self.threshold_momentum = 64, 0.9
        self.running_threshold = torch.tensor(0.15)

    def encode(self, x):  # sae/batchtopk_sae.py:51-91, eval mode
        pre, codes = self.encoder(x)
        return pre, codes * (codes >= self.running_threshold).float()


_OVERCOMPLETE_MODULES = {
    "overcomplete.sae.base": {"SAE": SAE},
    "overcomplete.sae.topk_sae": {"TopKSAE": TopKSAE},
    "overcomplete.sae.jump_sae": {"JumpSAE": JumpSAE},
    "overcomplete.sae.batchtopk_sae": {"BatchTopKSAE": BatchTopKSAE},
    "overcomplete.sae.modules": {"MLPEncoder": MLPEncoder, "TieableEncoder": TieableEncoder},
    "overcomplete.sae.dictionary": {"DictionaryLayer": DictionaryLayer, "normalize_l2": _normalize_l2},
}


def torch_save_as_overcomplete(obj, path, monkeypatch):
    """torch.save(obj) with the stand-ins named as overcomplete's classes, the way a pickle of
    the real ones names them."""
    monkeypatch.setitem(sys.modules, "overcomplete", types.ModuleType("overcomplete"))
    monkeypatch.setitem(sys.modules, "overcomplete.sae", types.ModuleType("overcomplete.sae"))
    for module, names in _OVERCOMPLETE_MODULES.items():
        fake = types.ModuleType(module)
        for name, obj_ in names.items():
            setattr(fake, name, obj_)
        monkeypatch.setitem(sys.modules, module, fake)
    torch.save(obj, path)


@pytest.mark.parametrize(
    "cls,kw,eval_mode,arch",
    [
        (SAE, {}, False, "relu"),
        (SAE, {"tied": True}, True, "relu"),
        (TopKSAE, {"use_multiplier": True}, False, "topk"),
        (TopKSAE, {}, True, "topk"),
        (JumpSAE, {}, True, "jumprelu"),
        (BatchTopKSAE, {}, True, "batchtopk"),
    ],
)
def test_overcomplete_matches_overcomplete(tmp_path, x_BD, monkeypatch, cls, kw, eval_mode, arch):
    sae = cls(**kw)
    sae.train(not eval_mode)  # eval() fuses the dictionary, which decode then uses
    torch_save_as_overcomplete(sae, tmp_path / "sae.pth", monkeypatch)
    monkeypatch.undo()  # mmsae must read the file without these classes (or overcomplete) importable
    ours = load_sae(tmp_path)
    assert ours.architecture == arch and ours.provenance["overcomplete_class"] == cls.__name__
    sae.eval()
    with torch.no_grad():
        _, z_BF = sae.encode(x_BD)
        x_hat_BD = sae.decode(z_BF)
    assert_same(ours, z_BF, x_hat_BD, x_BD, live_rows=0.9)
    assert float(ours.b_dec.detach().abs().max()) == 0.0  # overcomplete has no decoder bias


def test_overcomplete_file_runs_no_code(tmp_path):
    """A pickle that would call a function when unpickled (here os.makedirs) is read as a record
    of that call, not executed, and refused in one line."""
    import os

    marker = tmp_path / "created-by-the-pickle"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    (tmp_path / "sae").mkdir()
    torch.save(Payload(), tmp_path / "sae" / "model.pt")
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path / "sae")
    assert "holds a os.makedirs, not an overcomplete SAE" in one_line(exc)
    assert not marker.exists()


def test_overcomplete_refusals(tmp_path, monkeypatch):
    state_dict = SAE().state_dict()
    (tmp_path / "sd").mkdir()
    torch.save(state_dict, tmp_path / "sd" / "sae.pt")
    deep = SAE()
    deep.encoder.mlp_blocks.append(nn.Sequential(nn.Linear(D, D), nn.ReLU()))
    (tmp_path / "deep").mkdir()
    torch_save_as_overcomplete(deep, tmp_path / "deep" / "sae.pt", monkeypatch)
    (tmp_path / "two").mkdir()
    for name in ("a.pt", "b.pt"):
        torch_save_as_overcomplete(SAE(), tmp_path / "two" / name, monkeypatch)
    monkeypatch.undo()
    for name, needle in (
        ("sd", "is a state dict"),
        ("deep", "hidden blocks"),
        ("two", "several weight files (a.pt, b.pt)"),
    ):
        with pytest.raises(SAELoadError) as exc:
            load_sae(tmp_path / name)
        assert needle in one_line(exc), name


def test_overcomplete_damaged(tmp_path, monkeypatch):
    torch_save_as_overcomplete(TopKSAE(), tmp_path / "sae.pt", monkeypatch)
    monkeypatch.undo()
    data = (tmp_path / "sae.pt").read_bytes()
    (tmp_path / "sae.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path)
    assert "sae.pt is damaged" in one_line(exc)


# --- detection ---------------------------------------------------------------------------------------


def test_unknown_folder_says_what_it_found_and_what_is_accepted(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "weights.npz").write_bytes(b"\0")
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path)
    msg = one_line(exc)
    assert "found notes.txt, weights.npz" in msg
    for layout in ("mmsae", "SAELens", "sparsify", "saev", "dictionary_learning", "overcomplete"):
        assert layout in msg


def test_mmsae_folders_still_load_as_mmsae(tmp_path):
    from mmsae.models import build_sae, save_sae

    sae = build_sae("topk", d_in=D, dict_size=F_, k=K)
    save_sae(sae, tmp_path / "sae")
    (tmp_path / "sae" / "stray.pt").write_bytes(b"not a pickle")  # never read: model.safetensors decides
    loaded = load_sae(tmp_path / "sae")
    torch.testing.assert_close(loaded.W_enc, sae.W_enc)
    assert loaded.provenance.get("format") is None


def test_cli_info_on_a_sparsify_folder(tmp_path, capsys):
    from mmsae.cli.main import main

    write_sparsify(tmp_path / "layers.0")
    assert main(["info", str(tmp_path / "layers.0")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "topk" and info["k"] == K and info["dict_size"] == F_
    assert info["provenance"]["format"] == "sparsify"
    (tmp_path / "layers.0" / "cfg.json").write_text(json.dumps({"transcode": True, "k": K}))
    one_line_error(capsys, main(["info", str(tmp_path / "layers.0")]), "transcoder")


class Odd:
    """A class a weights file may not hold."""


def test_saev_file_is_read_with_weights_only(tmp_path):
    """A saev file whose state dict holds a Python object is refused by name, not unpickled."""
    path = tmp_path / "sae.pt"
    with open(path, "wb") as fd:
        fd.write((json.dumps(saev_header("Relu")) + "\n").encode())
        buf = io.BytesIO()
        torch.save({"W_enc": Odd()}, buf)
        fd.write(buf.getvalue())
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path)
    assert "holds a Python object" in one_line(exc) and "Odd" in str(exc.value)


def test_info_reads_a_saev_checkpoint(tmp_path, capsys):
    """A saev folder has no config.json or cfg.json: `mmsae info` still recognises it."""
    from mmsae.cli.main import main

    write_saev(tmp_path / "run" / "checkpoint" / "sae.pt", saev_header("TopK", top_k=K), saev_weights())
    assert main(["info", str(tmp_path / "run")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["architecture"] == "topk" and out["dict_size"] == F_


def test_overcomplete_never_hands_a_file_to_torchscript_or_the_legacy_loader(tmp_path, monkeypatch):
    """torch.load would pass a TorchScript archive to torch.jit.load (which runs its code) and a
    non-zip file to its tar loader: mmsae refuses both without calling either."""

    class Tiny(torch.nn.Module):
        def forward(self, x):
            return x

    torch.jit.save(torch.jit.script(Tiny()), tmp_path / "model.pt")

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load / torch.jit.load must not be called")

    monkeypatch.setattr(torch.jit, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path)
    assert "TorchScript files are not read" in one_line(exc)
    (tmp_path / "model.pt").write_bytes(b"\x80\x02legacy pickle, not a zip")
    with pytest.raises(SAELoadError) as exc:
        load_sae(tmp_path)
    assert "legacy format are not read" in one_line(exc)
