"""The evaluation's report: the JSON document, the console table and the SDR box plot.

The JSON written by `write_json` holds every figure (null where a metric is
undefined, e.g. a track whose vocals are silent throughout):

The JSON written by `write_json` holds every figure (null where a metric is
undefined, e.g. a track whose vocals are silent throughout):

    {
      "model": "saved_models/default",          # the model path scored
      "precision": "float32",                   # the model's arithmetic (or "mixed_bfloat16")
      "stft": {"sample_rate_hz": 8192, ...},    # the model's StftConfig
      "bss_eval": {"version": "v4", "window_seconds": 1.0, "hop_seconds": 1.0,
                   "aggregate": "median over windows, then median over tracks"},
      "methods": ["model", "mixture", "oracle"],
      "sources": ["vocals", "accompaniment"],
      "metrics": ["SDR", "SIR", "SAR", "ISR"],
      "tracks": {track name: {method: {source: {"SDR": dB, "SIR": dB,
                                                 "SAR": dB, "ISR": dB}}}},
      "median": {method: {source: {"SDR": dB, "SIR": dB, "SAR": dB, "ISR": dB}}},
      "seconds": {track name: duration},
      "failed": {track name: why},              # tracks that could not be scored, left out
      # with BSS Eval v3 (MIR-1K) only; per track, each source also holds
      # "SDR_v3", "SIR_v3", "SAR_v3" and "NSDR_v3":
      "bss_eval_v3": {"aggregate": "mean over tracks weighted by their length",
                      "global": {method: {source: {"GNSDR": dB, "GSIR": dB,
                                                   "GSAR": dB, "GSDR": dB}}}}
    }
"""

import dataclasses
import json
from typing import Dict, List, Optional

from keras_unet.core.files import atomic_path
from keras_unet.evaluation.scoring import (GLOBAL_METRICS, METRICS, SOURCES, V3_METRICS,
                                           WINDOW_SECONDS, global_v3, median_over_tracks)

PER_TRACK_ROWS = 30  # the table lists every track up to this many, else only the summaries


def report(model_path: str, stft_config, tracks: Dict[str, dict],
           seconds: Dict[str, float], precision: str,
           failed: Optional[Dict[str, str]] = None) -> dict:
    """The JSON document of the module docstring (with "bss_eval_v3" when the tracks hold it).

    Args:
        model_path: the model scored, as the user named it.
        stft_config: its `StftConfig`.
        tracks: scores per track, from `evaluate_tracks`.
        seconds: duration per track, from `evaluate_tracks`.
        precision: the model's resolved precision ("float32" or "mixed_bfloat16").
        failed: {track name: why} of the tracks left out.
    """
    methods = list(dict.fromkeys(method for scores in tracks.values() for method in scores))
    document = {
        "model": model_path,
        "precision": precision,
        "stft": dataclasses.asdict(stft_config),
        "bss_eval": {"version": "v4", "window_seconds": WINDOW_SECONDS,
                     "hop_seconds": WINDOW_SECONDS,
                     "aggregate": "median over windows, then median over tracks"},
        "methods": methods,
        "sources": list(SOURCES),
        "metrics": list(METRICS),
        "tracks": tracks,
        "median": median_over_tracks(tracks),
        "seconds": seconds,
        "failed": dict(failed or {}),
    }
    if any(V3_METRICS[0] in values for scores in tracks.values()
           for sources in scores.values() for values in sources.values()):
        document["bss_eval_v3"] = {"aggregate": "mean over tracks weighted by their length",
                                   "global": global_v3(tracks, seconds)}
    return document


def _number(value: Optional[float]) -> str:
    return "   n/a" if value is None else f"{value:6.2f}"


def format_table(document: dict) -> str:
    """The console table: a row per track (up to PER_TRACK_ROWS tracks), method and source,
    then the medians, then the BSS Eval v3 global figures when present."""
    n_tracks = len(document["tracks"])
    rows = list(document["tracks"].items()) if n_tracks <= PER_TRACK_ROWS else []
    rows.append((f"median of {n_tracks}", document["median"]))
    name_width = max(12, *(len(name) for name, _ in rows))
    method_width = max(len(method) for method in document["methods"])
    lines = _score_lines(rows, document["methods"], METRICS, name_width, method_width)
    lines.append("dB; BSS Eval v4, median over 1 s windows, then over tracks")
    if "bss_eval_v3" in document:
        lines += [""] + _score_lines([(f"global of {n_tracks}",
                                       document["bss_eval_v3"]["global"])],
                                     document["methods"], tuple(GLOBAL_METRICS), name_width,
                                     method_width)
        lines.append("dB; BSS Eval v3 on whole tracks, NSDR = SDR - SDR of the mixture, "
                     "means weighted by track length")
    return "\n".join(lines)


def _score_lines(rows, methods, metrics, name_width: int, method_width: int) -> List[str]:
    header = (f"{'track':<{name_width}}  {'method':<{method_width}}  {'source':<13}"
              + "".join(f"  {metric:>6}" for metric in metrics))
    lines = [header, "-" * len(header)]
    for name, scores in rows:
        if name == rows[-1][0] and len(rows) > 1:
            lines.append("-" * len(header))
        for method in methods:
            for source in SOURCES:
                values = scores[method][source]
                lines.append(f"{name:<{name_width}}  {method:<{method_width}}  {source:<13}"
                             + "".join(f"  {_number(values[metric])}" for metric in metrics))
    return lines


def write_json(path: str, document: dict) -> None:
    """Writes the report atomically (a temporary file in the same folder, then rename)."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2, allow_nan=False)
        file.write("\n")


def plot_sdr(path: str, document: dict) -> None:
    """Writes a PNG box plot of the per-track SDR, per source and method, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = document["methods"]
    figure, axes = plt.subplots(1, len(SOURCES), figsize=(4 + 1.5 * len(methods), 4.5),
                                sharey=True, squeeze=False)
    for axis, source in zip(axes[0], SOURCES):
        values = [[scores[method][source]["SDR"] for scores in document["tracks"].values()
                   if scores[method][source]["SDR"] is not None] for method in methods]
        axis.boxplot(values)
        for position, method_values in enumerate(values, start=1):  # the tracks, visible
            axis.plot([position] * len(method_values), method_values, "k.", alpha=0.5)
        axis.set_xticks(range(1, len(methods) + 1), methods, rotation=20)
        axis.set_title(source)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("SDR (dB), median over 1 s windows")
    n_tracks = len(document["tracks"])
    figure.suptitle(f"BSS Eval v4 SDR per track ({n_tracks} track{'s' * (n_tracks != 1)})")
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
    finally:
        plt.close(figure)
