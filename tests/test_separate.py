"""separate.py and keras_unet.separation.separator: known answers, files on disk, streaming, bad input."""

import argparse
import dataclasses
import functools
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_unet.cli import separate
from keras_unet.separation import song_files
from keras_unet.separation.full_band import (full_band_vocals, full_rate_stft_config, map_mask,
                                       model_frame_positions)
from keras_unet.separation.separator import Separator
from keras_unet.core import audio_io, files
from keras_unet.core.audio_io import read_audio, resample
from keras_unet.core.config import ModelConfig, RunConfig, StftConfig
from keras_unet.core.masking import normalise_patches, predict_mask, separate_mono, split_patches
from keras_unet.core.model import build_model
from keras_unet.core.saving import save_keras
from keras_unet.core.transforms import magnitude, stft

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ModelConfig(depth=2, base_channels=4)
SMALL_STFT = StftConfig(n_fft=256, hop_samples=192, patch_frames=16)  # 0.375 s patches


def _model(stft_config=StftConfig(), ones=False):
    model = build_model(RunConfig(stft=stft_config, model=TINY))
    if ones:  # sigmoid(60) == 1.0 in float32: an all-ones mask, whatever the input
        kernel, bias = model.get_layer("mask_deconv").get_weights()
        model.get_layer("mask_deconv").set_weights([np.zeros_like(kernel), bias + 60.0])
    return model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
    save_keras(_model(), path)
    return path


