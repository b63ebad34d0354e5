"""The estimates scored, per method: the model, and the floor and ceiling beside it.

- "model": the network, through `Separator` (the code of `separate.py`).
- "mixture": half the mixture as the estimate of each source; the floor.
- "oracle": the ideal ratio mask |Y| / (|Y| + |A|) from the true vocals Y
  and accompaniment A at the model's own STFT settings, applied to the
  mixture by the same reconstruction as the model's mask; the ceiling of
  any mask this model could predict.
- "oracle-full-rate" (optional): the ideal ratio mask computed at the
  track's own rate, on the grid where the model's mask is applied; the
  ceiling of magnitude masking on that grid.

TensorFlow (`keras_unet.core.transforms`, `keras_unet.separation.full_band`)
is imported only inside the functions that need it, so the worker processes
of `keras_unet.evaluation.run.evaluate_tracks`, which only score, start
without it.
"""

import functools
from typing import Callable, Dict

import numpy as np

from keras_unet.core.audio_io import resample
from keras_unet.evaluation.scoring import SOURCES
from pipelines.reference_tracks import Track


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
