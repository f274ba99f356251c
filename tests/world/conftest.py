"""A world of 2,000 scenes, built once: the captions and masks tests read it, none changes it."""

import pytest

from mmsae.world import WorldConfig, build_world


@pytest.fixture(scope="session")
def world_2k():
    return build_world(WorldConfig(n_scenes=2000, seed=7, captions_per_scene=2))
