"""`.keras` model files: saved atomically, loaded with their configuration checked.

A `.keras` file carries its `RunConfig` inside the model's config
(`MaskModel.run_config`), so a model file alone is enough to use it. An
export folder (`keras_unet.export.saved_model`) holds such a file as
`model.keras`, so `load_model` takes either. Loading needs only the core:
`MaskModel` is registered with Keras as "keras_unet>MaskModel", the name
every saved file refers to.
"""

import os

import keras

from keras_unet.core.config import KERAS_FILE, RunConfig
from keras_unet.core.files import atomic_path
from keras_unet.core.steps import MaskModel


class ModelFileError(ValueError):
    """A model path is missing or does not hold a model of this project."""


def save_keras(model: MaskModel, path: str) -> None:
    """Saves a `.keras` file atomically (temporary file in the same folder, then rename)."""
    with atomic_path(path, suffix=".keras") as temporary:
        model.save(temporary)


def run_config_of(model: MaskModel) -> RunConfig:
    """The `RunConfig` a model was built with (defaults when it carries none)."""
    return RunConfig.from_dict(model.run_config or {})


def model_file(path: str) -> str:
    """The `.keras` file a model path names: the path itself, or an export folder's `model.keras`.

    It opens nothing, so a caller can refuse a bad path at once, before a
    model loads (`load_model` runs it first).

    Raises:
        ModelFileError: missing path, or a folder without `model.keras`.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        keras_path = os.path.join(path, KERAS_FILE)
        if not os.path.isfile(keras_path):
            raise ModelFileError(f"{path}: not a model folder of this project (no {KERAS_FILE})")
        return keras_path
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such model file or folder")
    return path


def load_model(path: str) -> MaskModel:
    """Loads a `.keras` file, or the `model.keras` of an export folder.

    Raises:
        ModelFileError: missing path, or not a model of this project.
    """
    path = model_file(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        raise ModelFileError(
            f"{path}: not a readable .keras model ({type(error).__name__})") from None
    if not isinstance(model, MaskModel):
        raise ModelFileError(f"{path}: not a keras_unet mask model")
    try:
        run_config_of(model)
    except ValueError as error:
        raise ModelFileError(f"{path}: {error}") from None
    return model


def checked_run_config(model: MaskModel) -> RunConfig:
    """The model's `RunConfig`, after checking that it matches the model's input.

    Raises:
        ModelFileError: the input is not (batch, n_bins, patch_frames) of the config.
    """
    run_config = run_config_of(model)
    expected = (run_config.stft.n_bins, run_config.stft.patch_frames)
    actual = tuple(model.inputs[0].shape[1:])
    if actual != expected:
        raise ModelFileError(
            f"{model.name}: input (bins, frames) {actual} does not match its config's "
            f"(n_fft // 2 + 1, patch_frames) = {expected}")
    return run_config
