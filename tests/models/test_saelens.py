"""SAELens folders load into mmsae and encode exactly as the sae-lens package does, and mmsae SAEs
export to SAELens folders that the sae-lens package loads with the same codes and reconstructions."""

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens", reason="install the [saelens] extra to compare against SAELens")

from mmsae.models import load_sae  # noqa: E402


def _randomise(sae):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _name, p in sae.named_parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(0.2 + 0.1 * torch.rand(sae.threshold.shape, generator=g))
    return sae


_EXPECTED_CLASS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}
"""The mmsae architecture each SAELens one loads as."""


@pytest.mark.parametrize(
    "kind,extra",
    [
        ("standard", {}),
        ("standard", {"apply_b_dec_to_input": False}),
        ("topk", {"k": 5}),
        ("topk", {"k": 5, "rescale_acts_by_decoder_norm": True}),
        ("jumprelu", {}),
        ("jumprelu", {"apply_b_dec_to_input": False}),
        ("gated", {}),
        ("gated", {"apply_b_dec_to_input": False}),
    ],
)
def test_encode_matches_saelens(tmp_path, kind, extra):
    from sae_lens import SAE
    from sae_lens.saes.gated_sae import GatedSAE, GatedSAEConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    cls, cfg_cls = {
        "standard": (StandardSAE, StandardSAEConfig),
        "topk": (TopKSAE, TopKSAEConfig),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig),
        "gated": (GatedSAE, GatedSAEConfig),
    }[kind]
    ref = _randomise(cls(cfg_cls(d_in=16, d_sae=48, **extra)))
    ref.save_model(tmp_path / "sl")
    ref = SAE.load_from_disk(tmp_path / "sl")
    ours = load_sae(tmp_path / "sl")
    assert ours.architecture == _EXPECTED_CLASS[kind]
    x = torch.randn(32, 16)
    z_ref = ref.encode(x)
    z_ours = ours.encode(x)
    torch.testing.assert_close(z_ours, z_ref, rtol=1e-4, atol=1e-5)
    if extra.get("rescale_acts_by_decoder_norm"):
        # the decoder norms were folded in: same codes, unit-norm decoder rows
        torch.testing.assert_close(ours.W_dec.norm(dim=1), torch.ones(48))
    torch.testing.assert_close(ours.decode(z_ours), ref.decode(ref.encode(x)), rtol=1e-4, atol=1e-4)


