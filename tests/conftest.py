import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", message=".*Converting a tensor with requires_grad.*")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(os.environ.get("MMSAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the checkout (../shared/data); override with MMSAE_SHARED_DATA."""
    if not SHARED_DATA.exists():
        pytest.fail(f"shared data not found at {SHARED_DATA}; set MMSAE_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory):
    """A small synthetic paired store with ground truth (4,000 pairs, D=64, 96 concepts)."""
    from mmsae.data.synthetic import SynthConfig, write_synthetic

    root = tmp_path_factory.mktemp("synth") / "store"
    cfg = SynthConfig(dim=64, n_pairs=4000, n_shared=48, n_image=24, n_text=24, seed=3)
    write_synthetic(root, cfg)
    return root


@pytest.fixture
def rng():
    return np.random.default_rng(0)
