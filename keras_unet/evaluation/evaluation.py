"""Separation quality as the field measures it, beside its floor and ceiling.

Every track is scored with BSS Eval v4 (`museval`): SDR, SIR, SAR and ISR of
the vocals and the accompaniment on 1 s windows (window = hop = the track's
rate), the median over a track's windows (silent windows, where the metrics
are undefined, are skipped), then the median over tracks, as SiSEC 2018
reports. Scores are always taken at the track's own (full) rate.

Methods scored on the same tracks, in the same run:

- "model": the network, through `Separator` (the code of `separate.py`).
- "mixture": half the mixture as the estimate of each source; the floor.
- "oracle": the ideal ratio mask |Y| / (|Y| + |A|) from the true vocals Y
  and accompaniment A at the model's own STFT settings, applied to the
  mixture by the same reconstruction as the model's mask; the ceiling of
  any mask this model could predict.
- "oracle-full-rate" (optional): the ideal ratio mask computed at the
  track's own rate, on the grid where the model's mask is applied; the
  ceiling of magnitude masking on that grid.

MIR-1K (`mir1k_loaders`) is scored the field's way as well: BSS Eval v3
(`mir_eval.separation.bss_eval_sources`) on each whole clip, the channel
mean of each signal, with NSDR = SDR(estimate) - SDR(mixture), and
GNSDR / GSIR / GSAR / GSDR the means over clips weighted by their length
(Huang et al. 2014, Park et al. 2018), beside the v4 medians.

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

This module imports TensorFlow (`keras_unet.core.transforms`,
`keras_unet.separation.full_band`) only inside the functions that need it, so the
worker processes of `evaluate_tracks`, which only score, start without it.
"""

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import multiprocessing
import os
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from keras_unet.core.audio_io import AudioError, read_audio, resample, song_name
from keras_unet.core.config import DataConfig
from keras_unet.core.files import atomic_path
from pipelines import mir1k

SOURCES = ("vocals", "accompaniment")
METRICS = ("SDR", "SIR", "SAR", "ISR")
V3_METRICS = ("SDR_v3", "SIR_v3", "SAR_v3", "NSDR_v3")  # per track, with BSS Eval v3
GLOBAL_METRICS = {"GNSDR": "NSDR_v3", "GSIR": "SIR_v3", "GSAR": "SAR_v3", "GSDR": "SDR_v3"}
PER_TRACK_ROWS = 30  # the table lists every track up to this many, else only the summaries
WINDOW_SECONDS = 1.0
MIXTURE_FILE = "mixture.wav"
SOURCE_FILES = {"vocals": "vocals.wav", "accompaniment": "accompaniment.wav"}
SUBSETS = ("train", "test")
_BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

Scores = Dict[str, Dict[str, Dict[str, Optional[float]]]]
"""{method: {source: {metric: dB, None where undefined}}}: one track's scores, or the medians."""

# Streams of a MUSDB18 `.stem.mp4`: 0 mixture, 1 drums, 2 bass, 3 other, 4 vocals.
_STEM_MIXTURE, _STEM_VOCALS, _STEM_ACCOMPANIMENT = 0, 4, (1, 2, 3)


class TrackError(ValueError):
    """A track folder or dataset cannot be evaluated; the message names it and why."""


@dataclasses.dataclass(frozen=True)
class Track:
    """One song with its true sources, at its own rate.

    Args:
        name: the name reported in the table and the JSON.
        mixture: float32 (samples, channels).
        vocals: float32 (samples, channels), the true vocals.
        accompaniment: float32 (samples, channels), the true accompaniment.
        sample_rate_hz: the rate of all three.
    """

    name: str
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate_hz: int

    @property
    def references(self) -> Dict[str, np.ndarray]:
        """{source: float32 (samples, channels)}, the true sources."""
        return {"vocals": self.vocals, "accompaniment": self.accompaniment}


# === Tracks ===

def bundled_clip_name() -> str:
    """The bundled clip's song name ("The Easton Ellises - Falcon 69")."""
    import stempeg

    return song_name(stempeg.example_stem_path())


