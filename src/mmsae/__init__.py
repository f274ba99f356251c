"""mmsae: sparse autoencoders on the embedding spaces of vision-language models."""

__version__ = "0.1.0"

from mmsae.errors import MmsaeError  # noqa: E402

__all__ = ["MmsaeError", "__version__"]
