"""Saving and loading models with their configuration.

A `.keras` file carries its `RunConfig` inside the model's config. A
SavedModel folder (from `model.export`) holds, beside `saved_model.pb`,
`config.json` (the `RunConfig`) and `model.keras`, so both TensorFlow Serving
and this project's tools can use it alone.
"""

import os
import tempfile

import keras

from keras_unet.config import RunConfig
from keras_unet.steps import MaskModel

CONFIG_FILE = "config.json"
KERAS_FILE = "model.keras"


class ModelFileError(ValueError):
    """A model path is missing or does not hold a model of this project."""


def save_keras(model: MaskModel, path: str) -> None:
    """Saves a `.keras` file atomically (temporary file in the same folder, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(suffix=".part.keras", dir=folder)
    os.close(descriptor)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def run_config_of(model: MaskModel) -> RunConfig:
    """The `RunConfig` a model was built with (defaults when it carries none)."""
    return RunConfig.from_dict(model.run_config or {})


def load_model(path: str) -> MaskModel:
    """Loads a `.keras` file or a SavedModel folder written by `export_saved_model`.

    Raises:
        ModelFileError: missing path, or not a model of this project.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        keras_path = os.path.join(path, KERAS_FILE)
        if not os.path.isfile(keras_path):
            raise ModelFileError(f"{path}: not a model folder of this project (no {KERAS_FILE})")
        path = keras_path
    elif not os.path.exists(path):
        raise ModelFileError(f"{path}: no such model file or folder")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        raise ModelFileError(f"{path}: not a readable .keras model ({type(error).__name__})") from None
    if not isinstance(model, MaskModel):
        raise ModelFileError(f"{path}: not a keras_unet mask model")
    return model
