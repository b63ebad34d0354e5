"""STFT transforms: reconstruction, bin placement, shapes."""

import numpy as np
import pytest
import tensorflow as tf

from keras_unet.core import transforms
from keras_unet.core.config import StftConfig

PAPER = StftConfig()


def _relative_error(estimate, reference):
    return np.max(np.abs(estimate - reference)) / np.max(np.abs(reference))


@pytest.mark.parametrize("config", [PAPER, StftConfig(n_fft=512, hop_samples=128, window="hamming")])
@pytest.mark.parametrize("n_samples", [8192, 10001])
def test_istft_of_stft_is_identity_everywhere(config, n_samples):
    waveform = np.random.default_rng(1).standard_normal(n_samples).astype(np.float32)
    restored = transforms.istft(transforms.stft(waveform, config), config, n_samples).numpy()
    assert restored.shape == (n_samples,)
    assert _relative_error(restored, waveform) < 1e-4


def test_stft_shape_is_bins_by_frames_and_batched():
    batch = np.zeros((3, 2, 49837), np.float32)
    spectrogram = transforms.stft(batch, PAPER)
    assert spectrogram.dtype == tf.complex64
    assert spectrogram.shape == (3, 2, 513, transforms.frame_count(49837, PAPER))
    assert transforms.frame_count(49837, PAPER) == 66


def test_sine_lands_in_its_bin():
    bin_index = 55
    frequency_hz = bin_index * PAPER.sample_rate_hz / PAPER.n_fft
    time_s = np.arange(2 * PAPER.sample_rate_hz) / PAPER.sample_rate_hz
    sine = np.sin(2 * np.pi * frequency_hz * time_s).astype(np.float32)
    magnitudes = transforms.magnitude(transforms.stft(sine, PAPER)).numpy()
    interior = magnitudes[:, 2:-2]
    assert np.all(np.argmax(interior, axis=0) == bin_index)


def test_mask_of_ones_gives_the_mix_and_zeros_give_silence():
    rng = np.random.default_rng(2)
    mix = rng.standard_normal(5000).astype(np.float32)
    spectrogram = transforms.stft(mix, PAPER)
    ones = tf.ones(spectrogram.shape, tf.float32)
    passed = transforms.masked_waveform(ones, spectrogram, PAPER, 5000).numpy()
    silenced = transforms.masked_waveform(0 * ones, spectrogram, PAPER, 5000).numpy()
    assert _relative_error(passed, mix) < 1e-4
    assert np.max(np.abs(silenced)) == 0.0


def test_polar_of_magnitude_and_phase_is_the_spectrogram():
    spectrogram = transforms.stft(np.random.default_rng(3).standard_normal(4000), PAPER)
    rebuilt = transforms.polar(transforms.magnitude(spectrogram), transforms.phase(spectrogram))
    np.testing.assert_allclose(rebuilt.numpy(), spectrogram.numpy(), atol=1e-4)