def _trained_looking(arch, **cfg):
    """An mmsae SAE whose weights are far from their initialisation (perturbed, decoder rows back at
    unit norm, thresholds where some latents fire and others do not), so equal codes mean something."""
    from mmsae.models import build_sae

    sae = build_sae(arch, d_in=16, dict_size=48, **cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _name, p in sae.named_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        sae.normalize_decoder_()
        if arch in ("relu", "gated"):
            sae.b_enc.sub_(0.3)  # trained L1 SAEs keep most latents below zero
        if arch == "batchtopk":
            sae.threshold.fill_(0.4)  # what calibrate_ writes: one value for every latent
        if arch == "jumprelu":
            sae.log_threshold.copy_((0.1 + 0.5 * torch.rand(48, generator=g)).log())
    return sae.eval()


EXPORTABLE = [
    ("relu", {}, "standard"),
    ("topk", {"k": 5}, "topk"),
    ("matryoshka", {"k": 8, "ks": (4, 8)}, "topk"),
    ("batchtopk", {"k": 5}, "jumprelu"),
    ("jumprelu", {}, "jumprelu"),
    ("gated", {}, "gated"),
]


@pytest.mark.parametrize("arch,cfg,saelens_arch", EXPORTABLE)
def test_export_loads_in_saelens_with_the_same_codes(tmp_path, arch, cfg, saelens_arch):
    from sae_lens import SAE

    from mmsae.models.saelens import export_saelens

    sae = _trained_looking(arch, **cfg)
    export_saelens(sae, tmp_path / "sl")
    ref = SAE.load_from_disk(tmp_path / "sl")
    assert ref.cfg.architecture() == saelens_arch
    if saelens_arch == "topk":
        assert ref.cfg.k == sae.cfg.k  # matryoshka: the k its encode uses, not a nested one
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z_ours, z_ref = sae.encode(x), ref.encode(x)
        assert 0 < int((z_ours > 0).sum()) < z_ours.numel(), "some latents should fire and others not"
        torch.testing.assert_close(z_ref, z_ours, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ref.decode(z_ref), sae.decode(z_ours), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ref(x), sae(x).x_hat_BD, rtol=1e-5, atol=1e-5)

    # and back into mmsae: the architecture and config it was exported from, the same codes
    back = load_sae(tmp_path / "sl")
    assert back.architecture == arch and back.cfg == sae.cfg
    assert back.provenance["format"] == "saelens"
    with torch.no_grad():
        torch.testing.assert_close(back.encode(x), z_ours, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(back.decode(z_ours), sae.decode(z_ours), rtol=1e-5, atol=1e-5)


def test_export_keeps_the_provenance_and_names_the_embedding_model(tmp_path):
    import json

    from mmsae.models.saelens import export_saelens

    sae = _trained_looking("topk", k=5)
    sae.provenance = {"store": "/data/coco", "store_model_id": "open_clip:ViT-B-32", "seed": 7}
    export_saelens(sae, tmp_path / "sl")
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert cfg["metadata"]["model_name"] == "open_clip:ViT-B-32"
    assert cfg["metadata"]["dataset_path"] == "/data/coco"
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    back = load_sae(tmp_path / "sl")
    assert back.provenance["seed"] == 7 and back.provenance["store"] == "/data/coco"


def test_a_saelens_folder_edited_after_export_loads_as_saelens_reads_it(tmp_path):
    """The mmsae config in the metadata is a hint: a k changed in cfg.json is the k SAELens uses."""
    import json

    from sae_lens import SAE

    from mmsae.models.saelens import export_saelens

    sae = _trained_looking("matryoshka", k=8, ks=(4, 8))
    export_saelens(sae, tmp_path / "sl")
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    cfg["k"] = 3
    (tmp_path / "sl" / "cfg.json").write_text(json.dumps(cfg))
    x = torch.randn(32, 16)
    back = load_sae(tmp_path / "sl")
    assert back.cfg.k == 3
    with torch.no_grad():
        torch.testing.assert_close(back.encode(x), SAE.load_from_disk(tmp_path / "sl").encode(x), rtol=1e-5, atol=1e-5)


def test_jumprelu_thresholds_at_or_below_zero_load(tmp_path):
    """SAELens's ReLU(π)·H(π − θ) fires for π > 0 when θ ≤ 0; mmsae keeps θ = exp(log θ) > 0."""
    from sae_lens import SAE
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig

    ref = _randomise(JumpReLUSAE(JumpReLUSAEConfig(d_in=16, d_sae=48)))
    with torch.no_grad():
        ref.threshold[:10] = 0.0
        ref.threshold[10:20] = -0.5
    ref.save_model(tmp_path / "sl")
    ref = SAE.load_from_disk(tmp_path / "sl")
    ours = load_sae(tmp_path / "sl")
    assert ours.architecture == "jumprelu"
    assert torch.isfinite(ours.log_threshold).all()
    x = torch.randn(64, 16)
    with torch.no_grad():
        z_ref = ref.encode(x)
        assert (z_ref[:, :20] > 0).any()
        torch.testing.assert_close(ours.encode(x), z_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["vlsae", "multimodal"])
def test_paired_saes_are_refused(tmp_path, arch):
    from mmsae.errors import MmsaeError
    from mmsae.models import build_sae
    from mmsae.models.saelens import export_saelens

    sae = build_sae(arch, d_in=16, dict_size=48, k=5)
    with pytest.raises(MmsaeError) as info:
        export_saelens(sae, tmp_path / "sl")
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and arch in msg and "one input" in msg and "--format hub" in msg
    assert not (tmp_path / "sl").exists()
