"""Training patches: where a patch lies in a track, the waveform crop that makes it, its spectra.

A patch is `patch_frames` (T) consecutive STFT frames, placed by `start`, a
sample index of the track: frame k of the patch is the window over samples
[start + k*hop - P, start + k*hop - P + n_fft), P = n_fft - hop. That is the
frame `keras_unet.core.transforms.stft` computes over a whole track, so a
patch whose start is a multiple of hop holds exactly the frames a separator
sees for the same place (validation tiles start at j * T * hop).

The STFT runs on a short crop, not the track: the crop is the segment of
`transforms.segment_bounds` (it begins `lead_frames * hop` samples before
`start`, lead_frames = ceil(P / hop), one frame at the defaults, so every
window of the patch sees real samples), and `transforms.segment_frames`
drops the first `lead_frames` frames, which `stft`'s own front padding
spoils. A crop is T*hop + lead_frames*hop samples (99,072 at the defaults),
about 12 s of audio per patch. Mix and vocals are then scaled by the mix
patch's `keras_unet.core.masking.normalisation_gain`, the rule the
separator applies to its patches too.

Padding rule: a crop is zero outside the track, and a patch frame whose
window misses the track entirely gets weight 0 in `frame_weights` (the loss
ignores it). Training draws start uniformly so that a long track's patch
lies inside it, and a track shorter than a patch lies at a uniformly random
place inside the patch (zeros before and after it); validation tiles start
at 0, so a short track is followed by zeros.

Shapes: waveforms (channels, samples); patches (..., bins, frames).
"""

import math

import numpy as np
import tensorflow as tf

from keras_unet.core import transforms
from keras_unet.core.config import StftConfig
from keras_unet.core.masking import normalisation_gain

SILENCE_RMS = 10.0 ** (-50.0 / 20.0)  # vocals quieter than -50 dBFS count as silent


def crop_length(config: StftConfig) -> int:
    """Samples of the waveform crop that makes one patch: (T + lead_frames) * hop."""
    begin, end = transforms.segment_bounds(0, config.patch_frames, config)
    return end - begin


def patch_samples(config: StftConfig) -> int:
    """Samples a patch advances over: T * hop."""
    return config.patch_frames * config.hop_samples


def crop_start(start, config: StftConfig):
    """First sample of the crop of the patch placed at `start`."""
    return transforms.segment_bounds(start, config.patch_frames, config)[0]


def random_start(uniform, n_samples, config: StftConfig):
    """A training patch's start drawn from `uniform` in [0, 1).

    Uniform over [0, n - T*hop] for a track at least one patch long, over
    [n - T*hop, 0] (the track at a random place inside the patch) otherwise.

    Args:
        uniform: float32 scalar in [0, 1).
        n_samples: int64 scalar, the track's length.
        config: STFT settings.

    Returns:
        int64 scalar.
    """
    span = tf.cast(n_samples, tf.int64) - patch_samples(config)
    choices = tf.abs(span) + 1
    draw = tf.minimum(tf.cast(tf.cast(uniform, tf.float64) * tf.cast(choices, tf.float64),
                              tf.int64), choices - 1)
    return tf.minimum(span, 0) + draw


def padded_slice(waveform, begin, length: int, track_begin=0, n_samples=None):
    """waveform[:, begin:begin + length] of one track, zeros outside it.

    Args:
        waveform: float32 (channels, samples), possibly many tracks back to back.
        begin: int64 scalar, first sample wanted, relative to the track (may be
            negative or past its end).
        length: samples wanted.
        track_begin: int64 scalar, where the track starts in `waveform`.
        n_samples: int64 scalar, the track's length (None: all of `waveform`).

    Returns:
        float32 (channels, length).
    """
    if n_samples is None:
        n_samples = tf.shape(waveform, out_type=tf.int64)[1]
    begin = tf.cast(begin, tf.int64)
    low = tf.clip_by_value(begin, 0, n_samples)
    high = tf.clip_by_value(begin + length, 0, n_samples)
    piece = waveform[:, track_begin + low:track_begin + high]  # (channels, high - low)
    before = tf.clip_by_value(low - begin, 0, length)  # 0 for a slice past the track's end
    after = length - (high - low) - before
    padded = tf.pad(piece, [[0, 0], [before, after]])
    return tf.ensure_shape(padded, [waveform.shape[0], length])


def real_sample_count(begin, length: int, n_samples):
    """How many of the samples [begin, begin + length) lie inside a track of n_samples."""
    low = tf.clip_by_value(begin, 0, n_samples)
    high = tf.clip_by_value(begin + length, 0, n_samples)
    return high - low


def frame_weights(start, n_samples, config: StftConfig):
    """1.0 for each patch frame whose window overlaps the track, else 0.0.

    Args:
        start: int64 scalar, the patch's start.
        n_samples: int64 scalar, the track's length.
        config: STFT settings.

    Returns:
        float32 (frames,).
    """
    window_begins = tf.cast(start, tf.int64) + transforms.frame_start(
        tf.range(config.patch_frames, dtype=tf.int64), config)
    overlaps = (window_begins < n_samples) & (window_begins + config.n_fft > 0)
    return tf.cast(overlaps, tf.float32)