def _tone(seconds, rate, channels, seed=0):
    """Harmonics up to 0.4 * rate plus a little noise: energy above 4096 Hz where the rate allows."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * rate)) / rate
    frequencies = np.geomspace(110.0, 0.4 * rate, 12)
    tone = sum(np.sin(2 * np.pi * f * time + k) for k, f in enumerate(frequencies)) / 12
    return np.stack([0.5 * tone + 0.01 * rng.standard_normal(len(time))
                     for _ in range(channels)], axis=1).astype(np.float32)


def _run(capsys, *argv):
    """separate.main in-process: (exit code, stderr lines)."""
    try:
        code = separate.main([str(arg) for arg in argv])
    except SystemExit as exit_:  # `fail` exits
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


def _outputs_in_steps(folder):
    """vocals.wav and accompaniment.wav as 16-bit integers: int64 (samples, channels) each."""
    return [soundfile.read(os.path.join(folder, name), dtype="int16", always_2d=True)[0]
            .astype(np.int64) for name in ("vocals.wav", "accompaniment.wav")]


def test_bundled_clip_round_trip(tmp_path, model_path, capsys):
    """A .stem.mp4 whose AAC decodes beyond full scale: named without .stem, summing exactly.

    Each output fits 16 bits, so nothing is rescaled: the two files sum to
    the input even where it exceeds full scale.
    """
    import stempeg

    clip = stempeg.example_stem_path()
    code, errors = _run(capsys, clip, "-o", tmp_path, "--model", model_path)
    assert code == 0 and errors == []
    mix, rate = read_audio(clip)
    assert rate == 44100 and mix.shape[1] == 2 and np.abs(mix).max() > 1.0
    assert os.listdir(tmp_path) == ["The Easton Ellises - Falcon 69"]
    vocals, accompaniment = _outputs_in_steps(tmp_path / "The Easton Ellises - Falcon 69")
    assert vocals.shape == accompaniment.shape == mix.shape
    np.testing.assert_array_equal(vocals + accompaniment,
                                  np.rint(mix.astype(np.float64) * 2 ** 15))
    assert np.abs(vocals).max() > 0


@pytest.mark.parametrize("rate, channels, subtype, seconds", [
    (48000, 1, "PCM_24", 1.5), (8000, 2, "PCM_16", 1.5), (44100, 2, "PCM_16", 0.2)])
def test_outputs_on_disk_sum_to_the_input_exactly(tmp_path, model_path, capsys, rate,
                                                  channels, subtype, seconds):
    path = tmp_path / "song.wav"
    soundfile.write(path, _tone(seconds, rate, channels), rate, subtype=subtype)
    code, errors = _run(capsys, path, "-o", tmp_path / "out", "--model", model_path)
    assert code == 0 and errors == []
    mix, _ = read_audio(str(path))
    vocals, accompaniment = _outputs_in_steps(tmp_path / "out" / "song")
    assert vocals.shape == accompaniment.shape == mix.shape
    assert soundfile.info(tmp_path / "out" / "song" / "vocals.wav").samplerate == rate
    np.testing.assert_array_equal(vocals + accompaniment,
                                  np.rint(mix.astype(np.float64) * 2 ** 15))
    assert np.abs(vocals).max() > 100  # the model passed some of the tone


def test_clip_modes_on_the_command_line(tmp_path, model_path, capsys):
    path = tmp_path / "loud.wav"
    mix = _tone(0.5, 8192, 1)
    mix *= 3.0 / np.abs(mix).max()  # a float WAV whose vocals and accompaniment exceed 1
    soundfile.write(path, mix, 8192, subtype="FLOAT")
    common = [path, "--model", model_path]

    code, errors = _run(capsys, *common, "-o", tmp_path / "rescale")
    assert code == 0 and len(errors) == 1
    assert errors[0].startswith(f"warning: {path}: rescaled by ")
    assert 0.2 < float(errors[0].split("rescaled by ")[1].split()[0]) < 1.0
    code, errors = _run(capsys, *common, "-o", tmp_path / "clamp", "--clip-mode", "clamp")
    assert code == 0 and len(errors) == 1
    assert errors[0].startswith(f"warning: {path}: clipped ") and "output samples" in errors[0]
    vocals, accompaniment = _outputs_in_steps(tmp_path / "clamp" / "loud")
    assert max(np.abs(vocals).max(), np.abs(accompaniment).max()) >= 2 ** 15 - 1

    code, errors = _run(capsys, *common, "-o", tmp_path / "none", "--clip-mode", "none",
                        "--format", "wav-float")
    assert code == 0 and errors == []
    vocals, _ = soundfile.read(tmp_path / "none" / "loud" / "vocals.wav", dtype="float32")
    accompaniment, _ = soundfile.read(tmp_path / "none" / "loud" / "accompaniment.wav",
                                      dtype="float32")
    np.testing.assert_allclose(vocals + accompaniment, mix[:, 0], atol=1e-6)
    assert max(np.abs(vocals).max(), np.abs(accompaniment).max()) > 1.0

    code, errors = _run(capsys, *common, "-o", tmp_path / "refused", "--clip-mode", "none")
    assert code == 2 and len(errors) == 1 and "use --format wav-float" in errors[0]
    assert not (tmp_path / "refused").exists()


def test_output_folders_drop_the_whole_known_suffix():
    assert separate.song_name("/music/Artist - Song.stem.mp4") == "Artist - Song"
    assert separate.song_name("take.2.STEM.M4A") == "take.2"
    assert separate.song_name("live.2024.flac") == "live.2024"
    assert separate.song_name(".stem.mp4") == ".stem"


def test_silence_in_silence_out(tmp_path, model_path, capsys):
    path = tmp_path / "silent.flac"
    soundfile.write(path, np.zeros((22050, 2), np.float32), 22050)
    code, _ = _run(capsys, path, "-o", tmp_path, "--model", model_path, "--format", "wav-float")
    assert code == 0
    for name in ("vocals.wav", "accompaniment.wav"):
        samples, rate = soundfile.read(tmp_path / "silent" / name)
        assert rate == 22050 and samples.shape == (22050, 2)
        assert np.all(samples == 0.0)  # finite and silent


def test_plot_is_a_png_with_reference(tmp_path, model_path, capsys):
    import matplotlib.image

    path, reference = tmp_path / "mix.wav", tmp_path / "true_vocals.wav"
    soundfile.write(path, _tone(2.0, 16000, 2), 16000)
    soundfile.write(reference, _tone(2.0, 16000, 1, seed=1), 16000)
    code, _ = _run(capsys, path, "-o", tmp_path, "--model", model_path, "--plot",
                   "--reference", reference)
    assert code == 0
    png = tmp_path / "mix" / separate.PLOT_NAME
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 600  # four panels
    assert sorted(os.listdir(tmp_path / "mix")) == sorted(
        ["accompaniment.wav", "vocals.wav", separate.PLOT_NAME])


def test_bad_inputs_are_named_and_the_rest_still_run(tmp_path, model_path, capsys):
    empty, text, folder = tmp_path / "empty.wav", tmp_path / "notes.wav", tmp_path / "dir"
    empty.write_bytes(b"")
    text.write_text("not audio at all\n" * 50)
    folder.mkdir()
    good = tmp_path / "good.wav"
    soundfile.write(good, _tone(0.5, 8192, 1), 8192)
    missing = tmp_path / "missing.wav"
    out = tmp_path / "out"
    code, errors = _run(capsys, missing, folder, empty, text, good, "-o", out,
                        "--model", model_path)
    assert code == 2
    assert len(errors) == 4
    for error, path, cause in zip(errors, [missing, folder, empty, text],
                                  ["no such file", "directory", "empty", "not a readable"]):
        assert str(path) in error and cause in error
    assert sorted(os.listdir(out)) == ["good"]  # no partial output of the bad ones
    assert sorted(os.listdir(out / "good")) == ["accompaniment.wav", "vocals.wav"]


def test_bad_model_and_output_folder(tmp_path, model_path, capsys):
    song = tmp_path / "song.wav"
    soundfile.write(song, _tone(0.5, 8192, 1), 8192)
    not_a_model = tmp_path / "broken.keras"
    not_a_model.write_text("nope")
    cases = [(["--model", tmp_path / "absent.keras"], "absent.keras", "no such model"),
             (["--model", not_a_model], "broken.keras", "not a readable"),
             (["--model", tmp_path], str(tmp_path), "not a model folder"),
             (["--model", model_path, "-o", song], str(song), "cannot create")]
    for flags, named, cause in cases:
        code, errors = _run(capsys, song, "-o", tmp_path / "out", *flags)
        assert code == 2 and len(errors) == 1, errors
        assert named in errors[0] and cause in errors[0]
    assert not os.path.exists(tmp_path / "out" / "song")


def test_never_overwrites_an_input(tmp_path, model_path, capsys):
    folder = tmp_path / "vocals"
    folder.mkdir()
    song = folder / "vocals.wav"  # its outputs would be <out>/vocals/vocals.wav
    soundfile.write(song, _tone(0.5, 8192, 1), 8192)
    before = song.read_bytes()
    code, errors = _run(capsys, song, "-o", tmp_path, "--model", model_path)
    assert code == 2 and len(errors) == 1 and "overwrite an input" in errors[0]
    assert song.read_bytes() == before


def test_errors_without_traceback_in_a_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPOSITORY, "separate.py"), str(tmp_path / "no.wav"),
         "-o", str(tmp_path), "--model", str(tmp_path / "no.keras")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --model {tmp_path / 'no.keras'}: no such model file or folder"


def test_the_command_line_ends_at_once_with_its_output_whole(tmp_path, model_path):
    """separate.py skips the interpreter's teardown (`cli.exit_at_once`): its piped
    output lines and both files must still be complete, and the exit code kept."""
    rate = 8000
    song = _tone(2.0, rate, 2)
    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for path in paths:
        soundfile.write(str(path), song, rate, subtype="PCM_16")
    soundfile.write(str(tmp_path / "bad.wav"), song[:0], rate)  # an empty file fails alone
    result = subprocess.run(
        [sys.executable, os.path.join(REPOSITORY, "separate.py"), *map(str, paths),
         str(tmp_path / "bad.wav"), "-o", str(tmp_path / "out"), "--model", model_path],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stdout.splitlines() == [f"{path} -> {tmp_path / 'out' / path.stem}"
                                          for path in paths]
    assert result.stderr.splitlines()[-1].startswith(f"error: {tmp_path / 'bad.wav'}")
    vocals, accompaniment = _outputs_in_steps(tmp_path / "out" / "a")
    written, _ = soundfile.read(str(paths[0]), dtype="int16", always_2d=True)
    np.testing.assert_array_equal(vocals + accompaniment, written)


def test_all_ones_mask_returns_the_input():
    """The patch overlap-add is exact: a mask of ones gives vocals == mix, at any rate."""
    model = _model(SMALL_STFT, ones=True)
    waveform = _tone(3.0, 8192, 1)[:, 0]
    magnitudes = np.abs(np.random.default_rng(0).standard_normal((2, 129, 50))).astype(np.float32)
    np.testing.assert_allclose(predict_mask(model, magnitudes, SMALL_STFT, 4), 1.0, atol=1e-6)
    vocals, accompaniment = separate_mono(model, waveform, SMALL_STFT, batch_size=4)
    np.testing.assert_allclose(vocals, waveform, atol=1e-5)
    np.testing.assert_allclose(accompaniment, 0.0, atol=1e-5)
    mix = _tone(2.0, 44100, 2)
    vocals, _ = Separator(model, precision="float32", block_seconds=0.7).separate(mix, 44100)
    np.testing.assert_allclose(vocals, mix, atol=1e-5)


def test_blocks_at_the_models_rate_match_separate_mono():
    """The streamed path against the pure-TensorFlow one, channel by channel."""
    model = _model(SMALL_STFT)
    stereo = _tone(4.0, 8192, 2)
    separator = Separator(model, precision="float32", batch_size=4, block_seconds=0.55)
    vocals, _ = separator.separate(stereo, 8192)
    for channel in range(2):
        expected, _ = separate_mono(model, stereo[:, channel], SMALL_STFT, batch_size=4)
        np.testing.assert_allclose(vocals[:, channel], expected, atol=1e-5)
    assert np.abs(vocals).max() > 0.01


def test_streamed_full_band_equals_the_whole_song_rule():
    """Separator's blocks give what `full_band_vocals` gives from the model's whole mask."""
    model = _model(SMALL_STFT)
    song = _tone(3.0, 44100, 2)
    streamed, _ = Separator(model, precision="float32", batch_size=4,
                            block_seconds=0.8).separate(song, 44100)
    held = resample(song, 44100, SMALL_STFT.sample_rate_hz)
    mask = predict_mask(model, magnitude(stft(held.T, SMALL_STFT)), SMALL_STFT, 4).numpy()
    whole = full_band_vocals(song, 44100, mask, SMALL_STFT)
    _assert_same_separation(streamed, whole, 44100)
    assert np.abs(whole).max() > 0.01


def test_model_function_traced_once_for_any_length_and_rate():
    separator = Separator(_model(SMALL_STFT), precision="float32", batch_size=4)
    for seconds, rate in [(1.0, 8192), (2.7, 8192), (1.3, 44100), (0.2, 22050)]:
        separator.separate(_tone(seconds, rate, 2), rate)
    assert separator.trace_count == 1


def test_map_mask_interpolates_and_extends_by_the_top_octave():
    model_config = StftConfig(n_fft=16, hop_samples=8, sample_rate_hz=8000)  # 9 bins, 500 Hz apart
    config = StftConfig(n_fft=64, hop_samples=16, sample_rate_hz=16000)  # 33 bins, 250 Hz apart
    n_model_frames = 40
    bins = np.arange(model_config.n_bins, dtype=np.float32)
    model_mask = np.broadcast_to((bins / 10)[None, :, None], (1, 9, n_model_frames)).copy()
    magnitudes = np.ones_like(model_mask)
    magnitudes[:, 8] = 0.0  # the Nyquist bin carries nothing, so it has no say above
    frames = np.arange(5, 20)
    mask = map_mask(model_mask, magnitudes, 0, n_model_frames, frames, model_config, config)
    assert mask.shape == (1, 33, len(frames))
    in_band = np.arange(17) * 250 / 500 / 10  # linear between model bins, up to 4000 Hz
    np.testing.assert_allclose(mask[0, :17], np.repeat(in_band[:, None], len(frames), 1),
                               atol=1e-6)
    top_octave = np.mean([0.4, 0.5, 0.6, 0.7])  # model bins 4..7, weighted by magnitude
    np.testing.assert_allclose(mask[0, 17:], top_octave, atol=1e-6)


# === Streaming equals whole-song separation, at every rate ===

RATES_HZ = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


def _streamed_and_whole(model, song, rate, block_seconds):
    streamed, _ = Separator(model, precision="float32", batch_size=4,
                            block_seconds=block_seconds).separate(song, rate)
    held = resample(song, rate, SMALL_STFT.sample_rate_hz)
    mask = predict_mask(model, magnitude(stft(held.T, SMALL_STFT)), SMALL_STFT, 4).numpy()
    return streamed, full_band_vocals(song, rate, mask, SMALL_STFT)


def _assert_same_separation(streamed, whole, rate):
    """Equal to float round-off inside; within 3e-3 (-50 dB) at the song's first and last 20 ms.

    At the ends the whole-song resampler and the streamed one (which reads
    zeros before and after the song) differ in their first and last few
    samples: typically by 1e-5, at worst 1.5e-3 (44.1 kHz, 1.6126 s,
    1 s blocks: the second-last sample).
    """
    edge = int(0.02 * rate)
    np.testing.assert_allclose(streamed[edge:-edge], whole[edge:-edge], atol=1e-5)
    np.testing.assert_allclose(streamed, whole, atol=3e-3)


def _frame_on_a_model_frame(rate):
    """The first frame of the song-rate grid whose centre is exactly a model frame (or None)."""
    config = full_rate_stft_config(rate, SMALL_STFT)
    frames = np.arange(1, 4000)
    positions = model_frame_positions(frames, config, SMALL_STFT)
    exact = np.flatnonzero(np.abs(positions - np.round(positions)) < 1e-9)
    return (int(frames[exact[0]]), config) if exact.size else None


@pytest.mark.parametrize("rate", [rate for rate in RATES_HZ if _frame_on_a_model_frame(rate)])
def test_a_block_ending_on_a_model_frame_streams_like_the_whole_song(rate):
    """The block's last frame sits on a model frame: the interpolation needs the next one too."""
    frame, config = _frame_on_a_model_frame(rate)
    block_samples = (frame - 1) * config.hop_samples + 1  # its last frame is `frame`
    assert (block_samples - 1 + config.n_fft - config.hop_samples) // config.hop_samples == frame
    song = _tone(2 * block_samples / rate + 0.3, rate, 1)
    streamed, whole = _streamed_and_whole(_model(SMALL_STFT), song, rate, block_samples / rate)
    _assert_same_separation(streamed, whole, rate)


