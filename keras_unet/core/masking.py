"""The model on spectrograms of any length, in TensorFlow: patches in, one mask out.

One copy of each rule that training, separation, evaluation and the
exported SavedModel must agree on:

- The model's input: a patch of `patch_frames` (T) frames divided by its own
  maximum, at least NORMALISATION_EPSILON so that a silent patch stays
  zeros: multiplied by `normalisation_gain` (`normalise_patches`). Training
  scales its patches, mix and vocals, by the same gain
  (`pipelines.patches.normalise`).
- The patch grid: patches of T frames with a hop of T // 2 (50% overlap);
  patch k starts at frame (k - 1) * hop, so the first starts hop frames
  before the song and every frame of the song lies inside two patches
  (`patch_hop`, `patch_start_frame`, `patch_count`, `patches_touching`).
- The cross-fade: patch masks weighted by w[t] = sin^2(pi (t + 0.5) / T),
  positive everywhere and summing to one over two patches; the weighted sum
  divided by the summed weights (`overlap_add`).
- Fixed-size batches: the model always sees (batch_size, bins, T), the last
  batch zero-padded (`batches_of`, `mask_of_batch`), so a model function
  with that input signature is traced once whatever the song's length.

`predict_mask` and `separate_mono` compose them for a whole song, in pure
TensorFlow (the export's "separate" signature traces `separate_mono` with
an input signature of `[None]` samples; training's validation metrics call
`predict_mask`). `keras_unet.separation.separator.Separator` runs the same pieces
on a song streamed in blocks.

Shapes: magnitudes and masks (channels, bins, frames); patches
(..., bins, T).
"""

import functools
import math
from typing import Tuple

import tensorflow as tf

from keras_unet.core.config import INFERENCE_BATCH_SIZE, StftConfig
from keras_unet.core.transforms import magnitude, masked_waveform, stft

NORMALISATION_EPSILON = 1e-8
"""The smallest divisor of a patch: a silent patch stays zeros instead of becoming NaN."""


# === The model's input ===

def normalisation_gain(mix: tf.Tensor) -> tf.Tensor:
    """What a patch (and anything on its scale) is multiplied by: 1 / max(its maximum, epsilon).

    Args:
        mix: float32 (..., bins, frames), mix magnitude patches.

    Returns:
        float32 (..., 1, 1).
    """
    peak = tf.reduce_max(mix, axis=[-2, -1], keepdims=True)
    return 1.0 / tf.maximum(peak, NORMALISATION_EPSILON)


def normalise_patches(patches: tf.Tensor) -> tf.Tensor:
    """Each patch scaled by its own `normalisation_gain`, as in training. (..., bins, T) -> same."""
    return patches * normalisation_gain(patches)


# === The patch grid ===

