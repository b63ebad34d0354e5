"""Spectrogram figures a person can read: panels with time in seconds, frequency in Hz, colour bars.

One drawing for `separate.py --plot` (panels stacked) and the TensorBoard
images of training (panels side by side). Levels are drawn in dB below a
reference (the mix's peak) over a fixed 80 dB range, so the mix, the
estimate and the truth share one colour scale; masks are drawn on [0, 1].
Figures are made with `matplotlib.figure.Figure` directly, without pyplot's
global state, so drawing is safe in any thread and leaves nothing open.
"""

import io
from typing import List, Optional, Tuple

import numpy as np
from matplotlib.figure import Figure

RANGE_DB = 80.0
LEVEL = "level"  # a magnitude spectrogram, drawn in dB re the reference
MASK = "mask"  # values in [0, 1]


def spectrogram_figure(panels: List[Tuple[str, np.ndarray, str]], sample_rate_hz: int,
                       hop_samples: int, start_seconds: float = 0.0,
                       title: Optional[str] = None, side_by_side: bool = False) -> Figure:
    """Draws spectrogram panels on shared axes.

    Args:
        panels: (title, values, kind) each: values float (bins, frames) on a
            one-sided grid whose last bin is the Nyquist frequency; kind is
            LEVEL (magnitudes) or MASK.
        sample_rate_hz: the rate of the STFT.
        hop_samples: the STFT hop.
        start_seconds: the time of the first frame.
        title: the figure's title.
        side_by_side: panels in a row (TensorBoard) instead of a column.

    Returns:
        The figure; `png_bytes` renders it.
    """
    n_bins, n_frames = panels[0][1].shape
    seconds = start_seconds + np.arange(n_frames + 1) * hop_samples / sample_rate_hz
    hertz = np.arange(n_bins + 1) * sample_rate_hz / (2 * (n_bins - 1))  # bin edges
    reference = max(max((float(np.max(values)) for _, values, kind in panels if kind == LEVEL),
                        default=1.0), 1e-8)
    shape = (1, len(panels)) if side_by_side else (len(panels), 1)
    size = (4.2 * len(panels), 3.4) if side_by_side else (10, 2.6 * len(panels))
    figure = Figure(figsize=size, constrained_layout=True)
    axes = figure.subplots(*shape, sharex=True, sharey=True, squeeze=False).ravel()
    for axis, (name, values, kind) in zip(axes, panels):
        if kind == MASK:
            image = axis.pcolormesh(seconds, hertz[1:], values[1:], vmin=0.0, vmax=1.0,
                                    cmap="magma", shading="flat")
            figure.colorbar(image, ax=axis, label="mask")
        else:
            decibels = 20 * np.log10(np.maximum(values, 1e-8) / reference)
            image = axis.pcolormesh(seconds, hertz[1:], decibels[1:], vmin=-RANGE_DB, vmax=0,
                                    cmap="magma", shading="flat")
            figure.colorbar(image, ax=axis, label="dB re mix peak")
        axis.set_yscale("log")
        axis.set_ylim(max(hertz[1], 20.0), sample_rate_hz / 2)
        axis.set_title(name)
    for axis in axes if side_by_side else axes[-1:]:
        axis.set_xlabel("time (s)")
    for axis in axes[:1] if side_by_side else axes:
        axis.set_ylabel("frequency (Hz)")
    if title:
        figure.suptitle(title)
    return figure


def png_bytes(figure: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
