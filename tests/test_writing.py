"""keras_unet.separation.writing: what lands on disk, with known vocals and mix (no model)."""

import os

import numpy as np
import pytest
import soundfile

from keras_unet.separation.writing import WRITE_BLOCK_SAMPLES, write_separation
from keras_unet.core.audio_io import AudioError, integer_steps

RATE_HZ = 8000
N_SAMPLES = WRITE_BLOCK_SAMPLES + 12345  # two write blocks, the second partial


def _song(peak, seed=0):
    """A stereo mix of the given peak and vocals that are not on any integer grid.

    Returns:
        (mix, vocals): float32 (N_SAMPLES, 2) each.
    """
    rng = np.random.default_rng(seed)
    mix = rng.uniform(-1.0, 1.0, (N_SAMPLES, 2))
    mix *= peak / np.abs(mix).max()
    vocals = 0.37 * mix + 0.05 * rng.standard_normal(mix.shape)
    return mix.astype(np.float32), vocals.astype(np.float32)


def _blocks(mix, vocals, block=7000):
    """(start, mix, vocals) blocks as `Separator.separate_blocks` yields them."""
    for start in range(0, len(mix), block):
        yield start, mix[start:start + block], vocals[start:start + block]


def _write(tmp_path, mix, vocals, output_format, clip_mode):
    extension = "flac" if output_format == "flac" else "wav"
    paths = [str(tmp_path / f"vocals.{extension}"), str(tmp_path / f"accompaniment.{extension}")]
    written = write_separation(_blocks(mix, vocals), lambda start, stop: mix[start:stop],
                               len(mix), mix.shape[1], RATE_HZ, *paths, output_format, clip_mode)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(path) for path in paths)
    dtype = "float32" if output_format == "wav-float" else "int32"
    outputs = [soundfile.read(path, dtype=dtype, always_2d=True)[0] for path in paths]
    if dtype == "int32":  # libsndfile's integers are left-justified in 32 bits
        shift = 32 - integer_steps(output_format).bit_length()
        outputs = [output.astype(np.int64) >> shift for output in outputs]
    return written, outputs


def _quantised(samples, steps):
    return np.rint(samples.astype(np.float64) * steps).astype(np.int64)


@pytest.mark.parametrize("output_format", ["wav16", "flac"])
def test_integer_outputs_sum_to_the_quantised_input_exactly(tmp_path, output_format):
    mix, vocals = _song(peak=0.8)
    written, (vocals_out, accompaniment_out) = _write(tmp_path, mix, vocals, output_format,
                                                      "rescale")
    steps = integer_steps(output_format)
    assert written.scale == 1.0 and written.clipped == 0
    np.testing.assert_array_equal(vocals_out, _quantised(vocals, steps))
    np.testing.assert_array_equal(vocals_out + accompaniment_out, _quantised(mix, steps))
    # Rounding each output on its own (what libsndfile does with floats) misses by a step.
    assert np.any(_quantised(vocals, steps) + _quantised(mix - vocals, steps)
                  != _quantised(mix, steps))


@pytest.mark.parametrize("output_format", ["wav16", "flac"])
def test_rescale_scales_the_mix_and_both_outputs_by_one_factor(tmp_path, output_format):
    mix, vocals = _song(peak=2.0)  # the accompaniment (0.63 of it) beyond full scale
    written, (vocals_out, accompaniment_out) = _write(tmp_path, mix, vocals, output_format,
                                                      "rescale")
    steps = integer_steps(output_format)
    peak = max(np.abs(vocals).max(), np.abs(mix - vocals).max())
    assert peak > 1.1
    assert written.peak == pytest.approx(peak) and written.clipped == 0
    assert written.scale == pytest.approx((steps - 2) / steps / peak, rel=1e-12)
    np.testing.assert_array_equal(vocals_out, _quantised(written.scale * vocals, steps))
    np.testing.assert_array_equal(vocals_out + accompaniment_out,
                                  _quantised(written.scale * mix, steps))
    for output in (vocals_out, accompaniment_out):
        assert output.min() >= -steps and output.max() <= steps - 1
    assert steps - 3 <= np.abs(accompaniment_out).max() <= steps - 1  # peak at full scale


