"""Separation quality as the field measures it: BSS Eval per track, then over tracks.

Every track is scored with BSS Eval v4 (`museval`): SDR, SIR, SAR and ISR of
the vocals and the accompaniment on 1 s windows (window = hop = the track's
rate), the median over a track's windows (silent windows, where the metrics
are undefined, are skipped), then the median over tracks, as SiSEC 2018
reports. Scores are always taken at the track's own (full) rate.

MIR-1K (`pipelines.reference_tracks.mir1k_loaders`) is scored the field's way
as well: BSS Eval v3 (`mir_eval.separation.bss_eval_sources`) on each whole
clip, the channel mean of each signal, with NSDR = SDR(estimate) -
SDR(mixture), and GNSDR / GSIR / GSAR / GSDR the means over clips weighted
by their length (Huang et al. 2014, Park et al. 2018), beside the v4 medians.
"""

import warnings
from typing import Dict, Optional

import numpy as np

SOURCES = ("vocals", "accompaniment")
METRICS = ("SDR", "SIR", "SAR", "ISR")
V3_METRICS = ("SDR_v3", "SIR_v3", "SAR_v3", "NSDR_v3")  # per track, with BSS Eval v3
GLOBAL_METRICS = {"GNSDR": "NSDR_v3", "GSIR": "SIR_v3", "GSAR": "SAR_v3", "GSDR": "SDR_v3"}
WINDOW_SECONDS = 1.0

Scores = Dict[str, Dict[str, Dict[str, Optional[float]]]]
"""{method: {source: {metric: dB, None where undefined}}}: one track's scores, or the medians."""


def _median(values: np.ndarray) -> Optional[float]:
    """Median of the finite values, None where there are none."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def score(references: Dict[str, np.ndarray], estimates: Dict[str, np.ndarray],
          sample_rate_hz: int) -> Dict[str, Dict[str, Optional[float]]]:
    """BSS Eval v4 of the vocals and accompaniment estimates of one track.

    Args:
        references: {source: (samples, channels)} the true sources, `SOURCES` keys.
        estimates: {source: (samples, channels)}; cut or zero-padded to the
            references' length.
        sample_rate_hz: the rate of both; the window and hop are 1 s.

    Returns:
        {source: {metric: dB}}: the median over the 1 s windows where the
        metric is defined, None where it is defined nowhere.
    """
    import museval

    window = int(WINDOW_SECONDS * sample_rate_hz)
    # (sources, samples, channels) each
    reference = np.stack([references[source] for source in SOURCES])
    estimate = np.stack([estimates[source] for source in SOURCES])
    with warnings.catch_warnings():  # silent windows give NaN with a RuntimeWarning
        warnings.simplefilter("ignore", RuntimeWarning)
        sdr, isr, sir, sar = museval.evaluate(reference, estimate, win=window, hop=window)
    per_metric = {"SDR": sdr, "SIR": sir, "SAR": sar, "ISR": isr}  # each (sources, windows)
    return {source: {metric: _median(np.asarray(per_metric[metric][i], np.float64))
                     for metric in METRICS}
            for i, source in enumerate(SOURCES)}


def _bss_eval_v3(references: np.ndarray, estimates: np.ndarray):
    """mir_eval's (SDR, SIR, SAR) of (sources, samples) estimates; None where one is silent."""
    import mir_eval

    try:
        with warnings.catch_warnings():  # deprecated in mir_eval 0.8, the version pinned
            warnings.simplefilter("ignore", FutureWarning)
            sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(
                references, estimates, compute_permutation=False)
    except ValueError:  # a silent estimate: BSS Eval is undefined
        return None
    return sdr, sir, sar


def _mono_sources(signals: Dict[str, np.ndarray], length: int) -> np.ndarray:
    """(sources, samples) float64: each source's channel mean, cut or padded to `length`."""
    rows = []
    for source in SOURCES:
        mono = np.asarray(signals[source], np.float64).mean(axis=1)[:length]
        rows.append(np.pad(mono, (0, length - len(mono))))
    return np.stack(rows)