@settings(max_examples=20, deadline=None)
@given(rate=st.sampled_from(RATES_HZ), seconds=st.floats(0.1, 2.0),
       block_seconds=st.floats(0.1, 1.0))
def test_streamed_separation_is_the_whole_song_rule_at_any_rate(rate, seconds, block_seconds):
    song = _tone(seconds, rate, 2)
    streamed, whole = _streamed_and_whole(_streaming_model(), song, rate, block_seconds)
    _assert_same_separation(streamed, whole, rate)


@functools.lru_cache(maxsize=1)
def _streaming_model():
    return _model(SMALL_STFT)


# === Known answers: the ideal mask of sources that take turns ===

def _alternating_sources(seconds, rate):
    """Vocals and accompaniment that swap frequency bands every 0.75 s.

    For the first 0.6 s of each 1.5 s the vocals hold tones below 1.2 kHz and
    the accompaniment tones above 2.4 kHz (up to 6.5 kHz where the rate
    allows); after 0.15 s of silence, longer than an STFT window, they swap
    for the next 0.6 s. The same frequencies belong to the vocals at one time
    and to the accompaniment at another, so only a mask that varies in time,
    applied to the right frames, separates them.

    Returns:
        (vocals, accompaniment): float32 (samples, 1) each.
    """
    time_s = np.arange(int(seconds * rate)) / rate

    def turns(begin_s):  # 1 in the turns starting at begin_s, 20 ms raised-cosine edges
        local = (time_s - begin_s) % 1.5
        edges = np.clip(np.minimum(local, 0.6 - local) / 0.02, 0.0, 1.0) * (local < 0.6)
        return np.sin(0.5 * np.pi * edges) ** 2

    def band(frequencies_hz):
        return sum(0.05 * np.sin(2 * np.pi * hertz * time_s + k)
                   for k, hertz in enumerate(frequencies_hz) if hertz < 0.45 * rate)

    low, high = band([304, 504, 808, 1104]), band([2504, 3000, 3504, 5000, 6504])
    vocals = turns(0.0) * low + turns(0.75) * high
    accompaniment = turns(0.75) * low + turns(0.0) * high
    return vocals[:, None].astype(np.float32), accompaniment[:, None].astype(np.float32)


