"""STFT, inverse STFT, magnitude and phase on `tf.signal`.

Spectrograms here are laid out (..., bins, frames): bins on the second-last
axis, as the model sees them (F x T), not `tf.signal`'s (..., frames, bins).

Framing rule: the waveform gets `n_fft - hop_samples` zeros in front and is
zero-padded at the end to whole frames. With this front padding every sample
of the original signal lies where the squared windows overlap-add to a
positive sum, so `istft(stft(x), length=len(x))` returns `x` exactly (up to
float rounding), edges included, for any window/hop pair that covers the
signal (the paper's Hann 1024 / hop 768 does).
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
