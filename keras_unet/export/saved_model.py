"""Exporting a model as a SavedModel folder that TensorFlow alone can serve.

`export_saved_model` writes a SavedModel folder that TensorFlow alone (no
Keras, no import of this project) can load and serve; `.keras` files
themselves are saved and loaded by `keras_unet.core.saving`:

    DIR/saved_model.pb, DIR/variables/   the graph and weights
    DIR/config.json                      the `RunConfig` JSON
    DIR/model.keras                      the Keras model, for `saving.load_model(DIR)`
    DIR/model.tflite                     optional: the mask signature in TFLite

Signatures (the serving contract; `serving_default` is the first listed for
the kind):

    kind "mask":      mask, config
    kind "separator": separate, config
    kind "both":      mask, separate, config (one copy of the weights)

    mask:     mix_magnitude float32 (batch, bins, patch_frames), each patch
              divided by its own maximum as in training
              (`keras_unet.core.masking.normalise_patches`) -> mask float32
              (batch, bins, patch_frames) in [0, 1]; the model as trained
    separate: waveform float32 (samples,), mono at the model's rate, any
              length -> vocals, accompaniment float32 (samples,); their sum
              is the input
    config:   no input -> config_json string scalar, the `RunConfig` JSON
              (STFT and patch settings included); also `loaded.config()`

Kind "both" is one SavedModel with two signatures rather than two folders:
the weights are stored once, and TensorFlow Serving picks the signature by
name. To serve DIR, place it as a numbered version: MODEL_BASE/1/ = DIR.

Writes are atomic: the folder is built under a temporary sibling name and
renamed into place, so DIR is either the previous export or the new one,
never a half-written folder. An existing DIR is replaced only when it is
empty or holds nothing but a previous export of this project, checked file
by file (`keras_unet.export.folder`); anything else is left alone.
"""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_unet.core.precision import model_for_precision
from keras_unet.core.config import (EXPORT_KINDS, INFERENCE_BATCH_SIZE, KERAS_FILE,
                                    RunConfig)
from keras_unet.core.masking import separate_mono
from keras_unet.core.saving import checked_run_config
from keras_unet.core.steps import MaskModel
from keras_unet.export.folder import CONFIG_FILE, TFLITE_FILE, replace_problem

MASK_SIGNATURE = "mask"
SEPARATE_SIGNATURE = "separate"
CONFIG_SIGNATURE = "config"
MAGNITUDE_INPUT = "mix_magnitude"
MASK_OUTPUT = "mask"
WAVEFORM_INPUT = "waveform"
VOCALS_OUTPUT = "vocals"
ACCOMPANIMENT_OUTPUT = "accompaniment"
CONFIG_OUTPUT = "config_json"


def signature_names(kind: str) -> tuple:
    """Signatures an export of `kind` holds besides `serving_default`, primary first."""
    _check_kind(kind)
    return {"mask": (MASK_SIGNATURE, CONFIG_SIGNATURE),
            "separator": (SEPARATE_SIGNATURE, CONFIG_SIGNATURE),
            "both": (MASK_SIGNATURE, SEPARATE_SIGNATURE, CONFIG_SIGNATURE)}[kind]


