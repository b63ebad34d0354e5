"""Evaluation: a model's separation scored with BSS Eval, beside its floor and ceiling.

Tracks come from `pipelines.reference_tracks` (the bundled clip, MUSDB18,
track folders, MIR-1K), which reads them through the same stem order and
readers as training's `pipelines.sources`.

    estimates.py  the methods: the model, the mixture (floor), the oracles (ceilings)
    scoring.py    BSS Eval v4 per track (v3 for MIR-1K), medians and global figures
    run.py        every track through every method, scored in worker processes
    report.py     the JSON document, the console table, the SDR box plot
"""
