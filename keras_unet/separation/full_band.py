"""The model's mask on the input's own rate: full-band vocals from a mask made at 8192 Hz.

The mix is split into the part the model's rate holds (the mix resampled
down to 8192 Hz and back up) and the rest (the mix minus that: everything
above the model's Nyquist frequency, 4096 Hz by default, and the
resampler's roll-off just below it). The vocals are
- in the first part: the model's mask applied where it was made, on the
  model-rate spectrogram (the mix phase kept), resampled up;
- in the rest: the mask mapped onto the STFT grid of the input's own rate
  (linear interpolation in time and frequency between the model's frames
  and bins) and applied to the rest's full-rate spectrogram. Above the
  model's Nyquist frequency, where the model sees nothing, each frame's mask
  is the mix-magnitude-weighted mean of the model's mask over its top octave
  (Nyquist / 2 .. Nyquist): the share of the top octave's energy the model
  gives to the voice, carried up into the sibilants, breaths and harmonics
  above it. Weighting by magnitude keeps the near-silent bins (the
  resampler's stop band right under Nyquist) from counting.
The two parts sum to the mix, so a mask of ones returns the mix. Applying
the mask on its own grid below Nyquist, rather than interpolated onto the
full-rate grid, keeps it sharp (the README's *Full band* gives the scores
of the three ways with the ideal mask; `benchmarks/full_band.py` measures a
model's). The accompaniment is always mix - vocals, so the two sum to the input exactly.

`full_band_vocals` applies the rule to a whole song (for masks that do not
come from the model: the oracle of `keras_unet.evaluation.estimates`, and the
reference the tests hold the streamed form to); `keras_unet.separation.separator`
applies it block by block with `map_mask` and `full_rate_stft_config`.
"""

import dataclasses
import math

import numpy as np

from keras_unet.core.audio_io import resample
from keras_unet.core.config import StftConfig
from keras_unet.core.transforms import (frame_centres_seconds, frame_positions, magnitude,
                                        masked_waveform, stft)

SILENT_MAGNITUDE = 1e-8
"""A top octave whose mix magnitudes sum to at most this is silent: its plain mean is carried up."""


