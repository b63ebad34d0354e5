"""A song streamed through the model in blocks: any rate, channel count and length, full band.

`Separator` produces a song in output blocks of `block_seconds`. Each block
reads what it needs: its own samples at the song's rate, and at the model's
rate the patches around it (`keras_unet.core.masking`: normalised patches,
the model on fixed-size batches, the cross-faded overlap-add), computed once
and kept only while a later block can still reach them. So memory does not
grow with the song, and the result equals separating it whole: the frames
of each segment are those of the whole song (`transforms.segment_bounds`,
`segment_frames`), and resampling starts on an instant both rates sample.
The block's vocals follow the full-band rule of `keras_unet.separation.full_band`.

The time of each stage (read and resample, model, reconstruction) adds up in
the `Stopwatch` the separator is given, for `separate.py --timings`.
"""

import dataclasses
import math
import sys
import time
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from keras_unet.core.audio_io import resample
from keras_unet.core.config import INFERENCE_BATCH_SIZE
from keras_unet.core.masking import (batches_of, frame_patches, mask_of_batch, overlap_add,
                                     patch_hop, patch_start_frame, patches_touching)
from keras_unet.core.precision import model_for_precision
from keras_unet.core.saving import run_config_of
from keras_unet.core.transforms import (frame_count, frames_touching, istft, lead_frames,
                                        segment_frames)
from keras_unet.separation.full_band import fit_length, map_mask, model_frame_positions
from keras_unet.separation.song import RESAMPLE_MARGIN_SECONDS, Song
from keras_unet.separation.stopwatch import Stopwatch

BLOCK_SECONDS = 10.0
"""Output block of `Separator.separate_blocks`: peak memory grows with it, not with the song."""


@dataclasses.dataclass
class _Patches:
    """Patch masks and mix spectra computed so far, keyed by global patch index."""

    masks: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    spectra: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    next_patch: int = 0