def bundled_clip() -> Track:
    """The MUSDB18 clip stempeg ships (about 6 s, 44.1 kHz stereo), at its full rate.

    The accompaniment is drums + bass + other.
    """
    import stempeg

    stems, rate = stempeg.read_stems(stempeg.example_stem_path(),
                                     dtype=np.float32)  # (5, samples, 2)
    return Track(name=bundled_clip_name(), mixture=stems[_STEM_MIXTURE],
                 vocals=stems[_STEM_VOCALS],
                 accompaniment=stems[list(_STEM_ACCOMPANIMENT)].sum(axis=0),
                 sample_rate_hz=int(rate))


def track_folders(root: str) -> List[str]:
    """The track folders under `root`, sorted, each checked for its files.

    Every subfolder is a track and must hold `mixture.wav` and `vocals.wav`
    (`accompaniment.wav` is optional).

    Raises:
        TrackError: `root` is missing or not a folder, holds no folders, or a
            track folder lacks a required file.
    """
    if not os.path.isdir(root):
        raise TrackError(f"--tracks {root}: no such folder")
    folders = sorted(os.path.join(root, name) for name in os.listdir(root)
                     if os.path.isdir(os.path.join(root, name)))
    if not folders:
        raise TrackError(f"--tracks {root}: holds no track folders "
                         f"(expected <track>/{MIXTURE_FILE} and <track>/vocals.wav)")
    for folder in folders:
        for required in (MIXTURE_FILE, SOURCE_FILES["vocals"]):
            if not os.path.isfile(os.path.join(folder, required)):
                raise TrackError(f"{os.path.join(folder, required)}: no such file")
    return folders


def load_track_folder(folder: str) -> Track:
    """Reads `mixture.wav`, `vocals.wav` and `accompaniment.wav` (else mixture - vocals).

    Files of different lengths are cut to the shortest.

    Raises:
        AudioError: a file cannot be read.
        TrackError: the files differ in sample rate or channel count.
    """
    paths = {"mixture": os.path.join(folder, MIXTURE_FILE),
             "vocals": os.path.join(folder, SOURCE_FILES["vocals"])}
    accompaniment_path = os.path.join(folder, SOURCE_FILES["accompaniment"])
    if os.path.exists(accompaniment_path):
        paths["accompaniment"] = accompaniment_path
    audio = {part: read_audio(path) for part, path in paths.items()}
    rate, channels = audio["mixture"][1], audio["mixture"][0].shape[1]
    for part, (samples, part_rate) in audio.items():
        if part_rate != rate or samples.shape[1] != channels:
            raise TrackError(f"{paths[part]}: {part_rate} Hz x {samples.shape[1]} channels, "
                             f"but {MIXTURE_FILE} is {rate} Hz x {channels} channels")
    length = min(samples.shape[0] for samples, _ in audio.values())
    mixture, vocals = audio["mixture"][0][:length], audio["vocals"][0][:length]
    if "accompaniment" in audio:
        accompaniment = audio["accompaniment"][0][:length]
    else:
        accompaniment = mixture - vocals
    return Track(name=os.path.basename(os.path.normpath(folder)), mixture=mixture,
                 vocals=vocals, accompaniment=accompaniment, sample_rate_hz=rate)


def _musdb_track(track) -> Track:
    """Reads a `musdb` track (raises TrackError naming it when it cannot be decoded)."""
    try:
        return Track(name=track.name, mixture=track.audio.astype(np.float32),
                     vocals=track.targets["vocals"].audio.astype(np.float32),
                     accompaniment=track.targets["accompaniment"].audio.astype(np.float32),
                     sample_rate_hz=int(track.rate))
    except Exception as error:  # musdb and ffmpeg fail with many exception types
        reason = (str(error).strip() or type(error).__name__).splitlines()[-1][:200]
        raise TrackError(f"{track.path}: cannot read ({reason})") from None