class _IdealMask:
    """A stand-in model that answers each patch with the ideal ratio mask of a known song.

    It finds the patch it is given among the song's own model-rate patches
    (nearest in L2, normalised by their maximum as the model sees them) and
    returns |V| / (|V| + |A|) of the true sources there, `shift_frames`
    frames late when asked: a mask misaligned by that much.
    """

    def __init__(self, stft_config, vocals, accompaniment, rate, shift_frames=0):
        self.run_config = {"stft": dataclasses.asdict(stft_config)}
        self.layers = []  # no weights: runs as float32
        held = [resample(part, rate, stft_config.sample_rate_hz).T
                for part in (vocals + accompaniment, vocals, accompaniment)]
        mix, voice, rest = (np.abs(stft(part, stft_config).numpy()) for part in held)
        mask = voice / np.maximum(voice + rest, 1e-8)  # (channels, bins, frames)
        mask = np.concatenate([mask[..., :shift_frames], mask], axis=-1)[..., :mask.shape[-1]]
        patches = normalise_patches(split_patches(mix, stft_config))
        self._patches = tf.reshape(patches, [tf.shape(patches)[0], -1])  # (patches, bins * T)
        self._masks = split_patches(mask, stft_config)  # (patches, bins, T)

    def __call__(self, patches, training=False):
        flat = tf.reshape(patches, [tf.shape(patches)[0], -1])
        distances = (tf.reduce_sum(flat ** 2, axis=1, keepdims=True)
                     - 2 * tf.matmul(flat, self._patches, transpose_b=True)
                     + tf.reduce_sum(self._patches ** 2, axis=1))  # (batch, song patches)
        return tf.gather(self._masks, tf.argmin(distances, axis=1))


