"""One song file separated into files: the vocals and accompaniment, and a figure of the mask.

What `separate.py` and the web page (`keras_unet.web.webapp`) do with a
song, in one place, so both write the same outputs bit for bit: the song is
streamed through a `keras_unet.separation.separator.Separator` and written by
`keras_unet.separation.writing.write_separation` (the two outputs sum to the
input on disk); `fit_warning` says what fitting the output format did; and
`write_plot` draws the mix, the mask and the vocals of an excerpt.
"""

import math
import os
import time
from typing import Callable, Optional

import numpy as np

from keras_unet.separation.figures import LEVEL, MASK, png_bytes, spectrogram_figure
from keras_unet.separation.writing import (DEFAULT_CLIP_MODE, DEFAULT_OUTPUT_FORMAT, Written,
                                     write_separation)
from keras_unet.core.audio_io import AudioError, open_audio, resample
from keras_unet.core.files import atomic_path

PLOT_SECONDS = 20.0
"""Length of the excerpt `write_plot` draws (the middle of the song)."""


def separate_file(separator, path: str, vocals_path: str, accompaniment_path: str,
                  output_format: str = DEFAULT_OUTPUT_FORMAT,
                  clip_mode: str = DEFAULT_CLIP_MODE,
                  on_progress: Optional[Callable[[int, int], None]] = None) -> Written:
    """Separates one file into `vocals_path` and `accompaniment_path`, block by block.

    The time spent adds up in `separator.stopwatch`: the separator's own
    stages, and "writing" (the rest, with the second read of the input).

    Args:
        separator: a `keras_unet.separation.separator.Separator`.
        path: the song, any file `keras_unet.core.audio_io.open_audio` reads.
        vocals_path, accompaniment_path: the outputs, which appear together or
            not at all (`keras_unet.separation.writing.write_separation`).
        output_format: a key of `keras_unet.core.audio_io.OUTPUT_FORMATS`.
        clip_mode: one of `keras_unet.separation.writing.CLIP_MODES`.
        on_progress: on_progress(samples done, samples) after each separated
            block (`Separator.separate_blocks`).

    Returns:
        `keras_unet.separation.writing.Written`: the peak, scale factor and clipping.

    Raises:
        AudioError: the song cannot be read, changed while it was separated,
            or an output cannot be written.
    """
    stopwatch = separator.stopwatch
    began = time.perf_counter()
    opened = _identity(path)
    with open_audio(path, look_back_seconds=separator.look_back_seconds) as reader:
        stopwatch.add("read_resample", began)
        began, separating = time.perf_counter(), stopwatch.separating()
        rate, channels = reader.sample_rate_hz, reader.n_channels
        blocks = separator.separate_blocks(reader.read, reader.n_samples, channels, rate,
                                           on_progress=on_progress)
        written = write_separation(
            blocks, reader.read, reader.n_samples, channels, rate, vocals_path,
            accompaniment_path, output_format, clip_mode,
            before_publishing=lambda: _check_unchanged(path, opened))
    # the rest is writing, with the second read of the input
    stopwatch.add("writing", began + stopwatch.separating() - separating)
    return written


def _identity(path: str) -> tuple:
    """What changes when a file is rewritten or replaced: device, inode, size, modification time."""
    status = os.stat(path)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _check_unchanged(path: str, opened: tuple) -> None:
    """Refuses outputs of an input rewritten while it was separated.

    The input is read twice (`keras_unet.separation.writing`): the second
    read of a changed file would give outputs that belong to neither version.

    Raises:
        AudioError: `path` is not the file it was when the separation began.
    """
    try:
        unchanged = _identity(path) == opened
    except OSError:
        unchanged = False
    if not unchanged:
        raise AudioError(f"{path}: changed while it was being separated; no results written "
                         "(separate it again)")


