"""separate.py and keras_unet.separator: outputs, full band, blocks, traces, bad input."""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

import separate
from keras_unet.config import ModelConfig, RunConfig, StftConfig
from keras_unet.export import save_keras
from keras_unet.model import build_model
from keras_unet.separator import (Separator, full_band_vocals, full_rate_stft_config, map_mask,
                                  model_frame_positions, predict_mask, separate_mono)
from keras_unet.transforms import magnitude, stft
from pipelines.audio_io import resample
from pipelines.audio_io import read_audio

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


def _check_outputs(folder, mix, rate):
    vocals, vocals_rate = soundfile.read(os.path.join(folder, "vocals.wav"), dtype="float32",
                                         always_2d=True)
    accompaniment, rate_2 = soundfile.read(os.path.join(folder, "accompaniment.wav"),
                                           dtype="float32", always_2d=True)
    assert vocals_rate == rate_2 == rate
    assert vocals.shape == accompaniment.shape == mix.shape
    assert np.abs(vocals + accompaniment - mix).max() < 1e-4
    return vocals


def test_bundled_clip_round_trip(tmp_path, model_path, capsys):
    import stempeg

    clip = stempeg.example_stem_path()
    code, errors = _run(capsys, clip, "-o", tmp_path, "--model", model_path)
    assert code == 0 and errors == []
    mix, rate = read_audio(clip)
    assert os.listdir(tmp_path) == ["The Easton Ellises - Falcon 69"]
    vocals = _check_outputs(tmp_path / "The Easton Ellises - Falcon 69", mix, rate)
    assert rate == 44100 and mix.shape[1] == 2
    assert 0 < np.abs(vocals).max()


@pytest.mark.parametrize("rate, channels, subtype, seconds", [
    (48000, 1, "PCM_24", 1.5), (8000, 2, "PCM_16", 1.5), (44100, 2, "PCM_16", 0.2)])
def test_any_rate_channels_length(tmp_path, model_path, capsys, rate, channels, subtype,
                                  seconds):
    path = tmp_path / "song.wav"
    soundfile.write(path, _tone(seconds, rate, channels), rate, subtype=subtype)
    code, errors = _run(capsys, path, "-o", tmp_path / "out", "--model", model_path)
    assert code == 0 and errors == []
    mix, _ = read_audio(str(path))
    _check_outputs(tmp_path / "out" / "song", mix, rate)


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


def test_blocks_match_the_whole_song_and_separate_mono():
    model = _model(SMALL_STFT)
    stereo = _tone(4.0, 8192, 2)
    separator = Separator(model, precision="float32", batch_size=4, block_seconds=0.55)
    vocals, accompaniment = separator.separate(stereo, 8192)
    for channel in range(2):
        expected, _ = separate_mono(model, stereo[:, channel], SMALL_STFT, batch_size=4)
        np.testing.assert_allclose(vocals[:, channel], expected, atol=1e-5)
    np.testing.assert_allclose(vocals + accompaniment, stereo, atol=1e-6)
    full_rate = _tone(4.0, 44100, 2)
    in_blocks, _ = separator.separate(full_rate, 44100)
    whole, _ = Separator(model, precision="float32", batch_size=4,
                         block_seconds=10.0).separate(full_rate, 44100)
    np.testing.assert_allclose(in_blocks, whole, atol=1e-4)


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
    """Equal to float round-off inside; within -60 dB at the song's first and last 20 ms.

    At the ends the whole-song resampler and the streamed one (which reads
    zeros before and after the song) differ in their first few samples.
    """
    edge = int(0.02 * rate)
    np.testing.assert_allclose(streamed[edge:-edge], whole[edge:-edge], atol=1e-5)
    np.testing.assert_allclose(streamed, whole, atol=1e-3)


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