def _sdr(reference, estimate):
    """Signal-to-distortion ratio in dB, over the whole signal."""
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2))


@pytest.mark.parametrize("rate", [8000, 8192, 16000, 44100, 48000])
def test_the_ideal_mask_returns_the_true_sources_and_a_shifted_one_does_not(rate):
    vocals, accompaniment = _alternating_sources(20.0, rate)
    sdr = {}
    for shift in (0, 1):
        model = _IdealMask(StftConfig(), vocals, accompaniment, rate, shift_frames=shift)
        separator = Separator(model, precision="float32", block_seconds=2.3)
        vocals_estimate, accompaniment_estimate = separator.separate(vocals + accompaniment,
                                                                     rate)
        sdr[shift] = (_sdr(vocals, vocals_estimate), _sdr(accompaniment, accompaniment_estimate))
    assert min(sdr[0]) > 25, sdr
    assert max(sdr[1]) < min(sdr[0]) - 15, sdr  # a one-frame misalignment cannot pass


def test_the_ideal_mask_through_predict_mask_and_separate_mono():
    vocals, accompaniment = _alternating_sources(20.0, 8192)
    mix = (vocals + accompaniment)[:, 0]
    model = _IdealMask(StftConfig(), vocals, accompaniment, 8192)
    spectrum = stft(mix[np.newaxis], StftConfig())
    mask = predict_mask(model, magnitude(spectrum), StftConfig(), batch_size=2).numpy()
    voice = np.abs(stft(vocals.T, StftConfig()).numpy())
    rest = np.abs(stft(accompaniment.T, StftConfig()).numpy())
    heard = voice + rest > 1e-3 * np.max(voice + rest)  # elsewhere the ratio is rounding noise
    np.testing.assert_allclose(mask[heard], voice[heard] / (voice + rest)[heard], atol=1e-5)
    vocals_estimate, accompaniment_estimate = separate_mono(model, mix, StftConfig(),
                                                            batch_size=2)
    assert _sdr(vocals[:, 0], vocals_estimate.numpy()) > 40
    assert _sdr(accompaniment[:, 0], accompaniment_estimate.numpy()) > 40


