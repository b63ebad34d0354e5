"""A separation on disk: vocals and accompaniment files that sum to the input.

Written in two passes over the song, so memory does not grow with its
length and one scale factor can depend on the whole song's peak:

1. The separator's blocks stream into a scratch file of float32 vocals
   beside the outputs, while the peak of the vocals and the accompaniment
   (mix - vocals) is measured, and whether they fit the output format as
   they are.
2. The vocals come back from the scratch file and the mix is read again
   from the input, block by block; both outputs are scaled, clipped or left
   as they are (the clip mode), and written.

Integer formats (16-bit WAV, 24-bit FLAC) store the vocals quantised and the
accompaniment as the quantised mix minus the quantised vocals, computed in
integers: on disk, vocals + accompaniment equals the (scaled) input
quantised to the format, exactly. Float formats store mix - vocals in
float32: the sum is the input to float32 rounding.

Clip modes, as Demucs's `--clip-mode`:

- "rescale": when a sample of either output would not fit the format, the
  mix and both outputs are scaled by one factor so the largest fits; the
  outputs still sum to the input, times that factor.
- "clamp": the vocals are clipped to full scale and the accompaniment is the
  mix minus them, itself clipped; the sum differs from the input only
  where the accompaniment had to be clipped.
- "none": written as they are; only a float format holds samples beyond
  full scale.

Only the outputs must fit: a mix beyond full scale (a float file, or a
decoder's overshoot) whose vocals and accompaniment fit is written as it is.
"""

import dataclasses
import os
from typing import Callable, Iterable, Tuple

import numpy as np

from keras_unet.core import files
from keras_unet.core.audio_io import AudioError, AudioWriter, integer_steps, quantise

CLIP_MODES = ("rescale", "clamp", "none")

DEFAULT_OUTPUT_FORMAT, DEFAULT_CLIP_MODE = "wav16", "rescale"
"""What `separate.py` and the web page write unless told otherwise."""

WRITE_BLOCK_SAMPLES = 1 << 18
"""Samples per channel of the second pass's blocks (6 s at 44.1 kHz)."""


@dataclasses.dataclass(frozen=True)
class Written:
    """What writing a separation did to fit the format.

    Args:
        peak: the largest |sample| of the vocals and the accompaniment,
            full scale 1.
        scale: the factor applied to the mix and both outputs (1.0 unless
            rescaled).
        clipped: output samples (over both files and all channels) clipped.
        n_output_samples: output samples written (over both files and all
            channels).
    """

    peak: float
    scale: float
    clipped: int
    n_output_samples: int


def _fits_integers(mix: np.ndarray, vocals: np.ndarray, steps: int) -> bool:
    """Whether the quantised vocals and quantised mix minus them lie in [-steps, steps - 1]."""
    vocals_q = quantise(vocals, steps)
    return all(values.min(initial=0) >= -steps and values.max(initial=0) <= steps - 1
               for values in (vocals_q, quantise(mix, steps) - vocals_q))


def _scale_to_fit(peak: float, steps) -> float:
    """The factor that brings `peak` to full scale.

    For integer formats, 2 steps under it: the accompaniment, a difference
    of two rounded values, may land one step beyond its own rounding.
    """
    limit = 1.0 if steps is None else (steps - 2) / steps
    return limit / peak


def _outputs(mix: np.ndarray, vocals: np.ndarray, scale: float, steps, clamp: bool):
    """The samples to write, and how many of them were clipped.

    Args:
        mix, vocals: float32 (samples, channels).
        scale: factor for both.
        steps: `integer_steps` of the format, None for float.
        clamp: clip to full scale.

    Returns:
        (vocals, accompaniment, clipped): int64 steps for integer formats,
        float32 otherwise, each (samples, channels); and the count of
        clipped samples.
    """
    if steps is None:
        low, high = -1.0, 1.0
        mix, vocals = np.float32(scale) * mix, np.float32(scale) * vocals
    else:
        low, high = -steps, steps - 1
        mix, vocals = quantise(scale * mix, steps), quantise(scale * vocals, steps)
    if not clamp:
        return vocals, mix - vocals, 0
    clipped_vocals = np.clip(vocals, low, high)
    accompaniment = mix - clipped_vocals
    clipped_accompaniment = np.clip(accompaniment, low, high)
    clipped = (np.count_nonzero(clipped_vocals != vocals)
               + np.count_nonzero(clipped_accompaniment != accompaniment))
    return clipped_vocals, clipped_accompaniment, clipped


