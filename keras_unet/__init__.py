"""Singing-voice separation with a U-Net on magnitude spectrograms (Keras 3)."""

from keras_unet.config import DataConfig, ModelConfig, RunConfig, StftConfig, TrainConfig
from keras_unet.model import build_model, build_unet
from keras_unet.steps import MaskModel, masked_l1_loss

__all__ = ["DataConfig", "MaskModel", "ModelConfig", "RunConfig", "StftConfig",
           "TrainConfig", "build_model", "build_unet", "masked_l1_loss"]