# === Compressed input: streamed, in flat memory ===

def _write_compressed(path, samples, rate):
    """OGG Vorbis through libsndfile; M4A (AAC) through ffmpeg from a float WAV."""
    if path.suffix == ".ogg":
        soundfile.write(path, samples, rate, format="OGG", subtype="VORBIS")
        return
    wav = path.with_suffix(".wav")
    soundfile.write(wav, samples, rate, subtype="FLOAT")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "aac",
                    str(path)], check=True)
    wav.unlink()


def _recording_open_audio(monkeypatch):
    """Patches `song_files.open_audio` to keep every reader it opens and its longest read."""
    readers, opened = [], song_files.open_audio

    def open_and_record(*args, **kwargs):
        reader = opened(*args, **kwargs)
        read = reader.read

        def recorded_read(start, stop):
            reader.longest_read = max(getattr(reader, "longest_read", 0), stop - start)
            return read(start, stop)

        reader.read = recorded_read
        readers.append(reader)
        return reader

    def must_not_decode_whole(path):
        raise AssertionError(f"{path} decoded whole")

    monkeypatch.setattr(song_files, "open_audio", open_and_record)
    monkeypatch.setattr(audio_io, "read_audio", must_not_decode_whole)
    monkeypatch.setattr(audio_io, "STREAM_BLOCK_SAMPLES", 1024)
    return readers


@pytest.mark.parametrize("suffix", [".ogg", ".m4a"])
def test_a_compressed_file_separates_in_flat_memory_like_its_decoded_samples(
        tmp_path, monkeypatch, suffix):
    rate = 8000
    path = tmp_path / f"long{suffix}"
    _write_compressed(path, _tone(60.0, rate, 1), rate)
    decoded, _ = read_audio(str(path))
    separator = Separator(_streaming_model(), precision="float32", batch_size=4,
                          block_seconds=0.5)
    expected, _ = separator.separate(decoded, rate)
    readers = _recording_open_audio(monkeypatch)
    paths = separate._output_paths(
        argparse.Namespace(format="wav-float", output_dir=str(tmp_path / "out")), path)
    song_files.separate_file(separator, str(path), paths["vocals"], paths["accompaniment"],
                             "wav-float", "none")

    vocals, _ = soundfile.read(paths["vocals"], dtype="float32", always_2d=True)
    accompaniment, _ = soundfile.read(paths["accompaniment"], dtype="float32", always_2d=True)
    np.testing.assert_allclose(vocals, expected, atol=1e-6)
    np.testing.assert_allclose(accompaniment, decoded - expected, atol=1e-6)
    (reader,) = readers
    look_back = round(separator.look_back_seconds * rate)
    assert look_back < len(decoded) / 8  # holding the whole file would fail below
    assert reader.max_held_samples < max(look_back, reader.longest_read) + 2 * 1024
    assert reader.restarts == 1  # once more from the start, for the second pass


