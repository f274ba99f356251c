"""SAELens folders load into mmsae and encode exactly as the sae-lens package does."""

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


@pytest.mark.parametrize(
    "kind,extra",
    [
        ("standard", {}),
        ("standard", {"apply_b_dec_to_input": False}),
        ("topk", {"k": 5}),
        ("topk", {"k": 5, "rescale_acts_by_decoder_norm": True}),
        ("jumprelu", {}),
    ],
)
def test_encode_matches_saelens(tmp_path, kind, extra):
    from sae_lens import SAE
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    cls, cfg_cls = {
        "standard": (StandardSAE, StandardSAEConfig),
        "topk": (TopKSAE, TopKSAEConfig),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig),
    }[kind]
    ref = _randomise(cls(cfg_cls(d_in=16, d_sae=48, **extra)))
    ref.save_model(tmp_path / "sl")
    ref = SAE.load_from_disk(tmp_path / "sl")
    ours = load_sae(tmp_path / "sl")
    x = torch.randn(32, 16)
    z_ref = ref.encode(x)
    z_ours = ours.encode(x)
    torch.testing.assert_close(z_ours, z_ref, rtol=1e-4, atol=1e-5)
    if extra.get("rescale_acts_by_decoder_norm"):
        # the decoder norms were folded in: same codes, unit-norm decoder rows
        torch.testing.assert_close(ours.W_dec.norm(dim=1), torch.ones(48))
    torch.testing.assert_close(ours.decode(z_ours), ref.decode(ref.encode(x)), rtol=1e-4, atol=1e-4)
