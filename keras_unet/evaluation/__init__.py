"""Evaluation: a model's separation scored with BSS Eval, beside its floor and ceiling.

Tracks come from `pipelines.sources` (the bundled clip, MUSDB18, track
folders) and `pipelines.mir1k`, the same readers training uses.

    evaluation.py  the methods (model, mixture, oracles), scoring, the report
"""
