"""The U-Net, its masked L1 step, and saving: the keras-hub model-test recipe."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unet import MaskModel, ModelConfig, RunConfig, build_model, build_unet, masked_l1_loss
from keras_unet.__main__ import main as self_check_main
from keras_unet.__main__ import skip_connections
from keras_unet.core.saving import load_model, run_config_of, save_keras

TINY = ModelConfig(depth=3, base_channels=4)


@pytest.mark.parametrize("shape", [(513, 128), (512, 128), (37, 21)])
def test_output_shape_equals_input_shape_and_mask_is_in_unit_range(shape):
    model = build_unet(TINY, n_bins=shape[0], n_frames=shape[1])
    batch = np.random.default_rng(0).random((2, *shape), np.float32) * 10
    mask = model.predict(batch, verbose=0)
    assert mask.shape == (2, *shape)
    assert mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0


def test_default_model_has_the_course_brief_shape():
    model = build_unet()
    assert model.input_shape == (None, 513, 128)
    assert model.output_shape == (None, 513, 128)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
             and not isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [layer.filters for layer in convs] == [32, 64, 128, 256]
    assert all(layer.strides == (2, 2) and layer.kernel_size == (5, 5) for layer in convs)
    assert model.layers[-3].name == "mask_sigmoid"


@pytest.mark.parametrize("preset", ["seed", "paper"])
def test_each_skip_joins_encoder_and_decoder_of_equal_resolution(preset):
    config = ModelConfig.from_preset(preset)
    joins = skip_connections(build_unet(config))
    assert len(joins) == config.depth - 1
    encoders = sorted(encoder for _, encoder, _, _ in joins)
    assert encoders == [f"encoder_act_{i}" for i in range(config.depth - 1)]
    assert all(decoder_size == encoder_size for _, _, decoder_size, encoder_size in joins)


def _paper_parameter_count(kernel=5, channels=(16, 32, 64, 128, 256, 512)):
    """Weights + biases of each (transposed) conv, 4 per channel for each batch norm."""
    conv = lambda c_in, c_out: kernel * kernel * c_in * c_out + c_out  # noqa: E731
    encoder = sum(conv(c_in, c_out) + 4 * c_out
                  for c_in, c_out in zip((1,) + channels[:-1], channels))
    decoder_outputs = channels[-2::-1]  # 256, 128, 64, 32, 16
    decoder_inputs = (channels[-1],) + tuple(2 * c for c in decoder_outputs[:-1])
    decoder = sum(conv(c_in, c_out) + 4 * c_out
                  for c_in, c_out in zip(decoder_inputs, decoder_outputs))
    output = conv(2 * channels[0], 1)
    return encoder + decoder + output


def test_paper_preset_has_the_documented_parameter_count():
    model = build_unet(ModelConfig.from_preset("paper"))
    assert model.count_params() == _paper_parameter_count() == 9_826_321
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers) == 3
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 11


def test_loss_equals_numpy_computation():
    rng = np.random.default_rng(4)
    mix, vocals, mask = (rng.random((2, 5, 7), np.float32) for _ in range(3))
    weights = np.ones((2, 1, 7), np.float32)
    weights[:, :, 5:] = 0.0
    expected = np.mean(np.abs(mask * mix - vocals))
    expected_weighted = np.mean(np.abs(mask * mix - vocals)[:, :, :5])
    assert float(masked_l1_loss(mix, vocals, mask)) == pytest.approx(expected, rel=1e-6)
    assert float(masked_l1_loss(mix, vocals, mask, weights)) == pytest.approx(
        expected_weighted, rel=1e-6)


def test_the_two_source_loss_adds_the_accompaniment_term():
    rng = np.random.default_rng(6)
    mix, vocals, mask = (tf.constant(rng.random((2, 5, 7), np.float32)) for _ in range(3))
    weights = np.ones((2, 1, 7), np.float32)
    weights[:, :, 5:] = 0.0
    exact_rest = (1.0 - mask) * mix  # an accompaniment the rest of the mix matches exactly
    both = tf.stack([vocals, exact_rest], axis=-1)
    assert float(masked_l1_loss(mix, both, mask, weights)) == pytest.approx(
        float(masked_l1_loss(mix, vocals, mask, weights)), rel=1e-6)
    accompaniment = tf.constant(rng.random((2, 5, 7), np.float32))
    expected = (np.mean(np.abs(mask * mix - vocals)[:, :, :5])
                + np.mean(np.abs((1.0 - mask) * mix - accompaniment)[:, :, :5]))
    assert float(masked_l1_loss(mix, tf.stack([vocals, accompaniment], -1), mask,
                                weights)) == pytest.approx(expected, rel=1e-6)


def test_the_accompaniment_term_alone_moves_the_mask():
    """Vocals matched exactly: only the accompaniment's error is left, and its gradient."""
    rng = np.random.default_rng(7)
    mix, mask = tf.constant(rng.random((1, 4, 3), np.float32)), tf.Variable(
        np.full((1, 4, 3), 0.5, np.float32))
    vocals, accompaniment = 0.5 * mix, 0.2 * mix  # the best mask for the rest is 0.8
    with tf.GradientTape() as tape:
        vocals_only = masked_l1_loss(mix, vocals, mask)
        both = masked_l1_loss(mix, tf.stack([vocals, accompaniment], -1), mask)
    gradient = tape.gradient(both, mask).numpy()
    assert float(vocals_only) == 0.0 and float(both) > 0.0
    assert np.all(gradient < 0)  # (1 - M) X is above A: raise the mask