def patch_hop(config: StftConfig) -> int:
    """Frames between the starts of two patches (50% overlap)."""
    return max(1, config.patch_frames // 2)


def patch_start_frame(index, config: StftConfig):
    """The song frame where patch `index` starts: (index - 1) * hop (negative for patch 0)."""
    return (index - 1) * patch_hop(config)


def patch_count(n_frames, config: StftConfig):
    """Patches that cover `n_frames` frames (per channel), two on every frame."""
    return (n_frames - 1) // patch_hop(config) + 2


def patches_touching(first: int, last: int, n_patches: int,
                     config: StftConfig) -> Tuple[int, int]:
    """(first, last): the patches of 0 .. n_patches - 1 that hold a frame of first .. last."""
    hop, width = patch_hop(config), config.patch_frames
    return max(0, (first + hop - width) // hop + 1), min(n_patches - 1, (last + hop) // hop)


def frame_patches(frames: tf.Tensor, config: StftConfig) -> tf.Tensor:
    """Consecutive patches of a run of frames that starts where a patch starts.

    Args:
        frames: (channels, bins, (n - 1) * hop + T), float32 or complex64.
        config: STFT and patch settings.

    Returns:
        (channels, n, bins, T), same dtype.
    """
    patches = tf.signal.frame(frames, config.patch_frames, patch_hop(config),
                              axis=-1)  # (channels, bins, n, T)
    return tf.transpose(patches, [0, 2, 1, 3])


def split_patches(magnitudes: tf.Tensor, config: StftConfig) -> tf.Tensor:
    """Every patch of a song.

    Args:
        magnitudes: float32 (channels, bins, frames).
        config: STFT and patch settings.

    Returns:
        float32 (channels * patches, bins, patch_frames), channel-major,
        patches = `patch_count(frames, config)`; zeros outside the song.
    """
    hop, width = patch_hop(config), config.patch_frames
    shape = tf.shape(magnitudes)
    bins, n_frames = shape[1], shape[2]
    front = -patch_start_frame(0, config)  # patch 0 starts this many frames before the song
    span = (patch_count(n_frames, config) - 1) * hop + width  # frames the patches span
    padded = tf.pad(magnitudes, [[0, 0], [0, 0], [front, span - front - n_frames]])
    return tf.reshape(frame_patches(padded, config), [-1, bins, width])


# === The cross-fade ===

def cross_fade_window(patch_frames: int) -> tf.Tensor:
    """float32 (patch_frames,): sin^2(pi (t + 0.5) / T), two halves sum to one."""
    position = (tf.range(patch_frames, dtype=tf.float32) + 0.5) / patch_frames
    return tf.sin(math.pi * position) ** 2


def overlap_add(patch_masks, config: StftConfig) -> tf.Tensor:
    """Cross-fades consecutive patch masks into one mask over the frames they span.

    Args:
        patch_masks: float32 (channels, n, bins, T), patch i + 1 starting
            hop frames after patch i.
        config: STFT and patch settings.

    Returns:
        float32 (channels, bins, (n - 1) * hop + T): sum(w * mask) / sum(w)
        per frame, over the patches given (a frame is whole where every
        patch that holds it is given).
    """
    hop, width = patch_hop(config), config.patch_frames
    window = cross_fade_window(width)
    patch_masks = tf.convert_to_tensor(patch_masks, tf.float32)
    masks = tf.transpose(patch_masks * window, [0, 2, 1, 3])  # (channels, bins, n, T)
    summed = tf.signal.overlap_and_add(masks, hop)  # (channels, bins, frames)
    n_patches = tf.shape(patch_masks)[1]
    weights = tf.signal.overlap_and_add(tf.tile(window[tf.newaxis], [n_patches, 1]), hop)
    return summed / weights


def overlap_add_patches(patch_masks: tf.Tensor, n_channels, n_frames,
                        config: StftConfig) -> tf.Tensor:
    """A song's mask from the masks of all its patches.

    Args:
        patch_masks: float32 (channels * patches, bins, patch_frames), as
            `split_patches` orders them.
        n_channels: channels (int or scalar tensor).
        n_frames: frames of the song (int or scalar tensor).
        config: STFT and patch settings.

    Returns:
        float32 (channels, bins, frames).
    """
    bins = tf.shape(patch_masks)[1]
    masks = tf.reshape(patch_masks, [n_channels, -1, bins, config.patch_frames])
    front = -patch_start_frame(0, config)
    return overlap_add(masks, config)[:, :, front:front + n_frames]


# === The model on fixed-size batches ===

def batches_of(patches, batch_size: int) -> tf.Tensor:
    """Patches in batches of `batch_size`, the last one zero-padded.

    Args:
        patches: float32 (n, bins, T).
        batch_size: patches per batch.

    Returns:
        float32 (ceil(n / batch_size), batch_size, bins, T).
    """
    shape = tf.shape(patches)
    n_patches, bins, width = shape[0], shape[1], shape[2]
    n_batches = (n_patches + batch_size - 1) // batch_size
    padded = tf.pad(patches, [[0, n_batches * batch_size - n_patches], [0, 0], [0, 0]])
    return tf.reshape(padded, [n_batches, batch_size, bins, width])


def mask_of_batch(model, batch: tf.Tensor) -> tf.Tensor:
    """The model's float32 mask of a batch of patches, each normalised first. (b, F, T) -> same."""
    return tf.cast(model(normalise_patches(batch), training=False), tf.float32)


def patch_masks_of(model, patches: tf.Tensor, batch_size: int) -> tf.Tensor:
    """The model's mask of every patch, run on fixed-size batches. (n, bins, T) -> (n, bins, T)."""
    shape = tf.shape(patches)
    bins, width = shape[1], shape[2]
    masks = tf.map_fn(functools.partial(mask_of_batch, model), batches_of(patches, batch_size),
                      fn_output_signature=tf.float32)  # (batches, batch_size, bins, T)
    return tf.reshape(masks, [-1, bins, width])[:shape[0]]


# === Whole songs ===

def predict_mask(model, magnitudes: tf.Tensor, stft_config: StftConfig,
                 batch_size: int = INFERENCE_BATCH_SIZE) -> tf.Tensor:
    """The model's mask for spectrograms of any length.

    Args:
        model: a mask model (`keras_unet.core.model.build_model`), or any
            callable `model(x, training=False)` mapping float32 (batch, bins,
            patch_frames) to a mask of the same shape.
        magnitudes: float32 (channels, bins, frames), the mix magnitude at the
            model's rate.
        stft_config: the model's STFT and patch settings.
        batch_size: patches per model call.

    Returns:
        float32 (channels, bins, frames) mask in [0, 1].
    """
    magnitudes = tf.convert_to_tensor(magnitudes, tf.float32)
    shape = tf.shape(magnitudes)
    patches = split_patches(magnitudes, stft_config)
    patch_masks = patch_masks_of(model, patches, batch_size)
    return overlap_add_patches(patch_masks, shape[0], shape[2], stft_config)


def separate_mono(model, waveform: tf.Tensor, stft_config: StftConfig,
                  batch_size: int = INFERENCE_BATCH_SIZE) -> Tuple[tf.Tensor, tf.Tensor]:
    """Vocals and accompaniment of a mono waveform at the model's rate.

    Pure TensorFlow: traceable in a `tf.function` with
    `input_signature=[tf.TensorSpec([None], tf.float32)]`.

    Args:
        model: as in `predict_mask`.
        waveform: float32 (samples,) at `stft_config.sample_rate_hz`.
        stft_config: the model's STFT and patch settings.
        batch_size: patches per model call.

    Returns:
        (vocals, accompaniment), float32 (samples,) each; they sum to the input.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    length = tf.shape(waveform)[0]
    spectrum = stft(waveform[tf.newaxis], stft_config)  # (1, bins, frames)
    mask = predict_mask(model, magnitude(spectrum), stft_config, batch_size)
    vocals = masked_waveform(mask, spectrum, stft_config, length)[0]
    return vocals, waveform - vocals
