"""The input pipeline: sources, patch geometry, augmentation, the two datasets.

Known answers: a sine lands in its bin; validation tiles equal the frames of
a whole-track STFT; padding frames are zeros with weight 0; the silent share
of an epoch is what was asked; the resampled length is duration x rate.
"""

import dataclasses
import os

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from keras_unet.core import audio_io, transforms
from keras_unet.core.config import DataConfig, RunConfig, StftConfig
from pipelines import augment, datasets, patches, sources
from pipelines.sources import DataError, Track

SYNTHETIC_RATE_HZ = 44100
SYNTHETIC_SECONDS = 8.0
SYNTHETIC_TRACKS = ("Synthetic - One", "Synthetic - Three", "Synthetic - Two")


def _config(stft=None, **data) -> RunConfig:
    return RunConfig(stft=stft or StftConfig(), data=DataConfig(**data))


def _epoch(dataset) -> list:
    return [tuple(value.numpy() for value in batch) for batch in dataset]


def _sine(frequency_hz, seconds, rate_hz, amplitude=0.3):
    time_s = np.arange(int(seconds * rate_hz)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * frequency_hz * time_s)).astype(np.float32)


def _write_track(folder, vocals, accompaniment):
    """A MUSDB18-HQ track folder: mixture and the four stems, stereo .wav."""
    os.makedirs(folder)
    silence = np.zeros_like(vocals)
    stems = {"vocals": vocals, "drums": accompaniment, "bass": silence, "other": silence,
             "mixture": vocals + accompaniment}
    for name, mono in stems.items():
        soundfile.write(os.path.join(folder, f"{name}.wav"), np.stack([mono, mono], axis=1),
                        SYNTHETIC_RATE_HZ, subtype="FLOAT")


@pytest.fixture(scope="module")
def embedded():
    """The bundled clip's (train, validation) tracks at the default settings."""
    return sources.load_tracks(RunConfig())


@pytest.fixture(scope="module")
def musdb_hq_root(tmp_path_factory):
    """A MUSDB18-HQ-style root: 3 tracks of 8 s, 440 Hz vocals over 1000 Hz accompaniment."""
    root = tmp_path_factory.mktemp("musdb18hq")
    vocals = _sine(440.0, SYNTHETIC_SECONDS, SYNTHETIC_RATE_HZ)
    accompaniment = _sine(1000.0, SYNTHETIC_SECONDS, SYNTHETIC_RATE_HZ)
    for name in SYNTHETIC_TRACKS:
        _write_track(root / "train" / name, vocals, accompaniment)
    return str(root)


# === Embedded clip ===

def test_training_batches_have_the_model_shapes_and_range(embedded):
    train, _ = embedded
    config = RunConfig()
    epoch = _epoch(datasets.make_train_dataset(train, config, batch_size=16, seed=0, epochs=1))

    assert len(epoch) == config.data.patches_per_epoch // 16
    for mix, vocals, weights in epoch:
        assert mix.shape == vocals.shape == (16, 513, 128)
        assert weights.shape == (16, 1, 128)
        assert mix.dtype == vocals.dtype == weights.dtype == np.float32
        assert np.isfinite(mix).all() and np.isfinite(vocals).all()
        assert mix.min() >= 0.0 and vocals.min() >= 0.0
        np.testing.assert_allclose(mix.max(axis=(1, 2)), 1.0, rtol=1e-6)  # normalised
        assert set(np.unique(weights)) <= {0.0, 1.0}
        # The 4.6 s clip fills part of a 12 s patch; the rest is zeros, weight 0.
        assert 0 < weights.sum(axis=-1).max() < 128
        padding = np.broadcast_to(weights == 0.0, mix.shape)
        assert np.all(mix[padding] == 0.0) and np.all(vocals[padding] == 0.0)
        # Vocals exceed the mix's maximum only where the accompaniment cancels them.
        assert vocals.max() < 2.0


