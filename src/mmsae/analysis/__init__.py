"""Analyses that read a trained SAE plus a store: cross-modal structure, hallucination, steering."""
