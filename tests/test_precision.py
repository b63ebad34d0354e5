"""Precision: which policy "auto" picks, and that bfloat16 keeps the model's answers."""

import os

import numpy as np
import pytest

from keras_unet.core import precision
from keras_unet.core.config import DataConfig, ModelConfig, RunConfig, StftConfig
from keras_unet.core.model import build_model

SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "saved_models", "default")
TINY = RunConfig(stft=StftConfig(n_fft=64, hop_samples=48, patch_frames=16),
                 model=ModelConfig(depth=3, base_channels=8))


def _machine(monkeypatch, flags=(), gpu=None):
    """A machine with these CPU flags and a GPU of compute capability `gpu` (None: no GPU)."""
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setattr(precision, "cpu_flags", lambda path=None: frozenset(flags))
    monkeypatch.setattr(precision, "gpu_compute_capability", lambda: gpu)


@pytest.mark.parametrize("flags, gpu, expected", [
    (("avx512f", "avx512_bf16"), None, "mixed_bfloat16"),
    (("amx_bf16",), None, "mixed_bfloat16"),
    (("avx512f", "avx2"), None, "float32"),
    ((), (8, 0), "mixed_bfloat16"),  # A100
    ((), (9, 0), "mixed_bfloat16"),  # H100
    ((), (7, 5), "mixed_float16"),  # T4: float16 tensor cores, no bfloat16
    ((), (7, 0), "mixed_float16"),  # V100
    (("avx512_bf16",), (6, 1), "mixed_float16"),  # the GPU trains, not the CPU
    ((), (0, 0), "mixed_float16"),  # a GPU that does not say
    ((), None, "float32"),
])
def test_auto_follows_the_hardware(monkeypatch, flags, gpu, expected):
    _machine(monkeypatch, flags, gpu)
    assert precision.resolve_precision("auto") == expected


@pytest.mark.parametrize("setting, expected", [
    ("0", "float32"), ("false", "float32"), ("1", "mixed_bfloat16"), (None, "mixed_bfloat16")])
def test_auto_avoids_bf16_without_onednn(monkeypatch, setting, expected):
    _machine(monkeypatch, flags=("avx512_bf16",))
    if setting is None:
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    else:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", setting)
    assert precision.resolve_precision("auto") == expected


@pytest.mark.parametrize("name", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_explicit_precisions_pass_through(monkeypatch, name):
    _machine(monkeypatch, flags=())  # even where bf16 is not native
    assert precision.resolve_precision(name) == name


@pytest.mark.parametrize("name", ["bfloat16", "float16", "Float32", ""])
def test_unknown_precision_names_the_choices(name):
    with pytest.raises(ValueError, match="`precision` must be one of"):
        precision.resolve_precision(name)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\n"
                       "flags\t\t: fpu avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


def _distinctive_model():
    """A float32 tiny model whose mask varies a lot across bins (not ~0.5 everywhere)."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(TINY)
    # Doubled kernels and non-zero biases spread the mask over [0, 1].
    model.set_weights([w * 2.0 if w.ndim > 1 else w + 0.1 for w in model.get_weights()])
    return model


def test_bfloat16_twin_keeps_weights_and_answers():
    model = _distinctive_model()
    magnitudes = np.random.default_rng(1).random((4, TINY.stft.n_bins, 16), dtype=np.float32)
    expected = model.predict_on_batch(magnitudes)
    assert expected.std() > 0.1  # a wrong or reinitialised network would be far off

    twin = precision.model_for_precision(model, "mixed_bfloat16")
    mask = twin.predict_on_batch(magnitudes)
    assert precision.policy_of(twin) == "mixed_bfloat16"
    assert twin.output.dtype == "float32" and mask.dtype == np.float32
    assert dict(twin.run_config) == dict(model.run_config)
    for ours, theirs in zip(twin.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    # bfloat16 keeps 8 significant bits (relative step 2**-8) through 6 layers;
    # measured here: largest difference 0.002, mean 0.0005.
    np.testing.assert_allclose(mask, expected, atol=0.01)
    assert np.mean(np.abs(mask - expected)) < 0.002

    back = precision.model_for_precision(twin, "float32")
    assert precision.policy_of(back) == "float32"
    np.testing.assert_array_equal(back.predict_on_batch(magnitudes), expected)


def test_same_precision_returns_the_model_itself():
    model = build_model(TINY)
    assert precision.model_for_precision(model, "float32") is model


def test_auto_twin_on_a_machine_without_bf16_is_the_model(monkeypatch):
    _machine(monkeypatch, flags=("avx2",))
    model = build_model(TINY)
    assert precision.model_for_precision(model, "auto") is model


def _sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(|s|^2 / |s - s_hat|^2) over the whole signal."""
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate)**2)))


def _train_and_compare(config: RunConfig, epochs: int, batch_size: int,
                       learning_rate: float = 1e-4):
    """Trains on the bundled clip; vocals SDR of the whole clip (train + validation part)."""
    from pipelines.datasets import make_train_dataset
    from pipelines.sources import load_tracks

    import keras

    train_tracks, validation_tracks = load_tracks(config)
    keras.utils.set_random_seed(0)
    model = build_model(config)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    model.fit(make_train_dataset(train_tracks, config, batch_size, seed=0, epochs=epochs),
              epochs=epochs, verbose=0)
    mix = np.concatenate([train_tracks[0].mix, validation_tracks[0].mix])
    true_vocals = np.concatenate([train_tracks[0].vocals, validation_tracks[0].vocals])
    return _compare_model(model, mix, true_vocals, config.stft.sample_rate_hz)


def _compare_model(model, mix, true_vocals, sample_rate_hz):
    """Vocals SDR of `mix` separated in float32 and in mixed_bfloat16."""
    from keras_unet.separation.separator import Separator

    scores, estimates = {}, {}
    for name in ("float32", "mixed_bfloat16"):
        separator = Separator(model, precision=name)
        assert precision.policy_of(separator.model) == name
        estimates[name], _ = separator.separate(mix, sample_rate_hz)
        scores[name] = _sdr_db(true_vocals, estimates[name])
    # The bfloat16 path really ran: its vocals differ, if only in rounding.
    assert not np.array_equal(estimates["float32"], estimates["mixed_bfloat16"])
    return scores


def test_bfloat16_separation_matches_float32_quality():
    config = RunConfig(model=ModelConfig(base_channels=8),
                       data=DataConfig(patches_per_epoch=16))
    scores = _train_and_compare(config, epochs=2, batch_size=8)
    assert abs(scores["mixed_bfloat16"] - scores["float32"]) < 0.1, scores


@pytest.mark.slow
def test_bfloat16_separation_matches_float32_quality_seed_preset():
    config = RunConfig(data=DataConfig(patches_per_epoch=64))
    scores = _train_and_compare(config, epochs=4, batch_size=8)
    assert abs(scores["mixed_bfloat16"] - scores["float32"]) < 0.1, scores


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(SHIPPED_MODEL), reason="no trained model shipped")
def test_shipped_model_keeps_its_quality_in_bfloat16():
    """The real claim: the shipped model on the bundled clip, full band, 44.1 kHz stereo."""
    import stempeg

    from keras_unet.core.saving import load_model

    stems, rate = stempeg.read_stems(stempeg.example_stem_path())  # (5, samples, 2)
    mix, vocals = stems[0].astype(np.float32), stems[4].astype(np.float32)
    scores = _compare_model(load_model(SHIPPED_MODEL), mix, vocals, int(rate))
    assert abs(scores["mixed_bfloat16"] - scores["float32"]) < 0.1, scores
