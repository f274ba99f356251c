"""Encoders behind one small interface. Text encoders so far (used to embed vocabularies and
queries in the same space as a store); image backends come with the extraction issue."""

from mmsae.backends.base import TextEncoder, text_encoder_for

__all__ = ["TextEncoder", "text_encoder_for"]
