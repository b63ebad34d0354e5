"""Seconds per stage of separating songs, added up over the songs (`separate.py --timings`)."""

import time

STAGES = ("startup_model_load", "read_resample", "model", "reconstruction", "writing")
"""The command's start-up and model load; the separator's reading and resampling, model
calls and reconstruction; the writing of the outputs (with the second read of the input)."""
SEPARATOR_STAGES = ("read_resample", "model", "reconstruction")


class Stopwatch:
    """Seconds spent in each of `STAGES`, given to a `Separator`, which adds its own.

    Attributes:
        seconds: {stage: seconds so far}.
    """

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)

    def add(self, stage: str, began: float) -> None:
        """Adds the time from `began` (a `time.perf_counter()` reading) to now to `stage`."""
        self.seconds[stage] += time.perf_counter() - began

    def separating(self) -> float:
        """Seconds in the separator's stages so far."""
        return sum(self.seconds[stage] for stage in SEPARATOR_STAGES)

    def report(self, n_files: int, total_seconds: float) -> str:
        """One line: each stage's seconds and the total."""
        parts = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in self.seconds.items())
        return f"timings ({n_files} file(s)): {parts}, total {total_seconds:.2f} s"