def test_the_plot_reads_only_its_excerpt(tmp_path, monkeypatch):
    rate = 8000
    path = tmp_path / "long.ogg"
    _write_compressed(path, _tone(60.0, rate, 1), rate)
    references = {seconds: tmp_path / f"vocals_{seconds}.ogg" for seconds in (60.0, 30.5, 20.0)}
    for seconds, reference in references.items():
        _write_compressed(reference, _tone(seconds, rate, 1, seed=1), rate)
    monkeypatch.setattr(song_files, "PLOT_SECONDS", 2.0)  # the excerpt: seconds 29-31
    readers = _recording_open_audio(monkeypatch)
    separator = Separator(_streaming_model(), precision="float32", batch_size=4)
    for seconds in (60.0, 30.5):  # the second reference ends inside the excerpt
        plot = tmp_path / f"plot_{seconds}.png"
        song_files.write_plot(separator, str(path), str(plot), str(references[seconds]))
        assert plot.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(audio_io.AudioError, match="ends before the plotted excerpt of"):
        song_files.write_plot(separator, str(path), str(tmp_path / "no.png"),
                              str(references[20.0]))
    assert len(readers) == 6
    for reader in readers:
        longest_read = getattr(reader, "longest_read", 0)  # none for the 20 s reference
        assert longest_read < 2.5 * rate
        assert reader.max_held_samples < longest_read + 2 * 1024


class _HalfMask:
    """A stand-in model whose mask is 0.5 everywhere (the read pattern does not depend on it)."""

    def __init__(self, stft_config):
        self.run_config = {"stft": dataclasses.asdict(stft_config)}
        self.layers = []

    def __call__(self, patches, training=False):
        return 0.5 * tf.ones_like(patches)


@settings(max_examples=8, deadline=None)
@given(rate=st.sampled_from(RATES_HZ), batch_size=st.integers(1, 8),
       block_seconds=st.floats(0.1, 2.0))
def test_reads_never_reach_further_back_than_look_back_seconds(rate, batch_size, block_seconds):
    separator = Separator(_HalfMask(SMALL_STFT), precision="float32", batch_size=batch_size,
                          block_seconds=block_seconds)
    n_samples = int(2.5 * separator.look_back_seconds * rate)
    furthest, reach = 0, 0

    def read(start, stop):
        nonlocal furthest, reach
        reach, furthest = max(reach, furthest - start), max(furthest, stop)
        return np.zeros((stop - start, 1), np.float32)

    for _ in separator.separate_blocks(read, n_samples, 1, rate):
        pass
    assert 0 < reach <= separator.look_back_seconds * rate


# === Nothing lost: outputs in pairs, signals, earlier results (issue 22) ===

def _leftovers(folder):
    """Temporary files (".part") anywhere under `folder`."""
    return [name for _, _, names in os.walk(folder) for name in names if ".part" in name]


def _stop_with(signal_number):
    """Sends the signal to this process and waits for its handler to run."""
    os.kill(os.getpid(), signal_number)
    time.sleep(5)  # interrupted at once by the handler's exception
    raise AssertionError("the signal was not handled")


def _stop_at(monkeypatch, point, stop):
    """Calls `stop()` at one point of a separation: pass 1, pass 2, before or between renames."""
    if point == "separating":
        blocks = Separator.separate_blocks

        def stopping_blocks(self, *args, **kwargs):
            for block in blocks(self, *args, **kwargs):
                yield block
                stop()
        monkeypatch.setattr(Separator, "separate_blocks", stopping_blocks)
    elif point == "writing":
        monkeypatch.setattr(audio_io.AudioWriter, "write", lambda self, samples: stop())
    elif point == "before renaming":
        monkeypatch.setattr(files, "publish_together", lambda pairs: stop())
    else:  # between the renames: the vocals are in place, the accompaniment is not
        replace, stopped = os.replace, []

        def stop_before_accompaniment(source, target):
            if str(target).endswith("accompaniment.wav") and not stopped:
                stopped.append(target)  # once: putting the old files back must work
                stop()
            replace(source, target)
        monkeypatch.setattr(files.os, "replace", stop_before_accompaniment)


