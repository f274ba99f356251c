"""Pipelines: whole jobs built from the layers below (data, models, train, metrics, analysis,
explorer). `demo` and `demo_text` run everything on built-in or real data, `compare` trains the
multimodal comparison, `report` writes one HTML file for a run folder. Nothing below imports them.
"""
