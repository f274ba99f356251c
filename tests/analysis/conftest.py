import pytest


@pytest.fixture(scope="session")
def small_multimodal(small_synth, tmp_path_factory):
    """A MultiModalSAE trained on the small planted store (F=256, k=8, 60 epochs; a few seconds)."""
    from mmsae.models import load_sae
    from mmsae.train.trainer import train

    out = tmp_path_factory.mktemp("mm") / "sae"
    train(
        small_synth,
        out,
        arch="multimodal",
        dict_size=256,
        k=8,
        epochs=60,
        batch_size=256,
        lr=3e-3,
        device="cpu",
        checkpoint_every=0,
        progress=False,
    )
    return load_sae(out)


@pytest.fixture(scope="session")
def bridge_synth(tmp_path_factory):
    """Planted pairs with 8 bridges (D=64, 4,000 pairs, 48 shared + 24 image + 24 text concepts) and a
    pooled TopK SAE trained on them (F=256, k=8, 30 epochs)."""
    from mmsae.data.synthetic import SynthConfig, write_synthetic
    from mmsae.models import load_sae
    from mmsae.train.trainer import train

    root = tmp_path_factory.mktemp("bridges")
    cfg = SynthConfig(dim=64, n_pairs=4000, n_shared=48, n_image=24, n_text=24, seed=3, n_bridges=8)
    store = write_synthetic(root / "store", cfg)
    train(
        store,
        root / "sae",
        arch="topk",
        dict_size=256,
        k=8,
        epochs=30,
        batch_size=256,
        lr=3e-3,
        device="cpu",
        checkpoint_every=0,
        progress=False,
    )
    return store, load_sae(root / "sae")


def best_latents(W_dec, dictionary_CD):
    """For each planted concept: (latent with the highest decoder cosine, that cosine)."""
    from mmsae.vectors import decoder_cosines

    cos = decoder_cosines(W_dec, dictionary_CD)
    return cos.argmax(axis=0), cos.max(axis=0)
