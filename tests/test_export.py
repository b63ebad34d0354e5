"""SavedModel export: signatures, config inside, the separator graph, the CLI."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from keras_unet.export.saved_model import CONFIG_FILE, TFLITE_FILE, export_saved_model
from keras_unet.core.precision import policy_of
from keras_unet.separation.separator import Separator
from keras_unet.cli import export as export_cli
from keras_unet.core.config import KERAS_FILE, ModelConfig, RunConfig, StftConfig
from keras_unet.core.masking import separate_mono
from keras_unet.core.model import build_model, build_unet
from keras_unet.core.saving import ModelFileError, load_model, save_keras

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_CONFIG = RunConfig(stft=StftConfig(n_fft=256, hop_samples=192, patch_frames=16),
                       model=ModelConfig(depth=2, base_channels=4))
N_BINS, N_FRAMES = RUN_CONFIG.stft.n_bins, RUN_CONFIG.stft.patch_frames



@pytest.fixture(scope="module")
def model():
    """A tiny U-Net with every weight perturbed, so its masks vary."""
    model = build_model(RUN_CONFIG)
    rng = np.random.default_rng(0)
    for variable in model.trainable_variables:
        variable.assign(variable.numpy() + rng.normal(0, 0.1, variable.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def both_dir(model, tmp_path_factory):
    """One export of kind "both" with a TFLite file, shared by the tests below."""
    return export_saved_model(model, str(tmp_path_factory.mktemp("export") / "both"),
                              kind="both", tflite=True)


@pytest.fixture(scope="module")
def loaded(both_dir):
    return tf.saved_model.load(both_dir)


@pytest.fixture(scope="module")
def clip():
    """The bundled MUSDB clip's mixture, mono at the model's rate. (samples,)"""
    import stempeg

    from keras_unet.core.audio_io import resample, to_mono

    stems, rate = stempeg.read_stems(stempeg.example_stem_path(), stem_id=0)
    return to_mono(resample(stems, rate, RUN_CONFIG.stft.sample_rate_hz))


def _magnitudes(batch):
    return np.random.default_rng(1).gamma(1.0, 2.0, (batch, N_BINS, N_FRAMES)).astype("float32")


def test_signatures_have_named_inputs_and_outputs(loaded):
    signatures = loaded.signatures
    assert set(signatures) == {"serving_default", "mask", "separate", "config"}
    mask_inputs = signatures["mask"].structured_input_signature[1]
    assert mask_inputs == {"mix_magnitude": tf.TensorSpec([None, N_BINS, N_FRAMES], tf.float32,
                                                          name="mix_magnitude")}
    assert signatures["mask"].structured_outputs["mask"].dtype == tf.float32
    assert signatures["serving_default"].structured_input_signature[1] == mask_inputs
    separate_inputs = signatures["separate"].structured_input_signature[1]
    assert separate_inputs == {"waveform": tf.TensorSpec([None], tf.float32, name="waveform")}
    assert set(signatures["separate"].structured_outputs) == {"vocals", "accompaniment"}


def test_mask_signature_reproduces_the_keras_model(model, loaded):
    magnitudes = _magnitudes(3)
    expected = model(magnitudes, training=False).numpy()
    for name in ("serving_default", "mask"):
        mask = loaded.signatures[name](mix_magnitude=tf.constant(magnitudes))["mask"].numpy()
        assert mask.shape == (3, N_BINS, N_FRAMES)
        np.testing.assert_allclose(mask, expected, atol=1e-5, rtol=0)
    assert expected.std() > 1e-3  # the comparison is not between constants


def test_config_is_readable_from_the_saved_model_alone(loaded, both_dir):
    text = loaded.signatures["config"]()["config_json"].numpy().decode("utf-8")
    assert RunConfig.from_json(text) == RUN_CONFIG
    assert loaded.config()["config_json"].numpy().decode("utf-8") == text
    with open(os.path.join(both_dir, CONFIG_FILE), encoding="utf-8") as file:
        assert json.load(file) == json.loads(text)


def test_weights_are_saved_once(model, loaded, both_dir):
    checkpoint = os.path.join(both_dir, "variables", "variables")
    saved = [name for name, _ in tf.train.list_variables(checkpoint)
             if name.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(model.weights)
    shapes = sorted(tuple(weight.shape) for weight in model.weights)
    assert sorted(tuple(variable.shape) for variable in loaded.variables) == shapes


def test_load_model_round_trip(model, both_dir):
    restored = load_model(both_dir)
    assert restored.run_config == model.run_config
    magnitudes = _magnitudes(2)
    np.testing.assert_allclose(restored(magnitudes).numpy(), model(magnitudes).numpy(),
                               atol=1e-6, rtol=0)


def test_separator_signature_matches_separate_mono_on_the_bundled_clip(model, loaded, clip):
    waveform = tf.constant(clip)
    expected_vocals, _ = separate_mono(model, waveform, RUN_CONFIG.stft, batch_size=8)
    outputs = loaded.signatures["separate"](waveform=waveform)
    vocals, accompaniment = outputs["vocals"].numpy(), outputs["accompaniment"].numpy()
    assert vocals.shape == accompaniment.shape == clip.shape
    np.testing.assert_allclose(vocals, expected_vocals.numpy(), atol=1e-4, rtol=0)
    separator_vocals, _ = Separator(model, precision="float32").separate(
        clip[:, np.newaxis], RUN_CONFIG.stft.sample_rate_hz)  # separate.py's path
    np.testing.assert_allclose(vocals, separator_vocals[:, 0], atol=1e-4, rtol=0)
    assert np.abs(vocals).max() > 1e-3 and np.abs(accompaniment).max() > 1e-3


def test_exported_separator_applies_a_known_mask(tmp_path):
    """A model whose mask is 1/4 everywhere: vocals = x / 4, accompaniment = 3 x / 4."""
    model = build_model(RUN_CONFIG)
    kernel, bias = model.get_layer("mask_deconv").get_weights()
    model.get_layer("mask_deconv").set_weights(
        [np.zeros_like(kernel), np.full_like(bias, np.log(1 / 3))])  # sigmoid -> 1/4
    directory = export_saved_model(model, str(tmp_path / "quarter"), kind="separator")
    waveform = np.random.default_rng(3).uniform(-0.5, 0.5, 3 * 8192 + 17).astype("float32")
    outputs = tf.saved_model.load(directory).signatures["separate"](
        waveform=tf.constant(waveform))
    np.testing.assert_allclose(outputs["vocals"].numpy(), 0.25 * waveform, atol=1e-5, rtol=0)
    np.testing.assert_allclose(outputs["accompaniment"].numpy(), 0.75 * waveform, atol=1e-5,
                               rtol=0)


_WITHOUT_PROJECT = """
import importlib.abc, json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

class BlockProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras_unet", "pipelines", "export"):
            raise ModuleNotFoundError(f"blocked: {name}")

sys.meta_path.insert(0, BlockProject())
try:
    import keras_unet
    raise SystemExit("keras_unet is importable")
except ModuleNotFoundError:
    pass

import numpy as np
import tensorflow as tf

loaded = tf.saved_model.load(sys.argv[1])
config = json.loads(loaded.signatures["config"]()["config_json"].numpy())
rate = config["stft"]["sample_rate_hz"]
results = {}
for n_samples in (1000, 3 * rate + 17):
    time = np.arange(n_samples) / rate
    waveform = (0.5 * np.sin(2 * np.pi * 440 * time)).astype("float32")
    out = loaded.signatures["separate"](waveform=tf.constant(waveform))
    results[f"input_{n_samples}"] = waveform
    results[f"vocals_{n_samples}"] = out["vocals"].numpy()
np.savez(sys.argv[2], **results)
files = {name: os.path.abspath(getattr(module, "__file__", None) or os.sep)
         for name, module in sys.modules.items()}
project = [name for name, file in files.items()
           if file.startswith(sys.argv[3]) and not file.startswith(sys.prefix + os.sep)]
print(json.dumps({"project_modules": project}))
"""


def test_separator_runs_without_the_project(model, both_dir, tmp_path):
    script = tmp_path / "run_export.py"
    script.write_text(textwrap.dedent(_WITHOUT_PROJECT))
    results_path = tmp_path / "results.npz"
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", str(script), both_dir, str(results_path), REPO_ROOT + os.sep],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"project_modules": []}
    results = np.load(results_path)
    for n_samples in (1000, 3 * RUN_CONFIG.stft.sample_rate_hz + 17):
        waveform = results[f"input_{n_samples}"]
        vocals = results[f"vocals_{n_samples}"]
        expected, _ = separate_mono(model, tf.constant(waveform), RUN_CONFIG.stft)
        assert vocals.shape == waveform.shape
        np.testing.assert_allclose(vocals, expected.numpy(), atol=1e-4, rtol=0)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tflite_mask_matches_the_saved_model(loaded, both_dir):
    interpreter = tf.lite.Interpreter(model_path=os.path.join(both_dir, TFLITE_FILE))
    runner = interpreter.get_signature_runner("mask")
    magnitudes = _magnitudes(2)
    expected = loaded.signatures["mask"](mix_magnitude=tf.constant(magnitudes))["mask"].numpy()
    np.testing.assert_allclose(runner(mix_magnitude=magnitudes)["mask"], expected,
                               atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_mixed_precision_model_exports_its_float32_twin(model, tmp_path):
    mixed = build_model(RUN_CONFIG, dtype_policy="mixed_bfloat16")
    mixed.set_weights(model.get_weights())
    directory = export_saved_model(mixed, str(tmp_path / "mixed"), kind="mask", tflite=True)
    magnitudes = _magnitudes(2)
    exported = tf.saved_model.load(directory).signatures["mask"](
        mix_magnitude=tf.constant(magnitudes))["mask"].numpy()
    float32_mask = model(magnitudes, training=False).numpy()
    np.testing.assert_allclose(exported, float32_mask, atol=1e-5, rtol=0)
    assert np.abs(mixed(magnitudes, training=False).numpy() - float32_mask).max() < 0.05
    assert policy_of(mixed) == "mixed_bfloat16" and policy_of(load_model(directory)) == "float32"
    runner = tf.lite.Interpreter(
        model_path=os.path.join(directory, TFLITE_FILE)).get_signature_runner("mask")
    np.testing.assert_allclose(runner(mix_magnitude=magnitudes)["mask"], float32_mask,
                               atol=1e-5, rtol=0)


def test_mask_export_replaces_an_earlier_export_but_not_a_foreign_folder(model, tmp_path):
    directory = tmp_path / "saved" / "mask"
    export_saved_model(model, str(directory), kind="mask")
    export_saved_model(model, str(directory), kind="mask")
    assert sorted(os.listdir(directory.parent)) == ["mask"]  # no temporary left behind
    loaded = tf.saved_model.load(str(directory))
    assert set(loaded.signatures) == {"serving_default", "mask", "config"}
    assert {KERAS_FILE, CONFIG_FILE, "saved_model.pb", "variables"} <= set(os.listdir(directory))

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="keep.txt"):
        export_saved_model(model, str(foreign), kind="mask")
    assert os.listdir(foreign) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["notes", "saved"]


def test_an_earlier_export_with_a_users_file_beside_it_is_kept_whole(model, tmp_path):
    """Issue 22, item 2: an export with notes and a subfolder in it, another project's
    SavedModel with a config.json: neither is replaced, and nothing in them is lost."""
    directory = tmp_path / "mask"
    export_saved_model(model, str(directory), kind="mask")
    (directory / "notes.txt").write_text("my notes")
    (directory / "takes").mkdir()
    before = sorted(os.listdir(directory))
    with pytest.raises(FileExistsError, match="notes.txt"):
        export_saved_model(model, str(directory), kind="mask")
    assert sorted(os.listdir(directory)) == before
    assert (directory / "notes.txt").read_text() == "my notes"

    other = tmp_path / "other_project"
    shutil.copytree(directory / "variables", other / "variables")
    shutil.copy(directory / "saved_model.pb", other / "saved_model.pb")
    (other / "config.json").write_text('{"labels": ["cat", "dog"]}')
    with pytest.raises(FileExistsError, match="not a SavedModel export of this project"):
        export_saved_model(model, str(other), kind="mask")
    assert (other / "config.json").read_text() == '{"labels": ["cat", "dog"]}'


def test_export_refuses_a_model_that_does_not_match_its_config(tmp_path):
    model = build_unet(ModelConfig(depth=2, base_channels=4), n_bins=N_BINS, n_frames=N_FRAMES)
    with pytest.raises(ModelFileError, match="does not match its config"):
        export_saved_model(model, str(tmp_path / "out"))  # default config: 513 x 128
    assert not (tmp_path / "out").exists()


def test_cli_exports_a_checkpoint_as_separator(model, tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / "best_model.keras"
    save_keras(model, str(checkpoint))
    monkeypatch.setattr(export_cli, "MODELS_DIR", str(tmp_path / "saved_models"))
    assert export_cli.main([str(checkpoint), "--kind", "separator"]) == 0
    directory = tmp_path / "saved_models" / "best_model"
    assert "saved_models/best_model" in capsys.readouterr().out
    loaded = tf.saved_model.load(str(directory))
    assert set(loaded.signatures) == {"serving_default", "separate", "config"}
    waveform = np.random.default_rng(2).uniform(-0.5, 0.5, 5000).astype("float32")
    vocals = loaded.signatures["serving_default"](waveform=tf.constant(waveform))["vocals"]
    expected, _ = separate_mono(model, tf.constant(waveform), RUN_CONFIG.stft)
    np.testing.assert_allclose(vocals.numpy(), expected.numpy(), atol=1e-4, rtol=0)


def _corrupt_checkpoints(model, folder):
    text = folder / "notes.keras"
    text.write_text("not a model\n")
    whole = folder / "whole.keras"
    save_keras(model, str(whole))
    truncated = folder / "truncated.keras"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert not zipfile.is_zipfile(truncated)
    hollow = folder / "hollow.keras"
    with zipfile.ZipFile(hollow, "w") as archive:
        archive.writestr("config.json", "{}")
    return {"text": text, "truncated": truncated, "hollow": hollow}


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "hollow"])
def test_cli_bad_checkpoint_gives_one_line_and_exit_2(model, tmp_path, capsys, case):
    checkpoints = _corrupt_checkpoints(model, tmp_path)
    checkpoint = checkpoints.get(case, tmp_path / "absent.keras")
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exit:
        export_cli.main([str(checkpoint), "-o", str(output)])
    assert exit.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(checkpoint) in lines[0], captured.err
    assert "Traceback" not in captured.err and not output.exists()


def test_cli_refuses_to_overwrite_its_input(model, tmp_path, capsys):
    export_saved_model(model, str(tmp_path / "exported"), kind="mask")
    with pytest.raises(SystemExit) as exit:
        export_cli.main([str(tmp_path / "exported"), "-o", str(tmp_path / "exported")])
    assert exit.value.code == 2
    assert "would overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "truncated"])
def test_cli_bad_checkpoint_answers_before_tensorflow_loads(model, tmp_path, case):
    checkpoint = _corrupt_checkpoints(model, tmp_path).get(case, tmp_path / "absent.keras")
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "export.py"), str(checkpoint)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    cause = {"missing": "no such checkpoint file or folder",
             "truncated": "not a .keras model (not a complete zip archive)"}[case]
    assert done.stderr.splitlines() == [f"error: {checkpoint}: {cause}"]