def full_rate_stft_config(sample_rate_hz: int, model_config: StftConfig) -> StftConfig:
    """STFT settings for the input's own rate.

    The model's own settings at the model's rate; elsewhere a window of about
    the model's duration (the nearest power of two in samples) with a hop of
    half a window. A quarter-window hop measured the same SDR on the bundled
    clip (within 0.01 dB) at twice the cost.
    """
    if sample_rate_hz == model_config.sample_rate_hz:
        return model_config
    scaled = model_config.n_fft * sample_rate_hz / model_config.sample_rate_hz
    n_fft = max(16, 2 ** round(math.log2(scaled)))
    return dataclasses.replace(model_config, sample_rate_hz=sample_rate_hz, n_fft=n_fft,
                               hop_samples=n_fft // 2)


def full_band_vocals(samples: np.ndarray, sample_rate_hz: int, model_mask: np.ndarray,
                     model_config: StftConfig) -> np.ndarray:
    """Vocals of a whole song from a mask made at the model's rate (the rule above).

    `keras_unet.separation.separator.Separator` computes the same in blocks; this
    whole-song form serves masks that do not come from the model (the oracle
    of `evaluate.py`).

    Args:
        samples: float32 (samples, channels) mix at `sample_rate_hz`.
        sample_rate_hz: its rate.
        model_mask: float32 (channels, model bins, model frames) in [0, 1],
            on the grid of `stft(resample(samples), model_config)`.
        model_config: the model's STFT settings.

    Returns:
        float32 (samples, channels).
    """
    n_samples, model_rate = len(samples), model_config.sample_rate_hz
    held = resample(samples, sample_rate_hz, model_rate)  # (model samples, channels)
    model_spectrum = stft(held.T, model_config)
    vocals = masked_waveform(model_mask, model_spectrum, model_config, len(held)).numpy().T
    if sample_rate_hz == model_rate:
        return vocals
    config = full_rate_stft_config(sample_rate_hz, model_config)
    vocals = fit_length(resample(vocals, model_rate, sample_rate_hz), n_samples)
    rest = samples - fit_length(resample(held, model_rate, sample_rate_hz), n_samples)
    rest_spectrum = stft(rest.T, config)
    frames = np.arange(rest_spectrum.shape[-1])
    mask = map_mask(model_mask, magnitude(model_spectrum).numpy(), 0, model_mask.shape[-1],
                    frames, model_config, config)
    return vocals + masked_waveform(mask, rest_spectrum, config, n_samples).numpy().T


def model_frame_positions(frames: np.ndarray, config: StftConfig,
                          model_config: StftConfig) -> np.ndarray:
    """Fractional model frame at the centre of each frame of `config`'s grid."""
    return frame_positions(frame_centres_seconds(frames, config), model_config)


def _interpolation(positions: np.ndarray, size: int):
    """Lower indices and weights of the upper ones for linear interpolation, clamped."""
    positions = np.clip(positions, 0.0, size - 1)
    lower = np.minimum(np.floor(positions).astype(np.int64), max(size - 2, 0))
    upper = np.minimum(lower + 1, size - 1)
    return lower, upper, (positions - lower).astype(np.float32)


def map_mask(model_mask: np.ndarray, model_magnitudes: np.ndarray, first_model_frame: int,
             n_model_frames: int, frames: np.ndarray, model_config: StftConfig,
             config: StftConfig) -> np.ndarray:
    """The model's mask on another STFT grid (see the module docstring for the rule).

    Args:
        model_mask: float32 (channels, model bins, m) mask of model frames
            `first_model_frame` .. + m; must include the two model frames
            around every target frame (clamped to the song).
        model_magnitudes: float32, same shape: mix magnitudes there.
        first_model_frame: global index of the first model frame given.
        n_model_frames: model frames of the whole song.
        frames: int (n,) global indices of the target frames.
        model_config: the model's STFT settings.
        config: the target grid's STFT settings.

    Returns:
        float32 (channels, config.n_bins, n) mask in [0, 1].
    """
    if config == model_config:
        return model_mask[:, :, frames - first_model_frame]
    # Time: fractional model frame of each target frame's centre.
    positions = model_frame_positions(frames, config, model_config)
    lower, upper, weight = _interpolation(positions, n_model_frames)
    lower, upper = lower - first_model_frame, upper - first_model_frame
    in_time = model_mask[:, :, lower] * (1 - weight) + model_mask[:, :, upper] * weight
    mix = (model_magnitudes[:, :, lower] * (1 - weight)
           + model_magnitudes[:, :, upper] * weight)  # (channels, model bins, n)

    # Frequency: fractional model bin of each target bin, up to the model's Nyquist.
    hertz = np.arange(config.n_bins) * config.sample_rate_hz / config.n_fft
    model_bins = hertz * model_config.n_fft / model_config.sample_rate_hz
    in_band = model_bins <= model_config.n_bins - 1
    lower, upper, weight = _interpolation(model_bins[in_band], model_config.n_bins)
    weight = weight[:, np.newaxis]
    mask = np.empty((in_time.shape[0], config.n_bins, len(frames)), np.float32)
    mask[:, in_band] = in_time[:, lower] * (1 - weight) + in_time[:, upper] * weight

    # Above the model's band: the magnitude-weighted top-octave mean, per frame.
    top = slice(model_config.n_bins // 2, model_config.n_bins)
    weights = mix[:, top]
    numerator = np.sum(in_time[:, top] * weights, axis=1)
    denominator = np.sum(weights, axis=1)
    plain_mean = np.mean(in_time[:, top], axis=1)
    extension = np.where(denominator > SILENT_MAGNITUDE,
                         numerator / np.maximum(denominator, SILENT_MAGNITUDE), plain_mean)
    mask[:, ~in_band] = extension[:, np.newaxis, :]
    return mask


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Trims or zero-pads (samples, channels) to `length` samples."""
    if len(samples) >= length:
        return np.ascontiguousarray(samples[:length])
    return np.pad(samples, [(0, length - len(samples)), (0, 0)])
