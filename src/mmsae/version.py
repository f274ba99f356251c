"""The package version, in a module of its own so that code inside the package can read it without
importing the package face (`mmsae/__init__.py`), which exposes `load_sae` from the layers above."""

__version__ = "0.1.0"
