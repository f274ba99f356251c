"""Metrics as pure functions, streaming accumulators, and store evaluation."""

from mmsae.metrics.accumulate import MetricAccumulator
from mmsae.metrics.evaluate import EvalResult, evaluate_batches, evaluate_store
from mmsae.metrics.reconstruction import cosine, fvu, fvu_per_sample, nmae, r2_global
from mmsae.metrics.sparsity import dead_fraction, dense_fraction, energy, frequency, l0, l0_fraction_zero

__all__ = [
    "fvu",
    "fvu_per_sample",
    "r2_global",
    "nmae",
    "cosine",
    "l0",
    "l0_fraction_zero",
    "frequency",
    "energy",
    "dead_fraction",
    "dense_fraction",
    "MetricAccumulator",
    "EvalResult",
    "evaluate_batches",
    "evaluate_store",
]
