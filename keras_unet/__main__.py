"""`python -m keras_unet`: print a preset's summary and self-check the network.

Checks, on a random batch of the configured input shape: the mask has the
input's shape, lies in [0, 1] and is finite, and each of the `depth - 1`
skip connections joins a decoder tensor with an encoder tensor of the same
resolution. Exits 0 when all hold, 1 otherwise.
"""

import argparse
import os
import sys

from keras_unet.core.config import PRESETS, ModelConfig, StftConfig


def skip_connections(model):
    """(decoder layer name, encoder layer name, resolution) for each Concatenate."""
    import keras

    joins = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Concatenate):
            decoder, encoder = layer.input
            joins.append((decoder._keras_history.operation.name,
                          encoder._keras_history.operation.name,
                          tuple(decoder.shape[1:3]), tuple(encoder.shape[1:3])))
    return joins


def self_check(model, config: ModelConfig, n_bins: int, n_frames: int) -> list:
    """Returns the failed checks as messages; empty when the model is sound."""
    import numpy as np

    failures = []
    batch = np.random.default_rng(0).random((2, n_bins, n_frames), np.float32)
    mask = np.asarray(model.predict(batch, verbose=0))
    if mask.shape != batch.shape:
        failures.append(f"output shape {mask.shape} != input shape {batch.shape}")
    if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        failures.append(f"mask outside [0, 1]: [{mask.min()}, {mask.max()}]")
    joins = skip_connections(model)
    if len(joins) != config.depth - 1:
        failures.append(f"{len(joins)} skip connections, expected {config.depth - 1}")
    for decoder, encoder, decoder_size, encoder_size in joins:
        if not encoder.startswith("encoder_") or decoder_size != encoder_size:
            failures.append(f"skip {decoder} + {encoder}: {decoder_size} vs {encoder_size}")
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keras_unet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="seed",
                        help="architecture preset (default: seed)")
    parser.add_argument("--frames", type=int, default=StftConfig().patch_frames,
                        help="patch frames T (default: 128)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from keras_unet.core.model import build_unet

    config = ModelConfig.from_preset(args.preset)
    n_bins = StftConfig().n_bins
    model = build_unet(config, n_bins=n_bins, n_frames=args.frames)
    model.summary()
    failures = self_check(model, config, n_bins, args.frames)
    for decoder, encoder, size, _ in skip_connections(model):
        print(f"skip: {encoder} -> {decoder} at {size[0]}x{size[1]}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print("self-check: " + ("FAILED" if failures else "all checks passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