def test_rescale_in_float_brings_the_peak_to_full_scale(tmp_path):
    mix, vocals = _song(peak=2.0)
    written, (vocals_out, accompaniment_out) = _write(tmp_path, mix, vocals, "wav-float",
                                                      "rescale")
    assert written.scale == pytest.approx(1.0 / written.peak)
    np.testing.assert_allclose(vocals_out, written.scale * vocals, atol=1e-7)
    np.testing.assert_allclose(vocals_out + accompaniment_out, written.scale * mix, atol=1e-6)
    assert np.abs(accompaniment_out).max() == pytest.approx(1.0, abs=1e-6)


def test_clamp_clips_and_keeps_the_sum_where_nothing_was_clipped(tmp_path):
    mix = np.zeros((N_SAMPLES, 1), np.float32)
    vocals = np.full((N_SAMPLES, 1), 0.25, np.float32)
    mix[:3], vocals[:3] = 0.5, -0.75  # accompaniment 1.25: clipped
    mix[3:5], vocals[3:5] = 0.5, 1.5  # vocals 1.5 clipped; accompaniment -0.5 + clipped part
    written, (vocals_out, accompaniment_out) = _write(tmp_path, mix, vocals, "wav16", "clamp")
    steps = integer_steps("wav16")
    assert written.scale == 1.0 and written.peak == pytest.approx(1.5)
    assert written.clipped == 3 + 2 and written.n_output_samples == 2 * N_SAMPLES
    np.testing.assert_array_equal(vocals_out[:5, 0], [-0.75 * steps] * 3 + [steps - 1] * 2)
    np.testing.assert_array_equal(accompaniment_out[:5, 0],
                                  [steps - 1] * 3 + [0.5 * steps - (steps - 1)] * 2)
    sums = (vocals_out + accompaniment_out)[:, 0]
    np.testing.assert_array_equal(sums[3:], _quantised(mix[3:, 0], steps))  # exact elsewhere


def test_a_mix_beyond_full_scale_whose_outputs_fit_is_written_as_it_is(tmp_path):
    mix, vocals = _song(peak=1.15)
    written, (vocals_out, accompaniment_out) = _write(tmp_path, mix, vocals, "wav16", "rescale")
    assert np.abs(mix).max() > 1.0 and written.peak < 1.0 and written.scale == 1.0
    np.testing.assert_array_equal(vocals_out + accompaniment_out, _quantised(mix, 2 ** 15))


def test_none_writes_samples_beyond_full_scale_in_float(tmp_path):
    mix, vocals = _song(peak=2.0)
    written, (vocals_out, accompaniment_out) = _write(tmp_path, mix, vocals, "wav-float", "none")
    assert written.scale == 1.0 and written.clipped == 0
    np.testing.assert_array_equal(vocals_out, vocals)
    np.testing.assert_array_equal(accompaniment_out, mix - vocals)
    assert np.abs(accompaniment_out).max() > 1.0
    with pytest.raises(ValueError, match="cannot hold"):
        _write(tmp_path / "int", mix, vocals, "wav16", "none")


def test_a_failing_separation_leaves_nothing_behind(tmp_path):
    mix, vocals = _song(peak=0.5)

    def failing_blocks():
        yield from _blocks(mix[:14000], vocals[:14000])
        raise AudioError("song.ogg: read failed (broken page)")

    with pytest.raises(AudioError, match="broken page"):
        write_separation(failing_blocks(), lambda start, stop: mix[start:stop], N_SAMPLES, 2,
                         RATE_HZ, str(tmp_path / "vocals.wav"),
                         str(tmp_path / "accompaniment.wav"))
    assert os.listdir(tmp_path) == []  # no output, no scratch file
