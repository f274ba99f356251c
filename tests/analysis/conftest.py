import pytest


@pytest.fixture(scope="session")
def small_multimodal(small_synth, tmp_path_factory):
    """A MultiModalSAE trained on the small planted store (F=256, k=8, 60 epochs; a few seconds)."""
    from mmsae.models import load_sae
    from mmsae.train.trainer import train

    out = tmp_path_factory.mktemp("mm") / "sae"
    train(small_synth, out, arch="multimodal", dict_size=256, k=8, epochs=60, batch_size=256, lr=3e-3, device="cpu",
          checkpoint_every=0, progress=False)
    return load_sae(out)