class Separator:
    """Separates audio of any rate, channel count and length, full band (module docstring).

    Channels go through the model together, as one batch. The model runs in
    a `tf.function` of a fixed input shape (batch_size, bins, patch_frames),
    traced once whatever the songs' lengths (`trace_count` counts the traces).

    Args:
        model: a `MaskModel` (`keras_unet.core.saving.load_model`).
        precision: "auto", "float32" or "mixed_bfloat16" (see
            `keras_unet.core.precision`).
        batch_size: patches per model call.
        block_seconds: output block length (memory, not results, depends on it).
        progress: show a tqdm progress bar on stderr.
        stopwatch: where the time of each stage adds up (a new one by default).
    """

    def __init__(self, model, precision: str = "auto", batch_size: int = INFERENCE_BATCH_SIZE,
                 block_seconds: float = BLOCK_SECONDS, progress: bool = False,
                 stopwatch: Optional[Stopwatch] = None):
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1. Received: {batch_size}")
        if block_seconds <= 0:
            raise ValueError(f"`block_seconds` must be positive. Received: {block_seconds}")
        self.stft_config = run_config_of(model).stft
        self.model = model_for_precision(model, precision)
        self.batch_size = batch_size
        self.block_seconds = block_seconds
        self.progress = progress
        self.trace_count = 0
        self.stopwatch = stopwatch or Stopwatch()
        config = self.stft_config
        # A request can start before the previous one: by the resampling margin,
        # the rounding down to an instant both rates sample (at most 1 s: see
        # `Song`) and the frames that overlap a block's first sample.
        reach_seconds = RESAMPLE_MARGIN_SECONDS + 1.0
        reach_frames = math.ceil(reach_seconds * config.sample_rate_hz
                                 / config.hop_samples) + lead_frames(config) + 2
        self._reach_back_patches = 1 + math.ceil(reach_frames / patch_hop(config))
        self._model_function = tf.function(
            self._masks_of_batch, input_signature=[
                tf.TensorSpec([batch_size, config.n_bins, config.patch_frames], tf.float32)])

    @property
    def look_back_seconds(self) -> float:
        """How far before the furthest sample read so far `separate_blocks` may read again.

        An upper bound, in seconds of the song, for `block_seconds` blocks: a
        reader that decodes forward only (`keras_unet.core.audio_io.open_audio`)
        keeps this much audio behind the furthest sample and never decodes
        again. The furthest read is one model computation: max(batch_size,
        the patches a block spans) patches past the block being written. Later
        reads start no earlier than that block, less the margins: resampling
        on both sides, rounding down to an instant both rates sample (at most
        1 s each), and a window's overlap with the previous block.
        """
        config = self.stft_config
        frame_seconds = config.hop_samples / config.sample_rate_hz
        hop_seconds = patch_hop(config) * frame_seconds
        block_patches = math.ceil(self.block_seconds / hop_seconds) + 2
        computed = ((max(self.batch_size, block_patches) + 1) * hop_seconds
                    + config.patch_frames * frame_seconds)
        margins = 2 * (RESAMPLE_MARGIN_SECONDS + 1.0) + 2 * config.n_fft / config.sample_rate_hz
        return computed + self.block_seconds + margins

    def _masks_of_batch(self, batch):
        self.trace_count += 1  # runs only while tracing
        return mask_of_batch(self.model, batch)

    # --- public API ---

    def separate(self, samples: np.ndarray, sample_rate_hz: int) -> Tuple[np.ndarray, np.ndarray]:
        """Vocals and accompaniment, full band, at the input's rate.

        Args:
            samples: float32 (samples, channels) mix.
            sample_rate_hz: its rate.

        Returns:
            (vocals, accompaniment), float32 (samples, channels) each; they sum
            to `samples` (accompaniment = mix - vocals).
        """
        samples = _as_2d(samples)
        vocals = np.empty_like(samples)
        for start, _, block_vocals in self.separate_blocks(
                _array_reader(samples), len(samples), samples.shape[1], sample_rate_hz):
            vocals[start:start + len(block_vocals)] = block_vocals
        return vocals, samples - vocals

    def model_rate_separate(self, samples: np.ndarray,
                            sample_rate_hz: int) -> Tuple[np.ndarray, np.ndarray]:
        """The naive baseline: separate at the model's rate, resample the vocals up.

        The vocals are band-limited to the model's Nyquist frequency; the
        accompaniment (mix - vocals) keeps everything above it.

        Returns:
            (vocals, accompaniment) as in `separate`.
        """
        samples = _as_2d(samples)
        model_rate = self.stft_config.sample_rate_hz
        low = resample(samples, sample_rate_hz, model_rate)
        _, _, low_vocals = next(self.separate_blocks(
            _array_reader(low), len(low), low.shape[1], model_rate,
            block_seconds=len(low) / model_rate + 1.0))
        vocals = fit_length(resample(low_vocals, model_rate, sample_rate_hz), len(samples))
        return vocals, samples - vocals

    def separate_blocks(self, read: Callable[[int, int], np.ndarray], n_samples: int,
                        n_channels: int, sample_rate_hz: int,
                        block_seconds: Optional[float] = None,
                        on_progress: Optional[Callable[[int, int], None]] = None
                        ) -> Iterator[tuple]:
        """Separates a song block by block, in order.

        Args:
            read: read(start, stop) -> float32 (stop - start, channels) for
                0 <= start < stop <= n_samples.
            n_samples: samples of the song.
            n_channels: its channels.
            sample_rate_hz: its rate.
            block_seconds: output block length (default: the separator's).
            on_progress: called as on_progress(samples done, n_samples) after
                each block is separated, before it is yielded: the progress
                a caller shows (the web page's bar). An exception it raises
                stops the separation there (how a caller cancels).

        Yields:
            (start, mix, vocals): the block's first sample and float32
            (block samples, channels) mix and vocals; the blocks tile
            [0, n_samples).
        """
        if n_samples < 1:
            raise ValueError(f"`n_samples` must be >= 1. Received: {n_samples}")
        song = Song(read, n_samples, n_channels, sample_rate_hz, self.stft_config)
        block = max(1, int(round((block_seconds or self.block_seconds) * sample_rate_hz)))
        cache = _Patches()
        bar = _progress_bar(n_samples, sample_rate_hz, self.progress)
        try:
            for start in range(0, n_samples, block):
                stop = min(n_samples, start + block)
                mix, vocals = self._separate_block(song, cache, start, stop)
                bar.update((stop - start) / sample_rate_hz)
                if on_progress is not None:
                    on_progress(stop, n_samples)
                yield start, mix, vocals
        finally:
            bar.close()

    def full_band_mask(self, samples: np.ndarray, sample_rate_hz: int):
        """The model's mask on the song's own STFT grid, and the mix spectrogram there (for plots).

        Below the model's Nyquist `separate` applies the same mask on the
        model's own grid; this is the view of it at the song's rate.

        Args:
            samples: float32 (samples, channels), a song or an excerpt.
            sample_rate_hz: its rate.

        Returns:
            (mask, spectrum, config): float32 mask and complex64 mix spectrum
            (channels, bins, frames) on the grid of `config`, the STFT
            settings at `sample_rate_hz` (`full_rate_stft_config`).
        """
        samples = _as_2d(samples)
        song = Song(_array_reader(samples), len(samples), samples.shape[1], sample_rate_hz,
                     self.stft_config)
        n_frames = frame_count(len(samples), song.config)
        mask = self._frames_mask(song, _Patches(), 0, n_frames - 1)
        _, segment = song.frames_audio(0, n_frames, song.config, self.stopwatch)
        return mask, segment_frames(segment, song.config, n_frames).numpy(), song.config

    # --- one block ---

    def _separate_block(self, song: Song, cache: _Patches, start: int, stop: int):
        config = song.config
        if config == self.stft_config:  # the model's own rate: its band is all there is
            return song.read_padded(start, stop), self._model_rate_parts(
                song, cache, start, stop)[1]
        hop, n_channels = config.hop_samples, song.n_channels
        first, last = frames_touching(start, stop, config)
        segment_start, segment = song.frames_audio(first, last + 1, config,
                                                   self.stopwatch)  # (channels, samples)
        # A model-rate span around the segment, with a margin on each side and
        # starting on an instant both rates sample, so blocks join seamlessly.
        margin = RESAMPLE_MARGIN_SECONDS * song.rate
        first_unit = math.floor((segment_start - margin) / song.unit)
        last_unit = math.ceil((segment_start + segment.shape[1] + margin) / song.unit)
        held, vocals = self._model_rate_parts(song, cache, first_unit * song.model_unit,
                                              last_unit * song.model_unit)
        mask = self._frames_mask(song, cache, first, last)
        began = time.perf_counter()
        both = resample(np.concatenate([held, vocals], axis=1),
                        self.stft_config.sample_rate_hz, song.rate)
        both = fit_length(both[segment_start - first_unit * song.unit:], segment.shape[1])
        rest = segment - both[:, :n_channels].T  # what the model's rate cannot hold
        spectrum = segment_frames(rest, config, last + 1 - first)  # (channels, bins, frames)
        upper = istft(spectrum * tf.cast(mask, tf.complex64), config, stop - first * hop)
        block = slice(start - segment_start, stop - segment_start)
        vocals = both[block, n_channels:] + tf.transpose(upper[:, start - first * hop:]).numpy()
        self.stopwatch.add("reconstruction", began)
        return np.ascontiguousarray(segment[:, block].T), vocals

    def _model_rate_parts(self, song: Song, cache: _Patches, start: int, stop: int):
        """The mix and its vocals (mask * X) at the model's rate, from the cached spectra.

        Args:
            song: the song.
            cache: its patches.
            start, stop: model-rate samples start..stop-1 (may reach outside the song).

        Returns:
            (mix, vocals): float32 (stop - start, channels) each, zeros outside the song.
        """
        config = self.stft_config
        hop, n_channels = config.hop_samples, song.n_channels
        parts = np.zeros((stop - start, 2 * n_channels), np.float32)
        lo, hi = max(start, 0), min(stop, song.n_model_samples)
        if lo < hi:
            first, last = frames_touching(lo, hi, config)
            mask, spectrum = self._model_mask(song, cache, first, last)
            began = time.perf_counter()
            stacked = np.concatenate([spectrum, spectrum * mask], axis=0)  # mix, then vocals
            waveforms = istft(stacked, config, hi - first * hop)[:, lo - first * hop:]
            parts[lo - start:hi - start] = tf.transpose(waveforms).numpy()
            self.stopwatch.add("reconstruction", began)
        return parts[:, :n_channels], parts[:, n_channels:]

    def _frames_mask(self, song: Song, cache: _Patches, first: int, last: int) -> np.ndarray:
        """Mask of the song-rate frames first..last. float32 (channels, bins, frames)."""
        config, model_config = song.config, self.stft_config
        frames = np.arange(first, last + 1)
        # The model frames around these frames' centres, and their mask: the
        # interpolation reads floor(position) and floor(position) + 1, also
        # where a position falls exactly on a model frame.
        positions = model_frame_positions(frames[[0, -1]], config, model_config)
        model_first = int(np.clip(np.floor(positions[0]), 0, song.n_model_frames - 1))
        model_last = int(np.clip(np.floor(positions[1]) + 1, 0, song.n_model_frames - 1))
        model_mask, model_spectrum = self._model_mask(song, cache, model_first, model_last)
        began = time.perf_counter()
        mask = map_mask(model_mask, np.abs(model_spectrum), model_first, song.n_model_frames,
                        frames, model_config, config)
        self.stopwatch.add("reconstruction", began)
        return mask

    def _model_mask(self, song: Song, cache: _Patches, first: int, last: int):
        """Mask (float32) and mix spectrum (complex64) of model frames first..last.

        Returns:
            (mask, spectrum), each (channels, bins, last + 1 - first).
        """
        config = self.stft_config
        first_patch, last_patch = patches_touching(first, last, song.n_patches, config)
        # Patches that end before any frame a later request can reach back to
        # are done with (`_reach_back_patches`).
        for index in [k for k in cache.masks if k < first_patch - self._reach_back_patches]:
            del cache.masks[index], cache.spectra[index]
        if cache.next_patch <= last_patch:
            # Enough patches for whole batches of all channels, at least up to last_patch.
            stop = max(last_patch + 1, cache.next_patch + self.batch_size)
            self._compute_patches(song, cache, cache.next_patch, min(stop, song.n_patches))

        began = time.perf_counter()
        indices = range(first_patch, last_patch + 1)
        # Every patch that holds a frame of first..last is here, so their
        # cross-fade is the whole song's there.
        masks = np.stack([cache.masks[index] for index in indices], axis=1)  # (c, patches, F, T)
        mask = overlap_add(masks, config).numpy()  # (channels, bins, frames the patches span)
        # The spectrum of those frames: each patch's first hop frames, then the
        # last patch whole (a frame is taken from the latest patch that holds it).
        hop = patch_hop(config)
        spectra = [cache.spectra[index] for index in indices]
        spectrum = np.concatenate([part[:, :, :hop] for part in spectra[:-1]] + spectra[-1:],
                                  axis=-1)
        frames = slice(first - patch_start_frame(first_patch, config),
                       last + 1 - patch_start_frame(first_patch, config))
        self.stopwatch.add("model", began)
        return mask[:, :, frames], spectrum[:, :, frames]

    def _compute_patches(self, song: Song, cache: _Patches, first: int, stop: int):
        """Runs the model on patches first..stop-1 of every channel and caches them."""
        config = self.stft_config
        frame_lo = patch_start_frame(first, config)
        frame_hi = patch_start_frame(stop - 1, config) + config.patch_frames  # exclusive
        spectrum = song.model_spectrum(frame_lo, frame_hi, self.stopwatch)
        began = time.perf_counter()
        spectra = frame_patches(spectrum, config).numpy()  # (channels, patches, bins, T)
        patches = np.abs(spectra)
        flat = patches.reshape((-1,) + patches.shape[2:])  # (channels * patches, bins, T)
        masks = self._masks_of(flat).reshape(patches.shape)
        for offset, index in enumerate(range(first, stop)):
            cache.masks[index] = masks[:, offset]
            cache.spectra[index] = spectra[:, offset]
        cache.next_patch = stop
        self.stopwatch.add("model", began)

    def _masks_of(self, patches: np.ndarray) -> np.ndarray:
        """The traced model on fixed-size batches (`masking.batches_of`). (n, bins, T) -> same."""
        masks = [self._model_function(batch) for batch in batches_of(patches, self.batch_size)]
        return np.concatenate([mask.numpy() for mask in masks])[:len(patches)]


def _as_2d(samples) -> np.ndarray:
    samples = np.asarray(samples, np.float32)
    return samples[:, np.newaxis] if samples.ndim == 1 else samples


def _array_reader(samples: np.ndarray):
    return lambda start, stop: samples[start:stop]


class _NoBar:
    def update(self, _):
        pass

    def close(self):
        pass


def _progress_bar(n_samples: int, sample_rate_hz: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=n_samples / sample_rate_hz, unit="s", unit_scale=False,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
                file=sys.stderr, leave=False)