def fit_warning(name: str, written: Written) -> Optional[str]:
    """One line on what fitting the format did to the song `name`, or None when it did nothing."""
    if written.scale != 1.0:
        return (f"{name}: rescaled by {written.scale:.4f} "
                f"({20 * math.log10(written.scale):+.2f} dB) to fit its peak of "
                f"{written.peak:.3f} full scale; vocals + accompaniment = input x "
                f"{written.scale:.4f}")
    if written.clipped:
        share = 100 * written.clipped / written.n_output_samples
        return (f"{name}: clipped {written.clipped} output samples ({share:.3g}%), "
                f"peak {written.peak:.3f} full scale; vocals + accompaniment differs from the "
                "input there")
    return None


def _excerpt(n_samples: int, rate: int):
    """The middle PLOT_SECONDS of a song: (start sample, stop sample)."""
    length = min(n_samples, int(PLOT_SECONDS * rate))
    start = (n_samples - length) // 2
    return start, start + length


def _reference_excerpt(reference: str, path: str, start_seconds: float, length: int,
                       rate: int):
    """The true vocals over the excerpt of `path`, at `rate`: float32 (length, channels).

    Only the excerpt (and a little resampling margin) is read, whatever the
    reference's length; one that ends inside the excerpt is padded with silence.

    Raises:
        AudioError: the reference cannot be read or ends before the excerpt.
    """
    with open_audio(reference) as reader:
        reference_rate = reader.sample_rate_hz
        margin = int(0.1 * reference_rate)  # hides the resampler's edges
        first = round(start_seconds * reference_rate)
        if first >= reader.n_samples:
            raise AudioError(f"{reference}: ends before the plotted excerpt of {path}")
        lo = max(0, first - margin)
        hi = min(reader.n_samples, first + -(-length * reference_rate // rate) + margin)
        samples = resample(reader.read(lo, hi), reference_rate, rate)
    offset = round((first - lo) * rate / reference_rate)
    samples = samples[offset:offset + length]
    return np.pad(samples, [(0, length - len(samples)), (0, 0)])


def write_plot(separator, path: str, plot_path: str, reference: Optional[str] = None,
               name: Optional[str] = None) -> None:
    """PNG of the mix spectrogram, the mask, the vocals (and the true vocals) of an excerpt.

    Only the excerpt is held in memory (a compressed file is decoded from its
    start up to the excerpt's end, block by block).

    Args:
        separator: a `keras_unet.separation.separator.Separator`.
        path: the song.
        plot_path: the PNG to write (atomically).
        reference: a file of the song's true vocals, drawn as a fourth panel.
        name: the song's name in the title (default: the file name of `path`).

    Raises:
        AudioError: a file cannot be read, or the PNG cannot be written.
    """
    with open_audio(path) as reader:
        rate = reader.sample_rate_hz
        start, stop = _excerpt(reader.n_samples, rate)
        samples = reader.read(start, stop)
    mask, spectrum, config = separator.full_band_mask(samples, rate)
    panels = [("mix |X|", np.abs(spectrum).mean(axis=0), LEVEL),  # channel means
              ("mask M", mask.mean(axis=0), MASK),
              ("estimated vocals |M X|", np.abs(mask * spectrum).mean(axis=0), LEVEL)]
    if reference is not None:
        true_vocals = _reference_excerpt(reference, path, start / rate, stop - start, rate)
        _, true_spectrum, _ = separator.full_band_mask(true_vocals, rate)
        panels.append(("true vocals |Y|", np.abs(true_spectrum).mean(axis=0), LEVEL))
    figure = spectrogram_figure(
        panels, rate, config.hop_samples, start_seconds=start / rate,
        title=f"{name or os.path.basename(path)}: seconds {start / rate:.1f}-{stop / rate:.1f}")
    try:
        with atomic_path(plot_path, suffix=".png") as temporary, open(temporary, "wb") as file:
            file.write(png_bytes(figure))
    except OSError as error:
        raise AudioError(f"{plot_path}: cannot write ({error.strerror})") from None
