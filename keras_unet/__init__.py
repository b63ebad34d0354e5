"""Singing-voice separation with a U-Net on magnitude spectrograms (Keras 3).

The configuration classes import without TensorFlow; the model API
(`build_unet`, `build_model`, `MaskModel`, `masked_l1_loss`) loads it on
first use, so command-line tools answer `--help` and bad input quickly.
"""

import importlib

from keras_unet.config import DataConfig, ModelConfig, RunConfig, StftConfig, TrainConfig

_LAZY = {"build_unet": "keras_unet.model", "build_model": "keras_unet.model",
         "MaskModel": "keras_unet.steps", "masked_l1_loss": "keras_unet.steps"}

__all__ = ["DataConfig", "MaskModel", "ModelConfig", "RunConfig", "StftConfig",
           "TrainConfig", "build_model", "build_unet", "masked_l1_loss"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_unet' has no attribute {name!r}")