def score_v3(references: Dict[str, np.ndarray], estimates: Dict[str, np.ndarray],
             mixture_sdr: np.ndarray) -> Dict[str, Dict[str, Optional[float]]]:
    """BSS Eval v3 of one track's estimates on the whole track, as MIR-1K papers report it.

    Args:
        references: {source: (samples, channels)}, the true sources.
        estimates: {source: (samples, channels)}.
        mixture_sdr: float (sources,), the v3 SDR of the mixture as the
            estimate of each source (`mixture_sdr_v3`).

    Returns:
        {source: {"SDR_v3", "SIR_v3", "SAR_v3", "NSDR_v3": dB, None where undefined}}.
    """
    length = len(references[SOURCES[0]])
    result = _bss_eval_v3(_mono_sources(references, length), _mono_sources(estimates, length))
    if result is None or mixture_sdr is None:
        return {source: dict.fromkeys(V3_METRICS) for source in SOURCES}
    sdr, sir, sar = result
    return {source: {"SDR_v3": float(sdr[i]), "SIR_v3": float(sir[i]), "SAR_v3": float(sar[i]),
                     "NSDR_v3": float(sdr[i] - mixture_sdr[i])}
            for i, source in enumerate(SOURCES)}


def mixture_sdr_v3(references: Dict[str, np.ndarray], mixture: np.ndarray):
    """float (sources,): BSS Eval v3 SDR of the unprocessed mixture for each source (or None)."""
    length = len(references[SOURCES[0]])
    result = _bss_eval_v3(_mono_sources(references, length),
                          _mono_sources({source: mixture for source in SOURCES}, length))
    return None if result is None else result[0]


def score_methods(references: Dict[str, np.ndarray],
                  estimates_by_method: Dict[str, Dict[str, np.ndarray]],
                  sample_rate_hz: int, mixture: Optional[np.ndarray] = None) -> Scores:
    """{method: {source: {metric: dB}}} of one track; runs in a worker process under --jobs.

    With `mixture` (samples, channels), each source also gets the BSS Eval v3
    metrics of `score_v3`.
    """
    scores = {method: score(references, estimates, sample_rate_hz)
              for method, estimates in estimates_by_method.items()}
    if mixture is not None:
        mixture_sdr = mixture_sdr_v3(references, mixture)
        for method, estimates in estimates_by_method.items():
            for source, values in score_v3(references, estimates, mixture_sdr).items():
                scores[method][source].update(values)
    return scores


def global_v3(tracks: Dict[str, Scores], seconds: Dict[str, float]) -> Scores:
    """{method: {source: {GNSDR, GSIR, GSAR, GSDR}}}: length-weighted means over tracks.

    Tracks where a metric is undefined (None) are left out of its mean.
    """
    methods = list(dict.fromkeys(method for scores in tracks.values() for method in scores))
    result = {}
    for method in methods:
        result[method] = {}
        for source in SOURCES:
            result[method][source] = {}
            for name, metric in GLOBAL_METRICS.items():
                pairs = [(scores[method][source].get(metric), seconds[track])
                         for track, scores in tracks.items() if method in scores]
                pairs = [(value, weight) for value, weight in pairs if value is not None]
                result[method][source][name] = (
                    float(np.average([v for v, _ in pairs], weights=[w for _, w in pairs]))
                    if pairs else None)
    return result


def median_over_tracks(tracks: Dict[str, Scores]) -> Scores:
    """{method: {source: {metric: median over tracks}}} of {track: {method: {source: {metric}}}}.

    Tracks where a metric is undefined (None) are left out of its median.
    """
    methods = list(dict.fromkeys(method for scores in tracks.values() for method in scores))
    return {method: {source: {metric: _median(np.array(
        [scores[method][source][metric] for scores in tracks.values()
         if method in scores and scores[method][source][metric] is not None], np.float64))
        for metric in METRICS} for source in SOURCES} for method in methods}