def track_loaders(tracks_dir: Optional[str] = None, musdb_root: Optional[str] = None,
                  subset: str = "test", is_wav: bool = False
                  ) -> List[Tuple[str, Callable[[], Track]]]:
    """What to evaluate, as (name, loader) pairs; each loader reads one track when called.

    Only names and files are checked here; audio is read one track at a
    time, so memory does not grow with the size of the test set.

    Args:
        tracks_dir: a folder of track folders (see `track_folders`).
        musdb_root: a MUSDB18 root (MUSDB18-HQ with `is_wav`).
        subset: the MUSDB18 subset, "train" or "test".
        is_wav: `musdb_root` holds MUSDB18-HQ WAV folders.
        With neither `tracks_dir` nor `musdb_root`: the bundled clip.

    Raises:
        TrackError: a missing or empty folder or subset, a track lacking a file.
    """
    if tracks_dir is not None and musdb_root is not None:
        raise TrackError("--tracks and --musdb-root: give one of them, not both")
    if tracks_dir is not None:
        return [(os.path.basename(folder), functools.partial(load_track_folder, folder))
                for folder in track_folders(tracks_dir)]
    if musdb_root is not None:
        if subset not in SUBSETS:
            raise TrackError(f"--subset {subset}: must be one of {SUBSETS}")
        if not os.path.isdir(musdb_root):
            raise TrackError(f"--musdb-root {musdb_root}: no such folder")
        import musdb

        database = musdb.DB(root=musdb_root, subsets=[subset], is_wav=is_wav)
        if not database.tracks:
            kind = "MUSDB18-HQ WAV folders" if is_wav else ".stem.mp4 files (add --is-wav for HQ)"
            raise TrackError(f"--musdb-root {musdb_root}: no {kind} in {subset}/")
        return [(track.name, functools.partial(_musdb_track, track))
                for track in database.tracks]
    return [(bundled_clip_name(), bundled_clip)]


def mir1k_track(clip: mir1k.Clip) -> Track:
    """One MIR-1K clip: vocals = right channel, accompaniment = left, mixture = their sum.

    Raises:
        TrackError: the clip cannot be read or is not stereo.
    """
    try:
        vocals, accompaniment, rate = mir1k.read_clip(clip.path)
    except mir1k.Mir1kError as error:
        raise TrackError(str(error)) from None
    return Track(name=clip.name, mixture=vocals + accompaniment, vocals=vocals,
                 accompaniment=accompaniment, sample_rate_hz=rate)


def mir1k_loaders(root: str, subset: str = "test",
                  validation_share: float = DataConfig.validation_share
                  ) -> List[Tuple[str, Callable[[], Track]]]:
    """MIR-1K's clips of a subset (standard split by singer) as (name, loader) pairs.

    Args:
        root: the unzipped MIR-1K folder or its `Wavfile/` folder.
        subset: "test" (the 17 singers other than abjones and amy), "train"
            (abjones and amy), or "validation": the songs of "train" that
            training with `validation_share` holds out
            (`pipelines.mir1k.validation_clips`).
        validation_share: see `subset`; a model's own is in its config.

    Raises:
        TrackError: no such folder, or no clip of the subset in it.
    """
    try:
        clips = (mir1k.validation_clips(root, validation_share) if subset == "validation"
                 else mir1k.list_clips(root, subset))
    except mir1k.Mir1kError as error:
        raise TrackError(f"--mir1k-root {error}") from None
    return [(clip.name, functools.partial(mir1k_track, clip)) for clip in clips]


# === Baselines ===

def mixture_estimates(track: Track) -> Dict[str, np.ndarray]:
    """Half the mixture as the estimate of each source (the lower bound)."""
    half = 0.5 * track.mixture
    return {source: half for source in SOURCES}


def ideal_ratio_mask(source_magnitude: np.ndarray, other_magnitude: np.ndarray) -> np.ndarray:
    """|S| / (|S| + |O|), 0 where both are 0; any shape, values in [0, 1]."""
    total = source_magnitude + other_magnitude
    return np.divide(source_magnitude, total, out=np.zeros_like(total), where=total > 0)


def _channels_first(samples: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(samples, np.float32).T)  # (channels, samples)


def _spectrogram(samples: np.ndarray, stft_config):
    """complex64 (channels, bins, frames) of float32 (samples, channels)."""
    from keras_unet.core import transforms

    return transforms.stft(_channels_first(samples), stft_config)