def write_separation(blocks: Iterable[Tuple[int, np.ndarray, np.ndarray]],
                     read: Callable[[int, int], np.ndarray], n_samples: int, n_channels: int,
                     sample_rate_hz: int, vocals_path: str, accompaniment_path: str,
                     output_format: str = DEFAULT_OUTPUT_FORMAT,
                     clip_mode: str = DEFAULT_CLIP_MODE,
                     before_publishing: Callable[[], None] = lambda: None) -> Written:
    """Writes the vocals and the accompaniment of a song, in two passes (module docstring).

    Args:
        blocks: (start, mix, vocals) in order, float32 (block samples,
            channels) each, tiling the song (`Separator.separate_blocks`).
        read: read(start, stop) -> the mix again, float32 (stop - start,
            channels).
        n_samples: samples per channel of the song.
        n_channels: its channels.
        sample_rate_hz: its rate.
        vocals_path, accompaniment_path: the files to write. Both are written
            under temporary names, then renamed together
            (`keras_unet.core.files.publish_together`): the folder holds both
            new files or both old ones (or none), never one of each, whatever
            fails or stops the writing. The scratch file is deleted.
        output_format: a key of `keras_unet.core.audio_io.OUTPUT_FORMATS`.
        clip_mode: one of `CLIP_MODES`.
        before_publishing: called once both files are complete, before they
            are renamed; what it raises keeps them out (`song_files` checks
            there that the input did not change meanwhile).

    Returns:
        `Written`: the peak, the scale factor and the clipped samples.

    Raises:
        ValueError: an unknown `clip_mode`, or "none" with an integer format.
        AudioError: a file cannot be read or written.
    """
    if clip_mode not in CLIP_MODES:
        raise ValueError(f"`clip_mode` must be one of {CLIP_MODES}. Received: {clip_mode!r}")
    steps = integer_steps(output_format)
    if clip_mode == "none" and steps is not None:
        raise ValueError(f"clip mode 'none' writes samples beyond full scale, which the "
                         f"integer format {output_format!r} cannot hold; use a float format")
    folder = os.path.dirname(vocals_path) or "."
    scratch = None
    try:
        scratch = files.temporary_beside(vocals_path, suffix=".f32")
        # Pass 1: the vocals to the scratch file; the peak, and whether all fits as it is.
        peak, fits = 0.0, True
        with open(scratch, "wb") as vocals_file:
            for _, mix, vocals in blocks:
                vocals.astype(np.float32).tofile(vocals_file)
                peak = max(peak, float(np.abs(vocals).max()),
                           float(np.abs(mix - vocals).max()))
                fits = fits and (peak <= 1.0 if steps is None
                                 else _fits_integers(mix, vocals, steps))
        scale = 1.0 if fits or clip_mode != "rescale" else _scale_to_fit(peak, steps)

        # Pass 2: the outputs, from the scratch vocals and the mix read again.
        clipped = 0
        with open(scratch, "rb") as vocals_file, \
                AudioWriter(vocals_path, sample_rate_hz, n_channels,
                            output_format) as vocals_out, \
                AudioWriter(accompaniment_path, sample_rate_hz, n_channels,
                            output_format) as accompaniment_out:
            for start in range(0, n_samples, WRITE_BLOCK_SAMPLES):
                stop = min(n_samples, start + WRITE_BLOCK_SAMPLES)
                vocals = np.fromfile(vocals_file, np.float32,
                                     count=(stop - start) * n_channels).reshape(-1, n_channels)
                vocals, accompaniment, block_clipped = _outputs(
                    read(start, stop), vocals, scale, steps, clamp=clip_mode == "clamp")
                vocals_out.write(vocals)
                accompaniment_out.write(accompaniment)
                clipped += block_clipped
            vocals_out.finish()
            accompaniment_out.finish()
            before_publishing()
            files.publish_together([(vocals_out.temporary, vocals_path),
                                    (accompaniment_out.temporary, accompaniment_path)])
    except OSError as error:
        raise AudioError(f"{folder}: cannot write ({files.reason(error, folder)})") from None
    finally:
        if scratch is not None:
            files.discard(scratch)
    return Written(peak=peak, scale=scale, clipped=clipped,
                   n_output_samples=2 * n_samples * n_channels)
