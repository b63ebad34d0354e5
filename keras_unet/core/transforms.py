"""STFT, inverse STFT, magnitude and phase on `tf.signal`, and the frame geometry.

Spectrograms here are laid out (..., bins, frames): bins on the second-last
axis, as the model sees them (F x T), not `tf.signal`'s (..., frames, bins).

Framing rule: the waveform gets P = `n_fft - hop_samples` zeros in front and
is zero-padded at the end to whole frames, so frame j is the window over
samples [j * hop - P, j * hop - P + n_fft) (`frame_start`). With this front
padding every sample of the original signal lies where the squared windows
overlap-add to a positive sum, so `istft(stft(x), length=len(x))` returns
`x` exactly (up to float rounding), edges included, for any window/hop pair
that covers the signal (the paper's Hann 1024 / hop 768 does).

Frames of a segment: the frames first, first + 1, ... of a long signal are
computed from a short segment of it, read from `segment_bounds` (it starts
`lead_frames` hops early, so every window sees real samples) and passed to
`segment_frames`, which drops the `lead_frames` frames that `stft`'s own
front padding spoils. Training patches (`pipelines.patches`) and streamed
separation (`keras_unet.separation.separator`) both work this way, and get the
frames a whole-signal `stft` gives.
"""

import tensorflow as tf

from keras_unet.core.config import StftConfig

_WINDOW_FUNCTIONS = {"hann": tf.signal.hann_window, "hamming": tf.signal.hamming_window}


def _front_padding(config: StftConfig) -> int:
    return config.n_fft - config.hop_samples


def frame_count(n_samples: int, config: StftConfig) -> int:
    """Number of STFT frames `stft` returns for `n_samples` samples."""
    padded = n_samples + _front_padding(config)
    return max(1, -(-padded // config.hop_samples))


def frame_start(frames, config: StftConfig):
    """First sample of frame `frames`' window: frames * hop - (n_fft - hop).

    Args:
        frames: frame indices: an int, a NumPy array or an integer tensor.
        config: STFT settings.
    """
    return frames * config.hop_samples - _front_padding(config)


def frames_touching(start: int, stop: int, config: StftConfig):
    """(first, last): the frames whose windows hold a sample of start .. stop - 1."""
    return start // config.hop_samples, (stop - 1 + _front_padding(config)) // config.hop_samples


def frame_centres_seconds(frames, config: StftConfig):
    """Centre times of frames `frames` (int or NumPy array), in seconds."""
    return (frame_start(frames, config) + config.n_fft / 2) / config.sample_rate_hz


def frame_positions(seconds, config: StftConfig):
    """The fractional frame whose centre is at `seconds`: the inverse of `frame_centres_seconds`."""
    return (seconds * config.sample_rate_hz - config.hop_samples
            + config.n_fft / 2) / config.hop_samples


def lead_frames(config: StftConfig) -> int:
    """Frames `segment_frames` drops: ceil((n_fft - hop) / hop), those `stft`'s padding spoils."""
    return -(-_front_padding(config) // config.hop_samples)


def segment_bounds(start, n_frames: int, config: StftConfig):
    """Samples [begin, end) to read for `segment_frames` to give n_frames frames placed at `start`.

    The frames are those of a grid placed at sample `start`: frame k is the
    window over [start + k * hop - P, start + k * hop - P + n_fft). For
    frames first .. stop - 1 of a whole signal, start = first * hop and
    n_frames = stop - first. Samples outside the signal read as zeros.

    Args:
        start: a sample index (int, NumPy or tensor).
        n_frames: frames wanted.
        config: STFT settings.

    Returns:
        (begin, end) = (start - lead_frames * hop, start + n_frames * hop).
    """
    return (start - lead_frames(config) * config.hop_samples,
            start + n_frames * config.hop_samples)


def segment_frames(segment: tf.Tensor, config: StftConfig, n_frames: int) -> tf.Tensor:
    """The frames a segment read from `segment_bounds` was read for.

    Args:
        segment: float32 (..., samples), from `segment_bounds(start, n, config)`.
        config: STFT settings.
        n_frames: frames to return (n).

    Returns:
        complex64 (..., bins, n_frames): what `stft` of the whole signal gives there.
    """
    lead = lead_frames(config)
    return stft(segment, config)[..., lead:lead + n_frames]


def stft(waveform: tf.Tensor, config: StftConfig) -> tf.Tensor:
    """Complex spectrogram of a waveform.

    Args:
        waveform: float32 (..., samples).
        config: STFT settings.

    Returns:
        complex64 (..., bins, frames), bins = n_fft // 2 + 1 and
        frames = `frame_count(samples, config)`.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    rank = waveform.shape.rank
    front = [[0, 0]] * (rank - 1) + [[_front_padding(config), 0]]
    padded = tf.pad(waveform, front)
    spectrum = tf.signal.stft(  # (..., frames, bins)
        padded, frame_length=config.n_fft, frame_step=config.hop_samples,
        fft_length=config.n_fft, window_fn=_WINDOW_FUNCTIONS[config.window],
        pad_end=True)
    return tf.linalg.matrix_transpose(spectrum)  # (..., bins, frames)


def istft(spectrogram: tf.Tensor, config: StftConfig, length: int) -> tf.Tensor:
    """Waveform of a complex spectrogram made by `stft`.

    Args:
        spectrogram: complex64 (..., bins, frames).
        config: the STFT settings it was made with.
        length: samples of the waveform to return (the original length).

    Returns:
        float32 (..., length).
    """
    frames_first = tf.linalg.matrix_transpose(spectrogram)  # (..., frames, bins)
    window_fn = _WINDOW_FUNCTIONS[config.window]
    waveform = tf.signal.inverse_stft(
        frames_first, frame_length=config.n_fft, frame_step=config.hop_samples,
        fft_length=config.n_fft,
        window_fn=tf.signal.inverse_stft_window_fn(
            config.hop_samples, forward_window_fn=window_fn))
    start = _front_padding(config)
    waveform = waveform[..., start:start + length]
    missing = length - tf.shape(waveform)[-1]
    rank = waveform.shape.rank
    return tf.pad(waveform, [[0, 0]] * (rank - 1) + [[0, missing]])


def magnitude(spectrogram: tf.Tensor) -> tf.Tensor:
    """|X|: float32 of the complex spectrogram's shape."""
    return tf.abs(spectrogram)


def phase(spectrogram: tf.Tensor) -> tf.Tensor:
    """Angle of X in radians, float32 of the complex spectrogram's shape."""
    return tf.math.angle(spectrogram)


def polar(magnitudes: tf.Tensor, phases: tf.Tensor) -> tf.Tensor:
    """Complex spectrogram magnitudes * exp(i * phases), complex64."""
    return tf.complex(magnitudes * tf.cos(phases), magnitudes * tf.sin(phases))


def masked_waveform(mask: tf.Tensor, mix_spectrogram: tf.Tensor,
                    config: StftConfig, length: int) -> tf.Tensor:
    """Waveform of a source estimated as mask * |X| with the phase of X.

    Args:
        mask: float32 (..., bins, frames) in [0, 1].
        mix_spectrogram: complex64 (..., bins, frames), X.
        config: STFT settings of X.
        length: samples of the returned waveform.

    Returns:
        float32 (..., length).
    """
    estimate = polar(mask * magnitude(mix_spectrogram), phase(mix_spectrogram))
    return istft(estimate, config, length)
