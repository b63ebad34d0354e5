"""The input pipelines, composed from sources, patches and augment: tracks -> tf.data batches.

Both datasets yield `(mix, vocals, frame_weights)`: float32 (batch, bins,
frames), (batch, bins, frames), (batch, 1, frames) (with `loss_sources`
"both", the vocals and accompaniment stacked: (batch, bins, frames, 2)), the magnitudes divided
by the mix patch's maximum and frame weights 0 on padding (see
`pipelines.patches`), as `keras_unet.core.steps.MaskModel` trains on them.

All tracks' waveforms are put back to back in two constant tensors on the
CPU (vocals, accompaniment; (channels, samples)), captured by the map
functions, so a patch costs one slice of each and one short STFT: no decode,
no Python in the loop.

Training (`make_train_dataset`), epoch after epoch in one stream:
    Dataset.range(first_epoch, ...)
        the epochs; epoch e's patches depend only on (seed, e), so a run
        resumed at epoch e continues the sequence where it stopped, and the
        same seed gives the same first epoch in a fresh process.
    flat_map(one epoch):
        Dataset.range(...) of candidate patches k, each seeded by
        fold_in((seed, e), k);
        map(_training_example), parallel
            stateless draws from that seed: vocals track, pitch shift and
            start, the accompaniment's track and start (remix), gains,
            channel swaps and channel -> waveform crops and frame weights.
        filter(kept)
            silent-vocals patches pass with the probability that makes them
            `silent_patch_rate` of the epoch (`patches.silent_keep_probability`).
        take(patches_per_epoch rounded down to whole batches)
    batch(batch_size, drop_remainder=True)
        an epoch holds whole batches, so no batch spans two epochs.
    [copy_to_device(accelerator)]
        with `device`: the waveform crops move to the accelerator, and the
        STFT stage below runs there instead of on the host's CPU.
    map(_spectra), parallel
        STFT -> magnitude -> patch -> normalise, on whole batches: one large
        STFT costs less than many small ones.
    [distribute(data service)]
        with `data_service`: the steps above run on tf.data service workers
        (other processes or hosts), each taking whole epochs, and the
        batches stream to this process. The dispatcher receives the
        dataset's graph with the tracks' waveforms in it: 80 MB for MIR-1K,
        1.5 GB for MUSDB18's training tracks at 8192 Hz, near protobuf's
        2 GB limit for a graph.
    prefetch(AUTOTUNE)
Keras `fit` reads it with `steps_per_epoch` and keeps one iterator for the
whole run (`epochs=None`: endless); `epochs=N` makes it N epochs long.
There is no shuffle buffer: each patch is an independent random draw, so the
stream is already in random order and a buffer would only cost memory.

Validation (`make_validation_dataset`): the same crops and `_spectra`, over
fixed tiles (every track cut at 0, T*hop, 2*T*hop, ...; each channel an
example with `stereo_as_examples`), no augmentation, identical on every
iteration, the last batch possibly smaller.
"""

import dataclasses
import functools
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_unet.core.config import RunConfig
from pipelines import augment, patches

_ENDLESS = 2**62  # an end no run reaches: Dataset.range(n, _ENDLESS) does not end in practice

# Names of the uniform draws behind one training example, in order.
_DRAWS = ("vocals_track", "accompaniment_track", "vocals_start", "accompaniment_start",
          "vocals_gain", "accompaniment_gain", "vocals_swap", "accompaniment_swap",
          "channel", "keep")
_PITCH_DRAW = 1  # the pitch shift's draw: its own fold of the example's seed, so the
# draws above stay those of a run without it


@dataclasses.dataclass(frozen=True)
class _Waveforms:
    """All tracks back to back, on the CPU.

    Args:
        vocals: float32 (channels, total samples).
        accompaniment: float32 (channels, total samples).
        begins: int64 (tracks,), where each track starts.
        lengths: int64 (tracks,), each track's samples.
    """

    vocals: tf.Tensor
    accompaniment: tf.Tensor
    begins: tf.Tensor
    lengths: tf.Tensor

    @property
    def n_tracks(self) -> int:
        return self.lengths.shape[0]

    @property
    def channels(self) -> int:
        return self.vocals.shape[0]