def test_epochs_differ_a_seed_repeats_them_and_a_resumed_stream_continues(embedded):
    train, _ = embedded
    config = RunConfig()
    n_batches = config.data.patches_per_epoch // 16

    def epochs(seed, first_epoch=0, count=1):
        return _epoch(datasets.make_train_dataset(train, config, batch_size=16, seed=seed,
                                                  first_epoch=first_epoch, epochs=count))

    two = epochs(3, count=2)
    first, second = two[:n_batches], two[n_batches:]
    assert len(second) == n_batches
    assert not np.allclose(first[0][0], second[0][0])  # every epoch draws new patches
    _assert_same_batches(epochs(3), first)  # the same seed, the same first epoch
    _assert_same_batches(epochs(3, first_epoch=1), second)  # a resumed run goes on from there
    assert not np.allclose(first[0][0], epochs(4)[0][0])


def test_the_stream_is_endless_without_a_number_of_epochs(embedded):
    train, _ = embedded
    config = RunConfig()
    dataset = datasets.make_train_dataset(train, config, batch_size=16, seed=0)
    beyond_two_epochs = 2 * (config.data.patches_per_epoch // 16) + 1
    assert len(list(dataset.take(beyond_two_epochs))) == beyond_two_epochs


def test_the_stft_stage_placed_on_a_device_makes_the_same_batches(embedded):
    train, _ = embedded
    config = RunConfig()
    here, copied = (_epoch(datasets.make_train_dataset(train, config, 16, seed=2, epochs=1,
                                                       device=device))
                    for device in (None, "/CPU:0"))
    _assert_same_batches(here, copied)


def _assert_same_batches(batches, expected):
    assert len(batches) == len(expected)
    for batch, other in zip(batches, expected):
        for value, other_value in zip(batch, other):
            np.testing.assert_array_equal(value, other_value)


def test_validation_is_identical_over_iterations_and_is_the_clip_stft(embedded):
    _, validation = embedded
    config = RunConfig()
    dataset = datasets.make_validation_dataset(validation, config, batch_size=16)
    first, second = _epoch(dataset), _epoch(dataset)

    assert len(first) == 1 and len(second) == 1
    for value, repeated in zip(first[0], second[0]):
        np.testing.assert_array_equal(value, repeated)
    mix, vocals, weights = first[0]
    track = validation[0]
    n_frames = transforms.frame_count(track.n_samples, config.stft)  # 17 for 1.5 s
    assert mix.shape == (1, 513, 128)
    np.testing.assert_array_equal(weights[0, 0], np.arange(128) < n_frames)
    expected = np.abs(transforms.stft(track.mix[:, 0], config.stft).numpy())
    np.testing.assert_allclose(mix[0, :, :n_frames], expected / expected.max(), atol=1e-5)
    assert np.all(mix[0, :, n_frames:] == 0.0)


def test_validation_patch_is_one_example_of_the_validation_set(embedded):
    _, validation = embedded
    config = RunConfig()
    example = datasets.validation_patch(validation, config)
    mix, vocals, weights = _epoch(datasets.make_validation_dataset(validation, config, 4))[0]

    assert example["mix_waveform"].shape == (128 * 768,)
    assert example["n_samples"] == validation[0].n_samples
    np.testing.assert_array_equal(example["mix_waveform"][:example["n_samples"]],
                                  validation[0].mix[:, 0])
    np.testing.assert_allclose(example["mix"], mix[0], atol=1e-6)
    np.testing.assert_allclose(example["vocals"], vocals[0], atol=1e-6)
    np.testing.assert_array_equal(example["frame_weights"], weights[0])


def test_the_bundled_clip_is_split_in_time(embedded):
    train, validation = embedded
    rate = RunConfig().stft.sample_rate_hz
    assert validation[0].n_samples == int(round(1.5 * rate))
    assert train[0].vocals.shape == (train[0].n_samples, 1)  # mono by default
    assert train[0].vocals.dtype == np.float32
    assert 4.0 * rate < train[0].n_samples < 5.0 * rate  # the 6.08 s clip minus 1.5 s


# === Patch geometry on tracks whose answer is known ===

@pytest.mark.parametrize("stft", [StftConfig(patch_frames=8),
                                  StftConfig(n_fft=256, hop_samples=64, patch_frames=8)])
def test_validation_tiles_are_the_frames_of_a_whole_track_stft(stft):
    rng = np.random.default_rng(0)
    n_samples = int(2.5 * stft.patch_frames * stft.hop_samples)  # three tiles, the last partial
    track = Track("noise", rng.normal(0.0, 0.1, (n_samples, 1)).astype(np.float32),
                  rng.normal(0.0, 0.1, (n_samples, 1)).astype(np.float32))
    batch = _epoch(datasets.make_validation_dataset([track], _config(stft), batch_size=8))[0]
    mix, _, weights = batch

    whole = np.abs(transforms.stft(track.mix[:, 0], stft).numpy())  # (bins, frames)
    n_frames = whole.shape[1]
    assert mix.shape[0] == 3
    tiled = np.concatenate(list(mix), axis=1)  # (bins, 3 * patch_frames)
    scales = [whole[:, i:i + stft.patch_frames].max()
              for i in range(0, n_frames, stft.patch_frames)]
    expected = np.concatenate([whole[:, i * stft.patch_frames:(i + 1) * stft.patch_frames] / scale
                               for i, scale in enumerate(scales)], axis=1)
    np.testing.assert_allclose(tiled[:, :n_frames], expected, atol=1e-5)
    np.testing.assert_array_equal(np.concatenate(list(weights[:, 0])),
                                  np.arange(3 * stft.patch_frames) < n_frames)


def test_random_start_keeps_long_tracks_inside_and_short_tracks_in_the_patch():
    stft = StftConfig()
    length = patches.patch_samples(stft)
    for n_samples in (3 * length, length // 3):
        starts = np.array([patches.random_start(u, n_samples, stft).numpy()
                           for u in (0.0, 0.5, 0.999999)])
        if n_samples >= length:
            assert starts[0] == 0 and starts[-1] == n_samples - length
        else:
            assert starts[0] == n_samples - length and starts[-1] == 0
        assert np.all(np.diff(starts) > 0)


def test_frame_weights_mark_the_frames_that_see_the_track():
    stft = StftConfig()
    n_samples = 12288
    at_start = patches.frame_weights(0, n_samples, stft).numpy()
    assert at_start.sum() == transforms.frame_count(n_samples, stft)
    assert at_start[0] == 1.0 and at_start[-1] == 0.0
    late = patches.frame_weights(n_samples - 10 * stft.hop_samples, n_samples, stft).numpy()
    assert late[:10].all() and not late[12:].any()


def test_silent_keep_probability_gives_the_asked_share():
    for fraction, rate in ((0.5, 0.1), (0.9, 0.25), (0.2, 0.05)):
        keep = patches.silent_keep_probability(fraction, rate)
        share = fraction * keep / (1.0 - fraction + fraction * keep)
        assert share == pytest.approx(rate)
    assert patches.silent_keep_probability(0.05, 0.1) == 1.0  # already rarer: keep all
    assert patches.silent_keep_probability(1.0, 0.0) == 1.0  # all silent: cannot filter


@pytest.mark.parametrize("rate", [0.0, 0.25])
def test_silent_patches_make_the_asked_share_of_an_epoch(rate):
    stft = StftConfig(patch_frames=8)  # 0.75 s patches
    rate_hz = stft.sample_rate_hz
    vocals = _sine(440.0, 20.0, rate_hz)
    vocals[:len(vocals) // 2] = 0.0  # silent first half
    track = Track("half silent", vocals[:, None], _sine(1000.0, 20.0, rate_hz)[:, None])
    config = _config(stft, silent_patch_rate=rate, patches_per_epoch=512, augment_remix=False)
    epoch = _epoch(datasets.make_train_dataset([track], config, batch_size=64, seed=0,
                                               epochs=1))

    vocals_peak = np.concatenate([batch[1].max(axis=(1, 2)) for batch in epoch])
    silent_share = np.mean(vocals_peak < 1e-3)
    natural = patches.silent_share(track.vocals, stft)
    assert 0.4 < natural < 0.5
    if rate == 0.0:
        assert silent_share == 0.0
    else:
        assert abs(silent_share - rate) < 0.07  # 512 draws: 3.5 standard deviations


def test_stereo_as_examples_makes_each_channel_an_example():
    stft = StftConfig(patch_frames=8)
    left, right = _sine(440.0, 1.0, 8192), _sine(1000.0, 1.0, 8192)
    stereo = np.stack([left, right], axis=1)
    track = Track("stereo", stereo, 0.1 * stereo)
    config = _config(stft, stereo_as_examples=True)
    mix, _, _ = _epoch(datasets.make_validation_dataset([track], config, batch_size=8))[0]

    n_tiles = len(patches.tile_starts(track.n_samples, stft))
    assert mix.shape[0] == 2 * n_tiles
    bin_440, bin_1000 = round(440 / 8192 * 1024), round(1000 / 8192 * 1024)
    assert mix[0, :, 0].argmax() == bin_440 and mix[1, :, 0].argmax() == bin_1000


# === Augmentation ===

def test_augmentation_functions():
    assert float(augment.gain(0.0)) == pytest.approx(0.25)
    assert float(augment.gain(0.999999)) == pytest.approx(1.25, abs=1e-5)
    assert [int(augment.pick_index(u, 3)) for u in (0.0, 0.34, 0.67, 0.999999)] == [0, 1, 2, 2]
    waveform = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(augment.swap_channels(waveform, 0.2), waveform)
    np.testing.assert_array_equal(augment.swap_channels(waveform, 0.7), [[3.0, 4.0], [1.0, 2.0]])


def _twin_track(seconds=3.0):
    """Accompaniment identical to the vocals: mix = 2 x vocals before augmentation."""
    noise = np.random.default_rng(1).normal(0.0, 0.1, (int(seconds * 8192), 1))
    return Track("twins", noise.astype(np.float32), noise.astype(np.float32))


def test_without_augmentation_the_mix_is_the_sum_of_the_sources():
    config = _config(StftConfig(patch_frames=8), augment_gain=False, augment_remix=False,
                     augment_swap=False)
    mix, vocals, _ = _epoch(datasets.make_train_dataset([_twin_track()], config, 16, seed=0,
                                                        epochs=1))[0]
    np.testing.assert_allclose(vocals, 0.5 * mix, atol=1e-6)


def test_gain_scales_each_source_by_its_own_factor():
    config = _config(StftConfig(patch_frames=8), augment_remix=False)
    mix, vocals, _ = _epoch(datasets.make_train_dataset([_twin_track()], config, 16, seed=0,
                                                        epochs=1))[0]
    # mix = (g_v + g_a) |V|, vocals = g_v |V|: one ratio per example, in [1/6, 5/6].
    loud = mix > 0.05
    ratios = np.array([np.median(v[m] / x[m]) for v, x, m in zip(vocals, mix, loud)])
    for v, x, m, ratio in zip(vocals, mix, loud, ratios):
        np.testing.assert_allclose(v[m] / x[m], ratio, rtol=1e-3)
    assert np.all((ratios >= 1 / 6 - 1e-6) & (ratios <= 5 / 6 + 1e-6))
    assert np.ptp(ratios) > 0.1  # new gains per example


# === MUSDB18-HQ folder ===

def test_synthetic_track_lands_in_its_bins_at_the_model_rate(musdb_hq_root, caplog):
    config = _config(musdb_root=musdb_hq_root, is_wav=True, n_songs=1,
                     augment_gain=False, augment_remix=False)
    with caplog.at_level("WARNING"):
        train, validation = sources.load_tracks(config)

    assert "validation split is empty" in caplog.text
    assert [track.name for track in train] == [SYNTHETIC_TRACKS[0]]
    total = train[0].n_samples + validation[0].n_samples
    assert abs(total - SYNTHETIC_SECONDS * 8192) <= 1
    assert validation[0].n_samples == int(round(config.data.validation_seconds * 8192))

    mix, vocals, weights = _epoch(datasets.make_validation_dataset(validation, config, 4))[0]
    bin_440, bin_1000 = round(440 / 8192 * 1024), round(1000 / 8192 * 1024)  # 55, 125
    real = weights[0, 0] > 0
    vocals_spectrum = vocals[0][:, real].mean(axis=1)
    mix_spectrum = mix[0][:, real].mean(axis=1)
    assert vocals_spectrum.argmax() == bin_440
    assert set(np.argsort(mix_spectrum)[-2:]) == {bin_440, bin_1000}
    assert vocals_spectrum[bin_1000] < 1e-3 * vocals_spectrum[bin_440]


def test_n_songs_takes_the_first_tracks_in_order(musdb_hq_root):
    config = _config(musdb_root=musdb_hq_root, is_wav=True, n_songs=2)
    train, validation = sources.load_tracks(config)
    assert [track.name for track in train] == list(SYNTHETIC_TRACKS[:2])
    assert len(validation) == 2  # held-out tails of the same two tracks
    everything, _ = sources.load_tracks(dataclasses.replace(
        config, data=dataclasses.replace(config.data, n_songs=None)))
    assert len(everything) == 3


def test_the_disk_cache_spares_a_second_decode(musdb_hq_root, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    config = _config(musdb_root=musdb_hq_root, is_wav=True, n_songs=1, cache_dir=str(cache_dir))
    sources._DECODED.clear()
    first, _ = sources.load_tracks(config)
    assert len(list(cache_dir.glob("*.npy"))) == 1

    sources._DECODED.clear()
    monkeypatch.setattr(sources.audio_io, "read_audio", _must_not_decode)
    second, _ = sources.load_tracks(config)
    np.testing.assert_array_equal(first[0].vocals, second[0].vocals)
    np.testing.assert_array_equal(first[0].accompaniment, second[0].accompaniment)


def _must_not_decode(path):
    raise AssertionError(f"decoded {path} again")


# === Errors ===

def test_a_missing_root_is_a_data_error(tmp_path):
    root = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"{root}: MUSDB root does not exist"):
        sources.load_tracks(_config(musdb_root=root))


def test_an_empty_root_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}: no MUSDB tracks"):
        sources.load_tracks(_config(musdb_root=str(tmp_path)))


def test_a_corrupt_stem_is_a_data_error_naming_it(tmp_path):
    vocals = _sine(440.0, 1.0, SYNTHETIC_RATE_HZ)
    folder = tmp_path / "train" / "Broken - Track"
    _write_track(folder, vocals, vocals)
    (folder / "vocals.wav").write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(DataError, match=f"{folder / 'vocals.wav'}: cannot decode stem"):
        sources.load_tracks(_config(musdb_root=str(tmp_path), is_wav=True))


def test_missing_ffmpeg_says_how_to_install_it(monkeypatch):
    sources._DECODED.clear()
    monkeypatch.setattr(audio_io.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="apt-get install"):
        sources.load_tracks(RunConfig())


def test_a_musdb18_stem_file_root_decodes_like_the_bundled_clip(embedded, tmp_path):
    import stempeg

    clip = stempeg.example_stem_path()
    (tmp_path / "train").mkdir()
    os.symlink(clip, tmp_path / "train" / os.path.basename(clip))
    train, validation = sources.load_tracks(_config(musdb_root=str(tmp_path)))

    bundled_train, bundled_validation = embedded
    assert [track.name for track in train] == [bundled_train[0].name]
    np.testing.assert_array_equal(train[0].vocals, bundled_train[0].vocals)
    np.testing.assert_array_equal(validation[0].accompaniment, bundled_validation[0].accompaniment)


def test_musdb_validation_tracks_are_held_out_whole(tmp_path, caplog):
    vocals = _sine(440.0, 2.0, SYNTHETIC_RATE_HZ)
    for name in ("Actions - One Minute Smile", "Zed - Train Only"):  # the first is musdb's
        _write_track(tmp_path / "train" / name, vocals, vocals)
    with caplog.at_level("WARNING"):
        train, validation = sources.load_tracks(_config(musdb_root=str(tmp_path), is_wav=True))
    assert [track.name for track in train] == ["Zed - Train Only"]
    assert [track.name for track in validation] == ["Actions - One Minute Smile"]
    assert abs(validation[0].n_samples - 2 * 8192) <= 1
    assert "validation split is empty" not in caplog.text


# === Pitch shift of the vocals ===

@pytest.mark.parametrize("semitones", [-3.0, 2.0, 5.0])
def test_a_pitch_shifted_sine_lands_in_the_shifted_bin(semitones):
    rate_hz, frequency_hz = 8192, 440.0
    sine = tf.constant(_sine(frequency_hz, 3.0, rate_hz)[None])  # (1, samples)
    ratio = tf.constant(2.0 ** (semitones / 12.0), tf.float64)
    shifted = augment.shifted_slice(sine, 0, rate_hz, ratio).numpy()[0]  # 1 s: 1 Hz bins
    peak_hz = np.argmax(np.abs(np.fft.rfft(shifted * np.hanning(rate_hz))))
    assert peak_hz == round(frequency_hz * 2.0 ** (semitones / 12.0))


def test_an_unshifted_slice_is_the_padded_slice():
    waveform = tf.constant(np.random.default_rng(0).normal(size=(2, 500)).astype(np.float32))
    one = tf.constant(1.0, tf.float64)
    for begin in (-100, -40, 0, 130, 270, 470):
        np.testing.assert_array_equal(
            augment.shifted_slice(waveform, begin, 64, one, track_begin=100, n_samples=300),
            patches.padded_slice(waveform, begin, 64, track_begin=100, n_samples=300))


def test_the_pitch_ratio_spans_the_asked_semitones():
    assert float(augment.pitch_ratio(0.0, 3.0)) == pytest.approx(2.0 ** -0.25)
    assert float(augment.pitch_ratio(0.5, 3.0)) == pytest.approx(1.0)
    assert float(augment.pitch_ratio(1.0, 3.0)) == pytest.approx(2.0 ** 0.25)
    assert int(augment.shifted_length(1000, tf.constant(2.0, tf.float64))) == 500


def test_pitch_augmentation_shifts_the_vocals_alone_and_the_mix_holds_both():
    """440 Hz vocals over 1000 Hz accompaniment: each example's voice moves, the band stays."""
    rate_hz, seconds = 8192, 6.0
    track = Track("tones", _sine(440.0, seconds, rate_hz)[:, None],
                  _sine(1000.0, seconds, rate_hz)[:, None])
    stft = StftConfig(n_fft=4096, hop_samples=1024, patch_frames=4)  # 2 Hz bins
    config = dataclasses.replace(
        _config(stft, augment_gain=False, augment_remix=False, augment_pitch_semitones=4.0),
        train=dataclasses.replace(RunConfig().train, loss_sources="both"))
    mix, targets, weights = _epoch(datasets.make_train_dataset([track], config, 16, seed=3,
                                                               epochs=1))[0]
    bin_hz = rate_hz / stft.n_fft
    vocals, accompaniment = targets[..., 0], targets[..., 1]  # (batch, bins, frames)
    frame = 2  # a frame inside the track in every example
    assert np.all(weights[:, 0, frame] == 1)
    voice_hz = np.argmax(vocals[:, :, frame], axis=1) * bin_hz
    band_hz = np.argmax(accompaniment[:, :, frame], axis=1) * bin_hz
    assert np.all(np.abs(band_hz - 1000.0) <= bin_hz)
    low, high = 440.0 * 2.0 ** (-4 / 12), 440.0 * 2.0 ** (4 / 12)
    assert np.all((voice_hz >= low - bin_hz) & (voice_hz <= high + bin_hz))
    assert np.ptp(voice_hz) > 50.0  # a new shift per example
    # The mix the model sees holds the shifted voice and the band, each at its own level.
    for example, (voice, band) in enumerate(zip(voice_hz, band_hz)):
        for source, peak_hz in ((vocals, voice), (accompaniment, band)):
            peak = int(round(peak_hz / bin_hz))
            np.testing.assert_allclose(mix[example, peak, frame], source[example, peak, frame],
                                       rtol=0.02)
