"""A song read on demand at its own rate and at the model's, for the streaming `Separator`."""

import math
import time

import numpy as np

from keras_unet.core.audio_io import resample, resampled_length
from keras_unet.core.config import StftConfig
from keras_unet.core.masking import patch_count
from keras_unet.core.transforms import frame_count, segment_bounds, segment_frames
from keras_unet.separation.full_band import fit_length, full_rate_stft_config
from keras_unet.separation.stopwatch import Stopwatch

RESAMPLE_MARGIN_SECONDS = 0.1
"""Extra audio read on each side of a block before resampling, to hide the filter's edges."""


class Song:
    """A song's samples at its own rate and at the model's, read on demand.

    Model-rate samples are resampled from the song's samples read with a
    margin, starting on an instant where both rates have a sample (every
    rate / gcd(rate, model rate) samples), so each block lands on the same
    model-rate grid the whole song would.
    """

    def __init__(self, read, n_samples: int, n_channels: int, sample_rate_hz: int,
                 model_config: StftConfig):
        self.read, self.n_samples, self.n_channels = read, n_samples, n_channels
        self.rate, self.model_config = sample_rate_hz, model_config
        self.config = full_rate_stft_config(sample_rate_hz, model_config)
        model_rate = model_config.sample_rate_hz
        common = math.gcd(sample_rate_hz, model_rate)
        self.unit, self.model_unit = sample_rate_hz // common, model_rate // common
        self.n_model_samples = max(1, resampled_length(n_samples, sample_rate_hz, model_rate))
        self.n_model_frames = frame_count(self.n_model_samples, model_config)
        self.n_patches = patch_count(self.n_model_frames, model_config)

    def read_padded(self, start: int, stop: int) -> np.ndarray:
        """float32 (stop - start, channels), zeros outside the song."""
        out = np.zeros((stop - start, self.n_channels), np.float32)
        lo, hi = max(0, start), min(self.n_samples, stop)
        if lo < hi:
            out[lo - start:hi - start] = self.read(lo, hi)
        return out

    def frames_audio(self, first: int, stop: int, config: StftConfig, stopwatch: Stopwatch):
        """The segment whose `segment_frames` are frames first..stop-1 of the song's grid.

        Returns:
            (begin, segment): its first sample (song rate) and float32
            (channels, samples), zeros outside the song.
        """
        began = time.perf_counter()
        begin, end = segment_bounds(first * config.hop_samples, stop - first, config)
        segment = self.read_padded(begin, end).T  # (channels, samples)
        stopwatch.add("read_resample", began)
        return begin, segment

    def model_spectrum(self, frame_lo: int, frame_hi: int,
                       stopwatch: Stopwatch) -> np.ndarray:
        """Mix spectrum of model frames frame_lo..frame_hi-1, zero outside the song.

        Returns:
            complex64 (channels, bins, frame_hi - frame_lo).
        """
        config = self.model_config
        began = time.perf_counter()
        begin, end = segment_bounds(frame_lo * config.hop_samples, frame_hi - frame_lo, config)
        audio = self._model_rate_audio(begin, end)  # (samples, channels)
        stopwatch.add("read_resample", began)
        began = time.perf_counter()
        spectrum = segment_frames(audio.T, config, frame_hi - frame_lo).numpy()
        stopwatch.add("model", began)
        return spectrum

    def _model_rate_audio(self, start: int, stop: int) -> np.ndarray:
        """Model-rate samples start..stop-1, zeros outside the song. (samples, channels)."""
        if self.unit == 1 and self.model_unit == 1:
            return self.read_padded(start, stop)
        margin = RESAMPLE_MARGIN_SECONDS * self.model_config.sample_rate_hz
        first_unit = math.floor((start - margin) / self.model_unit)
        last_unit = math.ceil((stop + margin) / self.model_unit)
        source = self.read_padded(first_unit * self.unit, last_unit * self.unit)
        audio = resample(source, self.rate, self.model_config.sample_rate_hz)
        offset = start - first_unit * self.model_unit
        audio = fit_length(audio[offset:], stop - start)
        # Past the song's end the whole-song signal is zero, not resampler ringing.
        audio[max(0, min(stop, self.n_model_samples) - start):] = 0.0
        audio[:max(0, min(stop, 0) - start)] = 0.0
        return audio