def make_train_dataset(tracks, config: RunConfig, batch_size: int, seed: int,
                       first_epoch: int = 0, epochs: Optional[int] = None,
                       data_service: Optional[str] = None,
                       device: Optional[str] = None, spectra: bool = True) -> tf.data.Dataset:
    """Random training patches, new ones every epoch (see the module docstring).

    Args:
        tracks: non-empty list of `pipelines.sources.Track`.
        config: the run; `config.stft` shapes the patches, `config.data` sets
            augmentation, the silent-patch rate and `patches_per_epoch`.
        batch_size: patches per batch.
        seed: seed of the draws; the same seed gives the same epochs.
        first_epoch: the first epoch to draw (0-based): a resumed run's.
        epochs: how many epochs the dataset holds (None: endless).
        data_service: address of a tf.data service dispatcher
            ("grpc://host:port") whose workers make the batches (None: here).
        device: an accelerator ("/GPU:0") to run the STFT stage on (None: the
            host's CPU, with the rest of the pipeline).
        spectra: False leaves out the STFT stage: batches of the waveform
            crops, dicts of vocals and accompaniment float32 (batch, crop
            samples) and frame_weights (batch, frames); what the host still
            computes when an accelerator takes the STFT (benchmarks).

    Returns:
        A `tf.data.Dataset` of `patches_per_epoch // batch_size` batches per
        epoch, `(mix, vocals, frame_weights)`: float32 (batch, bins, frames),
        (batch, bins, frames), (batch, 1, frames).

    Raises:
        ValueError: no tracks, or `batch_size` outside [1, patches_per_epoch].
    """
    _check(tracks, batch_size)
    if batch_size > config.data.patches_per_epoch:
        raise ValueError(f"`batch_size` ({batch_size}) must not exceed `patches_per_epoch` "
                         f"({config.data.patches_per_epoch}): an epoch would hold no batch")
    waveforms = _waveforms(tracks, config.data.stereo_as_examples)
    silent = float(np.mean([patches.silent_share(track.vocals, config.stft) for track in tracks]))
    keep_probability = patches.silent_keep_probability(silent, config.data.silent_patch_rate)
    n_batches = config.data.patches_per_epoch // batch_size

    last_epoch = _ENDLESS if epochs is None else first_epoch + epochs
    dataset = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(functools.partial(
        _epoch_examples, seed=seed, n_examples=n_batches * batch_size, waveforms=waveforms,
        config=config, keep_probability=keep_probability))
    dataset = dataset.batch(batch_size, drop_remainder=True)
    if device is not None:
        dataset = dataset.apply(tf.data.experimental.copy_to_device(device))
    if spectra:
        with tf.device(device or "/CPU:0"):
            dataset = dataset.map(functools.partial(_spectra, config=config),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    if data_service is not None:
        # No job name: each iterator (one a run) is a job of its own, never
        # shared with another run on the same dispatcher.
        dataset = dataset.apply(tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=data_service))
    if epochs is not None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(epochs * n_batches))
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())


def _epoch_examples(epoch, seed: int, n_examples: int, waveforms: "_Waveforms",
                    config: RunConfig, keep_probability: float) -> tf.data.Dataset:
    """One epoch's `n_examples` kept training examples, drawn from (seed, epoch) alone."""
    epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
    candidates = tf.data.Dataset.range(_ENDLESS).map(
        lambda k: tf.random.experimental.stateless_fold_in(epoch_seed, k))
    examples = candidates.map(
        functools.partial(_training_example, waveforms=waveforms, config=config,
                          keep_probability=keep_probability),
        num_parallel_calls=tf.data.AUTOTUNE)
    return examples.filter(_is_kept).take(n_examples)