def _low_half_task(n_examples=16, shape=(32, 16)):
    """Target = the low-frequency half of X: the ideal mask is 1 below, 0 above."""
    mix = np.random.default_rng(5).random((n_examples, *shape), np.float32)
    vocals = mix.copy()
    vocals[:, shape[0] // 2:, :] = 0.0
    return mix, vocals


def test_thirty_steps_halve_the_loss_on_a_synthetic_task():
    keras.utils.set_random_seed(0)
    mix, vocals = _low_half_task()
    model = build_unet(TINY, n_bins=32, n_frames=16)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = model.evaluate(mix, vocals, batch_size=8, verbose=0)
    model.fit(mix, vocals, batch_size=8, epochs=15, verbose=0)  # 2 steps an epoch
    after = model.evaluate(mix, vocals, batch_size=8, verbose=0)
    assert model.optimizer.iterations.numpy() == 30
    assert after <= 0.5 * before


TINY_WITH_BATCH_NORM = ModelConfig(depth=2, base_channels=4, batch_norm=True,
                                   decoder_activation="relu")


@pytest.mark.parametrize("config", [TINY, TINY_WITH_BATCH_NORM], ids=["seed", "batch-norm"])
def test_train_step_under_mirrored_strategy_matches_single_device(config):
    """Two logical CPUs, global batch split in two: same update as one device.

    With batch norm this holds only when its statistics are the global
    batch's (synchronized), not each replica's half.
    """
    mix, vocals = _low_half_task(n_examples=8)
    mix[4:] *= 3.0  # the replicas' halves differ, so their own statistics would too
    vocals[4:] *= 3.0

    def one_step(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            model = build_unet(config, n_bins=32, n_frames=16)
            model.compile(optimizer=keras.optimizers.SGD(0.5))
        model.fit(mix, vocals, batch_size=8, epochs=1, verbose=0, shuffle=False)
        return model.get_weights()

    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest configures two logical CPUs"
    single = one_step(tf.distribute.OneDeviceStrategy(devices[0].name))
    mirrored = one_step(tf.distribute.MirroredStrategy(
        [d.name for d in devices[:2]], cross_device_ops=tf.distribute.ReductionToOneDevice()))
    for expected, actual in zip(single, mirrored):
        np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_keras_file_round_trip_predicts_exactly_and_keeps_the_config(tmp_path):
    run_config = RunConfig(model=TINY)
    model = build_model(run_config)
    batch = np.random.default_rng(6).random((2, 513, 128), np.float32)
    before = model.predict(batch, verbose=0)
    save_keras(model, str(tmp_path / "model.keras"))
    loaded = load_model(str(tmp_path / "model.keras"))
    assert isinstance(loaded, MaskModel)
    assert run_config_of(loaded) == run_config
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), before, atol=1e-6)


def test_saved_model_export_reloads_with_identical_predictions(tmp_path):
    model = build_unet(TINY, n_bins=64, n_frames=32)
    batch = np.random.default_rng(7).random((3, 64, 32), np.float32)
    before = model.predict(batch, verbose=0)
    model.export(str(tmp_path / "exported"), verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "exported"))
    np.testing.assert_allclose(reloaded.serve(tf.constant(batch)).numpy(), before, atol=1e-6)


def test_config_round_trips_through_get_config():
    model = build_model(RunConfig(model=TINY))
    clone = MaskModel.from_config(model.get_config())
    assert clone.run_config == model.run_config
    assert clone.count_params() == model.count_params()


def test_self_check_command_passes(capsys):
    assert self_check_main(["--preset", "seed"]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_bad_model_config_names_the_argument():
    with pytest.raises(ValueError, match="`preset` must be one of"):
        ModelConfig.from_preset("huge")
    with pytest.raises(ValueError, match="`decoder_dropout_layers`"):
        ModelConfig(depth=2, decoder_dropout_layers=3)


def test_a_model_from_another_version_is_refused_by_name(tmp_path):
    """A setting this version does not know may change the network: refuse it, one clear line."""
    from keras_unet.core.saving import ModelFileError

    model = build_model(RunConfig(model=ModelConfig(depth=2, base_channels=4)))
    model.run_config = {**model.run_config, "model": {**model.run_config["model"],
                                                      "input_scale": "decibel"}}
    path = str(tmp_path / "newer.keras")
    save_keras(model, path)
    with pytest.raises(ModelFileError, match=r"newer.keras: Unknown `model` settings "
                                             r"\['input_scale'\]"):
        load_model(path)