def _masked_vocals(mask: np.ndarray, mix_spectrogram, stft_config, length: int) -> np.ndarray:
    """mask * |X| with the phase of X, as float32 (samples, channels)."""
    from keras_unet.core import transforms

    vocals = transforms.masked_waveform(mask.astype(np.float32), mix_spectrogram, stft_config,
                                        length)  # (channels, samples)
    return np.asarray(vocals).T


def oracle_estimates(track: Track, stft_config) -> Dict[str, np.ndarray]:
    """The ideal ratio mask at the model's STFT settings, applied as the model's mask is.

    The mixture and the true sources are resampled to the model's rate and
    the mask |Y| / (|Y| + |A|) is computed there per channel, on the grid
    where the model predicts its mask. From there on it follows the model's
    path, `keras_unet.separation.full_band.full_band_vocals`: applied at the model's
    rate and resampled up, and carried onto the track's own STFT grid for
    what that rate cannot hold, extended above the model's band by the same
    rule. The accompaniment is the mixture minus the vocals, as the model's
    is. So the only difference from the model is the mask.

    Args:
        track: the song with its true sources.
        stft_config: the model's `StftConfig`.

    Returns:
        {source: float32 (samples, channels)} at the track's rate.
    """
    from keras_unet.separation.full_band import full_band_vocals  # TensorFlow: not in workers

    rate, model_rate = track.sample_rate_hz, stft_config.sample_rate_hz
    vocals, accompaniment = (_spectrogram(resample(part, rate, model_rate), stft_config)
                             for part in (track.vocals, track.accompaniment))
    model_mask = ideal_ratio_mask(np.abs(vocals.numpy()), np.abs(accompaniment.numpy()))
    vocals = full_band_vocals(track.mixture, rate, model_mask.astype(np.float32), stft_config)
    return {"vocals": vocals, "accompaniment": track.mixture - vocals}


def oracle_full_rate_estimates(track: Track, stft_config) -> Dict[str, np.ndarray]:
    """The ideal ratio mask computed on the full-rate grid the model's mask is applied on.

    Same grid (`keras_unet.separation.full_band.full_rate_stft_config`) and synthesis as
    `oracle_estimates`, but the mask comes from the full-rate true sources,
    so nothing is lost to the model's rate or to the mapping: the ceiling of
    magnitude masking on that grid.

    Returns:
        {source: float32 (samples, channels)}; accompaniment = mixture - vocals.
    """
    from keras_unet.separation.full_band import full_rate_stft_config  # TensorFlow: not in workers

    config = full_rate_stft_config(track.sample_rate_hz, stft_config)
    mixture, vocals, accompaniment = (
        _spectrogram(part, config) for part in (track.mixture, track.vocals, track.accompaniment))
    mask = ideal_ratio_mask(np.abs(vocals.numpy()), np.abs(accompaniment.numpy()))
    vocals = _masked_vocals(mask, mixture, config, len(track.mixture))
    return {"vocals": vocals, "accompaniment": track.mixture - vocals}


def model_estimates(separator, track: Track) -> Dict[str, np.ndarray]:
    """The model's estimates through a `Separator` (the code of separate.py)."""
    vocals, accompaniment = separator.separate(track.mixture, track.sample_rate_hz)
    return {"vocals": vocals, "accompaniment": accompaniment}


def estimators(separator, stft_config, oracle_full_rate: bool = False
               ) -> Dict[str, Callable[[Track], Dict[str, np.ndarray]]]:
    """{method: function(track) -> {source: (samples, channels)}} in the table's order.

    Args:
        separator: a `Separator` of the model, or None to leave "model" out.
        stft_config: the model's `StftConfig` (for the oracle).
        oracle_full_rate: add "oracle-full-rate".
    """
    methods = {}
    if separator is not None:
        methods["model"] = functools.partial(model_estimates, separator)
    methods["mixture"] = mixture_estimates
    methods["oracle"] = functools.partial(oracle_estimates, stft_config=stft_config)
    if oracle_full_rate:
        methods["oracle-full-rate"] = functools.partial(oracle_full_rate_estimates,
                                                        stft_config=stft_config)
    return methods


# === Scoring ===

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