def make_validation_dataset(tracks, config: RunConfig, batch_size: int) -> tf.data.Dataset:
    """Fixed validation patches tiling every track, identical on every iteration.

    Args:
        tracks: non-empty list of `pipelines.sources.Track`.
        config: the run.
        batch_size: patches per batch (the last batch may be smaller).

    Returns:
        A finite `tf.data.Dataset` of `(mix, vocals, frame_weights)` as in
        `make_train_dataset`.

    Raises:
        ValueError: no tracks, or `batch_size` below 1.
    """
    _check(tracks, batch_size)
    waveforms = _waveforms(tracks, config.data.stereo_as_examples)
    dataset = tf.data.Dataset.from_tensor_slices(_tiles(tracks, config, waveforms.channels))
    dataset = dataset.map(functools.partial(_tile_example, waveforms=waveforms, config=config),
                          num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(functools.partial(_spectra, config=config),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())


def validation_patch(tracks, config: RunConfig) -> dict:
    """One fixed validation example to draw and play (TensorBoard).

    The tile with the most vocal energy (channel 0) among those that lie
    wholly inside their track, so the picture is full of music; among all
    tiles when no track is a patch long. Made as `make_validation_dataset`
    makes it.

    Args:
        tracks: non-empty list of `pipelines.sources.Track` (validation).
        config: the run.

    Returns:
        A dict:
            name: the track's name.
            start_seconds: where the tile starts in the track.
            mix_waveform: float32 (T*hop,), the mix from the tile's start,
                zeros past the track's end. `transforms.stft` of it gives
                T + 1 frames; its first T are the patch's (the first
                `transforms.lead_frames` differ slightly when the tile does not
                start at 0: they miss the samples before it).
            n_samples: int, samples of `mix_waveform` inside the track.
            mix: float32 (bins, frames), normalised mix magnitude.
            vocals: float32 (bins, frames), vocals magnitude on the same scale.
            frame_weights: float32 (1, frames).

    Raises:
        ValueError: no tracks.
    """
    _check(tracks, batch_size=1)
    length = patches.patch_samples(config.stft)
    candidates = [(start + length <= track.n_samples,
                   float(np.sum(np.square(track.vocals[start:start + length, 0]))), index, start)
                  for index, track in enumerate(tracks)
                  for start in patches.tile_starts(track.n_samples, config.stft)]
    _, _, index, start = max(candidates)
    track, start = tracks[index], int(start)
    waveforms = _waveforms([track], config.data.stereo_as_examples)
    tile = {"track": tf.constant(0, tf.int64), "start": tf.constant(start, tf.int64),
            "channel": tf.constant(0, tf.int64)}
    example = _tile_example(tile, waveforms, config)
    batch = {name: value[None] for name, value in example.items()}  # a batch of one
    mix, targets, weights = (value[0].numpy() for value in _spectra(batch, config))
    vocals = targets[..., 0] if targets.ndim == 3 else targets  # (bins, frames)
    mix_waveform = np.zeros(length, np.float32)
    real = track.mix[start:start + length, 0]
    mix_waveform[:len(real)] = real
    return {"name": track.name, "start_seconds": start / config.stft.sample_rate_hz,
            "mix_waveform": mix_waveform, "n_samples": len(real), "mix": mix,
            "vocals": vocals, "frame_weights": weights}


def _options() -> tf.data.Options:
    """Without tf.data's default graph rewrites.

    A rewrite serialises the dataset graph, captured waveforms included:
    measured with 6.5 h of mono audio (MUSDB18's train subset, 1.5 GB), one
    more copy of all of it in memory (+1.7 GB) and 2 s more in the first
    epoch. The stages are parallel and prefetched by hand, so the rewrites
    add nothing here.
    """
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return options


def _check(tracks, batch_size: int) -> None:
    if not tracks:
        raise ValueError("`tracks` is empty: the pipeline needs at least one track")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: {batch_size}")


def _waveforms(tracks, stereo: bool) -> _Waveforms:
    """Stacks the tracks back to back: 2 channels with `stereo` (mono doubled), else 1.

    Memory: one copy of the tracks in TensorFlow (a second, in NumPy, lives
    only while each stem is stacked).
    """
    channels = 2 if stereo else 1
    lengths = np.array([track.n_samples for track in tracks], np.int64)
    begins = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def stacked(stem):  # -> (channels, total samples)
        out = np.empty((channels, int(lengths.sum())), np.float32)
        for track, begin, length in zip(tracks, begins, lengths):
            samples = getattr(track, stem)  # (samples, c)
            if channels == 1 and samples.shape[1] > 1:
                samples = samples.mean(axis=1, keepdims=True)
            out[:, begin:begin + length] = samples.T  # a mono track fills both channels
        with tf.device("/CPU:0"):  # the data stay in host memory, next to tf.data
            return tf.constant(out)

    with tf.device("/CPU:0"):
        return _Waveforms(vocals=stacked("vocals"), accompaniment=stacked("accompaniment"),
                          begins=tf.constant(begins), lengths=tf.constant(lengths))


def _tiles(tracks, config: RunConfig, channels: int) -> dict:
    """Every (track, start, channel) of the validation tiling, as int64 arrays."""
    rows = [(index, start, channel)
            for index, track in enumerate(tracks)
            for start in patches.tile_starts(track.n_samples, config.stft)
            for channel in range(channels)]
    track, start, channel = (np.array(column, np.int64) for column in zip(*rows))
    return {"track": track, "start": start, "channel": channel}


def _crop(source, waveforms: _Waveforms, track, start, config: RunConfig, pitch=None):
    """The crop of `source` ((channels, samples) of all tracks) for a patch: (channels, crop).

    With a `pitch` ratio (float64 scalar) the track is read shifted by it
    (`augment.shifted_slice`), `start` on the shifted track's time axis.
    """
    begin, length = patches.crop_start(start, config.stft), patches.crop_length(config.stft)
    if pitch is None:
        return patches.padded_slice(source, begin, length, track_begin=waveforms.begins[track],
                                    n_samples=waveforms.lengths[track])
    return augment.shifted_slice(source, begin, length, pitch,
                                 track_begin=waveforms.begins[track],
                                 n_samples=waveforms.lengths[track])


def _training_example(example_seed, waveforms: _Waveforms, config: RunConfig, keep_probability):
    """One random training example from its stateless seed, int64 (2,).

    A frame counts (weight 1) when the window of either source sees its
    track: with remix the two sources can lie at different places of the
    patch, and a frame with accompaniment only still teaches a zero mask.

    Returns:
        dict: vocals, accompaniment float32 (crop_length,) after augmentation;
        frame_weights float32 (frames,); keep, bool scalar (the silence policy).
    """
    stft, data = config.stft, config.data
    draws = dict(zip(_DRAWS, tf.unstack(
        tf.random.stateless_uniform([len(_DRAWS)], example_seed))))

    vocals_track = augment.pick_index(draws["vocals_track"], waveforms.n_tracks)
    pitch = None
    vocals_length = waveforms.lengths[vocals_track]
    if data.augment_pitch_semitones > 0:
        pitch_draw = tf.random.stateless_uniform(
            [], tf.random.experimental.stateless_fold_in(example_seed, _PITCH_DRAW))
        pitch = augment.pitch_ratio(pitch_draw, data.augment_pitch_semitones)
        vocals_length = augment.shifted_length(vocals_length, pitch)  # the track as heard
    vocals_start = patches.random_start(draws["vocals_start"], vocals_length, stft)
    if data.augment_remix:
        accompaniment_track = augment.pick_index(draws["accompaniment_track"],
                                                 waveforms.n_tracks)
        accompaniment_start = patches.random_start(
            draws["accompaniment_start"], waveforms.lengths[accompaniment_track], stft)
    else:  # the same place of the same track (the same draw on its unshifted length)
        accompaniment_track = vocals_track
        accompaniment_start = patches.random_start(
            draws["vocals_start"], waveforms.lengths[vocals_track], stft)
    accompaniment_length = waveforms.lengths[accompaniment_track]

    vocals = _crop(waveforms.vocals, waveforms, vocals_track, vocals_start, config, pitch)
    accompaniment = _crop(waveforms.accompaniment, waveforms, accompaniment_track,
                          accompaniment_start, config)  # (channels, crop)
    channel = 0
    if data.stereo_as_examples:
        if data.augment_swap:
            vocals = augment.swap_channels(vocals, draws["vocals_swap"])
            accompaniment = augment.swap_channels(accompaniment, draws["accompaniment_swap"])
        channel = augment.pick_index(draws["channel"], waveforms.channels)
    vocals, accompaniment = vocals[channel], accompaniment[channel]  # (crop,)

    real_samples = patches.real_sample_count(patches.crop_start(vocals_start, stft),
                                             patches.crop_length(stft), vocals_length)
    silent = patches.is_silent(vocals, real_samples)
    if data.augment_gain:
        vocals = vocals * augment.gain(draws["vocals_gain"])
        accompaniment = accompaniment * augment.gain(draws["accompaniment_gain"])
    weights = tf.maximum(patches.frame_weights(vocals_start, vocals_length, stft),
                         patches.frame_weights(accompaniment_start, accompaniment_length, stft))
    keep = tf.logical_or(tf.logical_not(silent), draws["keep"] < keep_probability)
    return {"vocals": vocals, "accompaniment": accompaniment, "frame_weights": weights,
            "keep": keep}


def _is_kept(example):
    return example["keep"]


def _tile_example(tile, waveforms: _Waveforms, config: RunConfig):
    """The validation example of one tile: crops (crop_length,) and frame weights (frames,)."""
    track, start, channel = tile["track"], tile["start"], tile["channel"]
    vocals = _crop(waveforms.vocals, waveforms, track, start, config)[channel]
    accompaniment = _crop(waveforms.accompaniment, waveforms, track, start, config)[channel]
    weights = patches.frame_weights(start, waveforms.lengths[track], config.stft)
    return {"vocals": vocals, "accompaniment": accompaniment, "frame_weights": weights}


def _spectra(batch, config: RunConfig):
    """Crops -> normalised magnitude patches: the model's (mix, targets, frame_weights).

    The targets are the vocals (batch, bins, frames), or with
    `TrainConfig.loss_sources` "both" the vocals and the accompaniment
    stacked, (batch, bins, frames, 2), as `keras_unet.core.steps.masked_l1_loss`
    takes them.
    """
    mix, vocals, accompaniment = patches.normalise(*patches.magnitudes(
        batch["vocals"], batch["accompaniment"], config.stft))  # (batch, bins, frames) each
    targets = vocals
    if config.train.loss_sources == "both":
        targets = tf.stack([vocals, accompaniment], axis=-1)  # (batch, bins, frames, 2)
    return mix, targets, batch["frame_weights"][:, None, :]  # weights (batch, 1, frames)