POINTS = ("separating", "writing", "before renaming", "between renames")


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
@pytest.mark.parametrize("point", POINTS)
def test_a_stop_signal_leaves_no_temporary_file_and_no_half_pair(
        tmp_path, model_path, capsys, monkeypatch, signal_number, point):
    """Items 6 and 7: one line, exit 128 + the signal, no file of the song at all."""
    song = tmp_path / "song.wav"
    soundfile.write(song, _tone(1.0, 8000, 2), 8000)
    _stop_at(monkeypatch, point, functools.partial(_stop_with, signal_number))
    code, errors = _run(capsys, song, "-o", tmp_path / "out", "--model", model_path)
    assert code == 128 + signal_number
    assert errors == [f"error: stopped by {signal.Signals(signal_number).name}; "
                      "no partial file was left"]
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out" / "song").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "handlers restored"


@pytest.mark.parametrize("point", POINTS)
def test_a_failure_while_replacing_results_keeps_the_earlier_pair(
        tmp_path, model_path, capsys, monkeypatch, point):
    """Item 7: with --overwrite, a full disk at any point leaves the old pair whole."""
    song = tmp_path / "song.wav"
    soundfile.write(song, _tone(1.0, 8000, 2), 8000)
    assert _run(capsys, song, "-o", tmp_path, "--model", model_path)[0] == 0
    folder = tmp_path / "song"
    earlier = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    soundfile.write(song, _tone(1.0, 8000, 2, seed=5), 8000)

    def full_disk():
        raise OSError(28, "No space left on device")
    _stop_at(monkeypatch, point, full_disk)
    code, errors = _run(capsys, song, "-o", tmp_path, "--model", model_path, "--overwrite")
    assert code == 2 and len(errors) == 1, errors
    assert "None" not in errors[0] and "song" in errors[0]
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == earlier
    assert _leftovers(tmp_path) == []


def test_earlier_results_are_replaced_only_with_overwrite(tmp_path, model_path, capsys):
    """Item 7: a second song of the same name is refused, naming --overwrite."""
    first, second = tmp_path / "a" / "song.wav", tmp_path / "b" / "song.wav"
    for path, seed in ((first, 0), (second, 1)):
        path.parent.mkdir()
        soundfile.write(path, _tone(1.0, 8000, 1, seed=seed), 8000)
    out = tmp_path / "out"
    assert _run(capsys, first, "-o", out, "--model", model_path)[0] == 0
    results = (out / "song" / "vocals.wav").read_bytes()
    code, errors = _run(capsys, second, "-o", out, "--model", model_path)
    assert code == 2 and len(errors) == 1 and "pass --overwrite" in errors[0]
    assert (out / "song" / "vocals.wav").read_bytes() == results
    code = separate.main([str(second), "-o", str(out), "--model", model_path, "--overwrite"])
    assert code == 0 and "earlier results replaced" in capsys.readouterr().out
    assert (out / "song" / "vocals.wav").read_bytes() != results


def test_an_input_rewritten_while_it_is_separated_gives_no_outputs(
        tmp_path, model_path, capsys, monkeypatch):
    """Item 7: the input is read twice; a change in between is an error, not a mixed pair."""
    song = tmp_path / "song.wav"
    soundfile.write(song, _tone(1.0, 8000, 1), 8000)
    write = audio_io.AudioWriter.write

    def rewriting_the_input(self, samples):
        soundfile.write(song, _tone(1.5, 8000, 1, seed=3), 8000)
        write(self, samples)
    monkeypatch.setattr(audio_io.AudioWriter, "write", rewriting_the_input)
    code, errors = _run(capsys, song, "-o", tmp_path / "out", "--model", model_path)
    assert code == 2 and len(errors) == 1 and "changed while it was being separated" in errors[0]
    assert not (tmp_path / "out" / "song").exists() and _leftovers(tmp_path) == []


def test_a_reference_needs_the_plot_and_is_read_before_any_output(tmp_path, model_path, capsys):
    """Item 8: --reference without --plot was ignored; a non-audio one failed after writing."""
    song, notes = tmp_path / "song.wav", tmp_path / "notes.wav"
    soundfile.write(song, _tone(0.5, 8000, 1), 8000)
    notes.write_text("not audio\n" * 20)
    code, errors = _run(capsys, song, "-o", tmp_path / "out", "--model", model_path,
                        "--reference", song)
    assert code == 2 and len(errors) == 1 and "add --plot" in errors[0]
    code, errors = _run(capsys, song, "-o", tmp_path / "out", "--model", model_path, "--plot",
                        "--reference", notes)
    assert code == 2 and len(errors) == 1 and "--reference" in errors[0]
    assert not (tmp_path / "out").exists()