def export_saved_model(model: MaskModel, directory: str, kind: str = "mask",
                       batch_size: int = INFERENCE_BATCH_SIZE, tflite: bool = False) -> str:
    """Exports a model as a self-contained SavedModel folder (see the module docstring).

    The export computes in float32 whatever the model's precision: a
    mixed-precision model is exported as its float32 twin (same weights,
    `keras_unet.core.precision.model_for_precision`), since TFLite and many CPUs
    have no bfloat16 kernels. `model.keras` in the folder is that twin too.

    Args:
        model: a `MaskModel` whose `run_config` matches its input shape.
        directory: the SavedModel folder to write (`directory/saved_model.pb`).
        kind: "mask", "separator" or "both".
        batch_size: patches per model call inside the `separate` signature.
        tflite: also write `model.tflite`, the mask signature converted by
            `tf.lite.TFLiteConverter` (kinds "mask" and "both" only).

    Returns:
        The folder written, `directory`.

    Raises:
        ValueError: unknown `kind`, `batch_size` < 1, or `tflite` with kind
            "separator".
        keras_unet.core.saving.ModelFileError: the model's input shape does not
            match its config.
        FileExistsError: `directory` exists and holds anything but an earlier
            export of this project (`keras_unet.export.folder`).
        OSError: the folder cannot be written (a full disk among others).
    """
    _check_kind(kind)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: {batch_size}")
    if tflite and kind == "separator":
        raise ValueError("`tflite` needs the mask signature: use kind 'mask' or 'both'. "
                         "Received: kind='separator'")
    run_config = checked_run_config(model)
    model = model_for_precision(model, "float32")
    directory = os.path.abspath(os.fspath(directory))
    _check_replaceable(directory)
    parent, name = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=parent)
    try:
        staged = os.path.join(temporary, name)
        archive = _archive(model, run_config, kind, batch_size)
        archive.write_out(staged, verbose=False)
        with open(os.path.join(staged, CONFIG_FILE), "w", encoding="utf-8") as file:
            file.write(run_config.to_json())
        model.save(os.path.join(staged, KERAS_FILE))
        if tflite:
            with open(os.path.join(staged, TFLITE_FILE), "wb") as file:
                file.write(convert_to_tflite(staged))
        _install(staged, directory)
    except tf.errors.OpError as error:  # TensorFlow's writer on a full or failing disk
        cause = (error.message or type(error).__name__).strip().splitlines()[0]
        raise OSError(f"{directory}: cannot write the export ({cause})") from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return directory


def convert_to_tflite(saved_model_dir: str) -> bytes:
    """The mask signature of an exported SavedModel as a TFLite flatbuffer.

    The TFLite model keeps the signature's names: run it with
    `interpreter.get_signature_runner("mask")(mix_magnitude=...)["mask"]`.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[MASK_SIGNATURE])
    return converter.convert()


def _check_kind(kind: str) -> None:
    if kind not in EXPORT_KINDS:
        raise ValueError(f"`kind` must be one of {EXPORT_KINDS}. Received: {kind!r}")


def _archive(model: MaskModel, run_config: RunConfig, kind: str, batch_size: int):
    """An `ExportArchive` holding the signatures of `kind`, primary first.

    The weights are not `track`ed: the archive saves the tf.Variables the
    signatures use, and `track` would save each weight a second time through
    its Keras wrapper (a SavedModel twice the size). `loaded.variables` lists
    those same tf.Variables.
    """
    archive = keras.export.ExportArchive()
    stft_config = run_config.stft
    config_json = run_config.to_json()
    for name in signature_names(kind):
        if name == MASK_SIGNATURE:
            archive.add_endpoint(name, _mask_function(model, stft_config))
        elif name == SEPARATE_SIGNATURE:
            archive.add_endpoint(name, _separate_function(model, stft_config, batch_size))
        else:
            archive.add_endpoint(name, _config_function(config_json))
    archive.add_variable_collection("variables", [weight.value for weight in model.weights])
    return archive


def _mask_function(model, stft_config):
    spec = tf.TensorSpec([None, stft_config.n_bins, stft_config.patch_frames], tf.float32,
                         name=MAGNITUDE_INPUT)

    @tf.function(input_signature=[spec])
    def mask(mix_magnitude):
        return {MASK_OUTPUT: tf.cast(model(mix_magnitude, training=False), tf.float32)}

    mask.get_concrete_function()
    return mask


def _separate_function(model, stft_config, batch_size):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name=WAVEFORM_INPUT)])
    def separate(waveform):
        vocals, accompaniment = separate_mono(model, waveform, stft_config,
                                              batch_size=batch_size)
        return {VOCALS_OUTPUT: vocals, ACCOMPANIMENT_OUTPUT: accompaniment}

    separate.get_concrete_function()
    return separate


def _config_function(config_json: str):
    @tf.function(input_signature=[])
    def config():
        return {CONFIG_OUTPUT: tf.constant(config_json)}

    config.get_concrete_function()
    return config


def _check_replaceable(directory: str) -> None:
    problem = replace_problem(directory)
    if problem:
        raise FileExistsError(f"{directory}: {problem}")


def _install(staged: str, directory: str) -> None:
    """Renames the finished folder `staged` to `directory`, retiring a previous one."""
    if not os.path.lexists(directory):
        os.rename(staged, directory)
        return
    _check_replaceable(directory)
    retired = os.path.join(os.path.dirname(staged), "retired")
    os.rename(directory, retired)
    try:
        os.rename(staged, directory)
    except OSError:
        os.rename(retired, directory)
        raise
