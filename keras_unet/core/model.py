"""The U-Net of Jansson et al. 2017, built from a `ModelConfig`.

Padding rule: strided convolutions halve the frequency and time axes `depth`
times, so both must be multiples of 2**depth inside the network. The model
zero-pads the input at the high-frequency end and at the late-time end up to
the next multiple (513 bins -> 528 for depth 4, 576 for depth 6; 128 frames
need none) and crops the mask back, so it accepts any (bins, frames) and
returns exactly that shape. No bin is dropped, and the padded cells carry no
signal, so they cannot bias the mask of the real ones.
"""

import keras

import dataclasses

from keras_unet.core.config import MASK_LAYER, ModelConfig, RunConfig
from keras_unet.core.steps import MaskModel


def _padding(size: int, multiple: int) -> int:
    return -size % multiple


def _decoder_activation(config: ModelConfig, name: str, dtype):
    if config.decoder_activation == "relu":
        return keras.layers.ReLU(name=name, dtype=dtype)
    return keras.layers.LeakyReLU(negative_slope=config.leaky_slope, name=name, dtype=dtype)


def build_model(run_config: RunConfig, dtype_policy=None) -> MaskModel:
    """The U-Net for a run: its architecture and patch shape, config attached.

    Args:
        run_config: the run's settings; `model.run_config` holds them as a dict.
        dtype_policy: as in `build_unet`.
    """
    model = build_unet(run_config.model, n_bins=run_config.stft.n_bins,
                       n_frames=run_config.stft.patch_frames, dtype_policy=dtype_policy)
    model.run_config = dataclasses.asdict(run_config)
    return model


def build_unet(config: ModelConfig = ModelConfig(), n_bins: int = 513,
               n_frames: int = 128, dtype_policy=None) -> MaskModel:
    """Builds the U-Net mask model.

    Encoder: `depth` x [Conv2D(stride 2) -> (BatchNorm) -> LeakyReLU].
    Decoder: `depth - 1` x [Conv2DTranspose(stride 2) -> (BatchNorm) -> activation
    -> (Dropout) -> Concatenate with the encoder output of the same
    resolution], then Conv2DTranspose(stride 2) to 1 channel with a sigmoid.
    Batch norm is synchronized: under a `tf.distribute` strategy every
    replica normalises with the statistics of the global batch, so training
    on many devices matches one device.

    Args:
        config: architecture; `ModelConfig.from_preset("paper")` for the paper's.
        n_bins: frequency bins F of the input.
        n_frames: frames T of the input.
        dtype_policy: Keras dtype policy of the hidden layers (for example
            "mixed_bfloat16"); the mask is always float32.

    Returns:
        A `MaskModel` mapping float32 (batch, F, T) magnitudes to a float32
        (batch, F, T) mask in [0, 1].
    """
    kernel = config.kernel_size
    multiple = config.size_multiple
    pad_bins, pad_frames = _padding(n_bins, multiple), _padding(n_frames, multiple)

    # === Input: (batch, F, T) -> (batch, F + pad, T + pad, 1) ===
    magnitudes = keras.Input(shape=(n_bins, n_frames), name="mix_magnitude")
    x = keras.layers.Reshape((n_bins, n_frames, 1), name="add_channel", dtype=dtype_policy)(
        magnitudes)
    x = keras.layers.ZeroPadding2D(((0, pad_bins), (0, pad_frames)), name="pad_to_multiple",
                                   dtype=dtype_policy)(x)

    # === Encoder ===
    skips = []
    for i, channels in enumerate(config.channels):
        x = keras.layers.Conv2D(channels, kernel, strides=2, padding="same",
                                name=f"encoder_conv_{i}", dtype=dtype_policy)(x)
        if config.batch_norm:
            x = keras.layers.BatchNormalization(synchronized=True, name=f"encoder_bn_{i}",
                                                dtype=dtype_policy)(x)
        x = keras.layers.LeakyReLU(negative_slope=config.leaky_slope,
                                   name=f"encoder_act_{i}", dtype=dtype_policy)(x)
        skips.append(x)

    # === Decoder: deepest first; the deepest encoder output is not a skip ===
    skips.pop()
    for i, channels in enumerate(reversed(config.channels[:-1])):
        x = keras.layers.Conv2DTranspose(channels, kernel, strides=2, padding="same",
                                         name=f"decoder_deconv_{i}", dtype=dtype_policy)(x)
        if config.batch_norm:
            x = keras.layers.BatchNormalization(synchronized=True, name=f"decoder_bn_{i}",
                                                dtype=dtype_policy)(x)
        x = _decoder_activation(config, f"decoder_act_{i}", dtype_policy)(x)
        if i < config.decoder_dropout_layers:
            x = keras.layers.Dropout(config.dropout_rate, name=f"decoder_dropout_{i}",
                                     dtype=dtype_policy)(x)
        x = keras.layers.Concatenate(name=f"skip_concat_{i}", dtype=dtype_policy)(
            [x, skips.pop()])

    # === Output: 1-channel sigmoid mask, cropped back to (batch, F, T) ===
    x = keras.layers.Conv2DTranspose(1, kernel, strides=2, padding="same",
                                     name=MASK_LAYER, dtype=dtype_policy)(x)
    x = keras.layers.Activation("sigmoid", name="mask_sigmoid", dtype="float32")(x)
    x = keras.layers.Cropping2D(((0, pad_bins), (0, pad_frames)), name="crop_to_input",
                                dtype="float32")(x)
    mask = keras.layers.Reshape((n_bins, n_frames), name="mask")(x)
    return MaskModel(inputs=magnitudes, outputs=mask, name=f"unet_{config.preset}")