def is_silent(crop, real_samples):
    """Whether a crop's RMS over its real (non-padding) samples is below SILENCE_RMS.

    Args:
        crop: float32 (samples,).
        real_samples: int64 scalar, samples of the crop inside the track.
    """
    energy = tf.reduce_sum(tf.square(crop))
    mean_square = energy / tf.cast(tf.maximum(real_samples, 1), tf.float32)
    return mean_square < SILENCE_RMS**2


def magnitudes(vocals, accompaniment, config: StftConfig):
    """Mix, vocals and accompaniment magnitudes of a patch from its crops.

    The mix is vocals + accompaniment, summed as complex spectra (the STFT
    is linear), so one STFT of both sources gives all three.

    Args:
        vocals: float32 (..., crop_length(config)).
        accompaniment: float32 (..., crop_length(config)).
        config: STFT settings.

    Returns:
        (mix, vocals, accompaniment): float32 (..., bins, frames), frames = patch_frames.
    """
    sources = tf.stack([vocals, accompaniment], axis=-2)  # (..., 2, samples)
    spectra = transforms.segment_frames(sources, config,
                                        config.patch_frames)  # (..., 2, bins, frames)
    vocals_spectrum, accompaniment_spectrum = spectra[..., 0, :, :], spectra[..., 1, :, :]
    mix = transforms.magnitude(vocals_spectrum + accompaniment_spectrum)
    return mix, transforms.magnitude(vocals_spectrum), transforms.magnitude(accompaniment_spectrum)


def normalise(mix, *sources):
    """Divides all by the mix patch's maximum (Jansson et al. 2017).

    Each is multiplied by `keras_unet.core.masking.normalisation_gain(mix)`,
    1 / max(max(mix), 1e-8), as the separator scales its patches: a silent
    patch stays zeros instead of becoming NaN. After it the mix lies in [0, 1] (its maximum is
    1 unless silent); a source is >= 0 and can exceed 1 where the other
    cancels it.

    Args:
        mix: float32 (..., bins, frames).
        *sources: float32 (..., bins, frames) each: the vocals, and maybe
            the accompaniment.

    Returns:
        (mix, *sources) scaled, same shapes.
    """
    gain = normalisation_gain(mix)  # (..., 1, 1)
    return (mix * gain,) + tuple(source * gain for source in sources)


def tile_starts(n_samples: int, config: StftConfig) -> np.ndarray:
    """Fixed validation starts: 0, T*hop, 2*T*hop, ... until the track's frames are covered.

    Returns:
        int64 (tiles,), at least one tile.
    """
    n_tiles = math.ceil(transforms.frame_count(n_samples, config) / config.patch_frames)
    return np.arange(n_tiles, dtype=np.int64) * patch_samples(config)


def silent_share(vocals: np.ndarray, config: StftConfig) -> float:
    """Share of a track's training starts whose vocals crop is silent (an estimate).

    The test of `is_silent` (on the channel mean square) at every start on a
    grid of one hop over the range `random_start` draws from. Sums run over
    blocks of one hop, so a long track costs one pass over its samples.

    Args:
        vocals: float32 (samples, channels).
        config: STFT settings.
    """
    hop = config.hop_samples
    n_samples = vocals.shape[0]
    n_blocks = -(-n_samples // hop)
    power = np.einsum("sc,sc->s", vocals, vocals) / vocals.shape[1]  # (samples,)
    full = n_samples // hop
    block_energy = np.zeros(n_blocks, np.float64)
    block_energy[:full] = power[:full * hop].reshape(full, hop).sum(axis=1, dtype=np.float64)
    block_energy[full:] = power[full * hop:].sum(dtype=np.float64)  # the partial last block
    cumulative = np.concatenate([[0.0], np.cumsum(block_energy)])  # at multiples of hop
    span = n_samples - patch_samples(config)
    starts = hop * np.arange(-(-min(span, 0) // hop), max(span, 0) // hop + 1)
    first = crop_start(starts, config)
    begins = np.clip(first, 0, n_blocks * hop)
    ends = np.clip(first + crop_length(config), 0, n_blocks * hop)
    energy = cumulative[ends // hop] - cumulative[begins // hop]
    real_samples = np.minimum(ends, n_samples) - np.minimum(begins, n_samples)
    mean_square = energy / np.maximum(real_samples, 1)
    return float(np.mean(mean_square < SILENCE_RMS**2))


def silent_keep_probability(silent_fraction: float, rate: float) -> float:
    """Probability to keep a silent patch so that silent patches make `rate` of those kept.

    If a share f of drawn patches is silent and each silent one is kept with
    probability q, the kept share is f q / (1 - f + f q); q solves that for
    `rate`, capped at 1 (when f is already below `rate`, all are kept).
    When every patch is silent (f = 1) all are kept, or an epoch could never
    fill.

    Args:
        silent_fraction: f in [0, 1].
        rate: wanted share of silent patches, in [0, 1].
    """
    if silent_fraction >= 1.0 or rate >= 1.0 or silent_fraction <= 0.0:
        return 1.0
    keep = rate * (1.0 - silent_fraction) / (silent_fraction * (1.0 - rate))
    return float(min(1.0, keep))