@contextlib.contextmanager
def _single_threaded_blas():
    """Environment under which spawned workers start with one BLAS/OpenMP thread each.

    BSS Eval is dominated by linear solves; `jobs` processes each running a
    multithreaded BLAS would oversubscribe the cores and run slower than one.
    The variables are read when a worker starts, so they stay set while the
    pool lives, and are restored afterwards.
    """
    saved = {name: os.environ.get(name) for name in _BLAS_THREAD_VARIABLES}
    os.environ.update({name: "1" for name in _BLAS_THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def _failure(error: Exception) -> str:
    """Why a track failed, in one line: the message of our own errors, else the type too."""
    text = str(error).strip()
    line = text.splitlines()[-1][:200] if text else ""
    if isinstance(error, (TrackError, AudioError)) and line:  # they say why
        return line
    return f"evaluation failed ({type(error).__name__}{': ' + line if line else ''})"


def evaluate_tracks(loaders: List[Tuple[str, Callable[[], Track]]],
                    estimators: Dict[str, Callable[[Track], Dict[str, np.ndarray]]],
                    jobs: int = 1, progress: Optional[bool] = None,
                    bss_eval_v3: bool = False
                    ) -> Tuple[Dict[str, dict], Dict[str, float], Dict[str, str]]:
    """Estimates every track with every method and scores them.

    Estimation (the model, the baselines) runs here, one track at a time;
    with `jobs > 1` the BSS Eval scoring, the slow part, runs in `jobs`
    worker processes (spawned, so a model in this process is never forked),
    with at most `2 * jobs` tracks waiting for them. A track that cannot be
    read, estimated or scored is left out and named in the failures, so one
    broken file does not cost the scores of the others.

    Args:
        loaders: (name, loader) pairs from `track_loaders`.
        estimators: {method: function(track) -> {source: (samples, channels)}}.
        jobs: scoring processes; 1 scores in this process.
        progress: show a tqdm bar (None: only on a terminal).
        bss_eval_v3: also score with BSS Eval v3 (`score_v3`).

    Returns:
        ({track name: {method: {source: {metric: dB}}}}, {track name:
        seconds}, {failed track name: why}), each in the order of `loaders`;
        the first two hold the scored tracks only.

    Raises:
        TrackError: two tracks have the same name.
    """
    from tqdm import tqdm

    seconds = {}

    def estimate(name, loader):
        track = loader()
        estimates = {method: estimator(track) for method, estimator in estimators.items()}
        seconds[name] = len(track.mixture) / track.sample_rate_hz
        return (track.references, estimates, track.sample_rate_hz,
                track.mixture if bss_eval_v3 else None)

    names = [name for name, _ in loaders]
    if len(set(names)) != len(names):
        raise TrackError(f"track names are not unique: {sorted(names)}")
    scores, failures = {}, {}
    bar = tqdm(total=len(loaders), unit="track", desc="evaluating",
               disable=None if progress is None else not progress)
    if jobs <= 1:
        for name, loader in loaders:
            bar.set_postfix_str(name)
            try:
                scores[name] = score_methods(*estimate(name, loader))
            except Exception as error:  # one broken track must not stop the others
                failures[name] = _failure(error)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with _single_threaded_blas(), concurrent.futures.ProcessPoolExecutor(
                jobs, mp_context=context) as pool:
            pending = {}

            def collect(future):
                name = pending.pop(future)
                try:
                    scores[name] = future.result()
                except Exception as error:  # a track BSS Eval cannot score
                    failures[name] = _failure(error)
                bar.update()

            for name, loader in loaders:
                while len(pending) >= 2 * jobs:
                    done, _ = concurrent.futures.wait(
                        pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        collect(future)
                bar.set_postfix_str(name)
                try:
                    arguments = estimate(name, loader)
                except Exception as error:  # one broken track must not stop the others
                    failures[name] = _failure(error)
                    bar.update()
                    continue
                pending[pool.submit(score_methods, *arguments)] = name
            for future in concurrent.futures.as_completed(list(pending)):
                collect(future)
    bar.close()
    scored = [name for name in names if name in scores]
    return ({name: scores[name] for name in scored}, {name: seconds[name] for name in scored},
            {name: failures[name] for name in names if name in failures})


# === Reports ===

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
