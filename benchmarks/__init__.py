"""Benchmarks: speed, memory and separation figures, run from the repository root.

    python -m benchmarks.model      model throughput against the machine's ceiling
    python -m benchmarks.pipeline   input pipeline throughput against a training step
    python benchmarks/separate.py   separate.py end to end: time and peak memory
    python benchmarks/full_band.py  full-band separation against the naive baseline
"""
