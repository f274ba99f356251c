"""mmsae: sparse autoencoders on the embedding spaces of vision-language models."""

from mmsae.errors import MmsaeError
from mmsae.version import __version__

__all__ = ["MmsaeError", "__version__", "load_sae"]


def __getattr__(name: str):
    # `mmsae.load_sae` without importing torch on `import mmsae` (the CLI's start-up stays light)
    if name == "load_sae":
        from mmsae.models.io import load_sae

        return load_sae
    raise AttributeError(f"module 'mmsae' has no attribute {name!r}")
