"""Singing-voice separation with a U-Net on magnitude spectrograms (Keras 3).

Layers, each importing only from those below it (checked by the
import-linter contract in setup.cfg):

    train.py, separate.py, evaluate.py, export.py   a few lines each over keras_unet/cli/
    keras_unet/cli/, keras_unet/__main__.py, keras_unet/app.py (the web page),
    benchmarks/                                      command lines
    keras_unet/training/, evaluation/, web/          capabilities on those below
    keras_unet/separation/, export/                  capabilities on the core
    pipelines/            input: sources, patches, augmentation, tf.data; evaluation's tracks
    keras_unet/core/      config, files, audio I/O, STFT, the model, its loss,
                          patches and masks, precision: what a trained model needs

This package exports the configuration classes, which import without
TensorFlow, and the model API (`build_unet`, `build_model`, `MaskModel`,
`masked_l1_loss`), which loads it on first use, so command-line tools answer
`--help` and bad input quickly.
"""

import importlib

from keras_unet.core.config import DataConfig, ModelConfig, RunConfig, StftConfig, TrainConfig

_LAZY = {"build_unet": "keras_unet.core.model", "build_model": "keras_unet.core.model",
         "MaskModel": "keras_unet.core.steps", "masked_l1_loss": "keras_unet.core.steps"}

__all__ = ["DataConfig", "MaskModel", "ModelConfig", "RunConfig", "StftConfig",
           "TrainConfig", "build_model", "build_unet", "masked_l1_loss"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_unet' has no attribute {name!r}")
