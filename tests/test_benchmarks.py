"""The benchmark's FLOP count against a count by hand of the default U-Net."""

from benchmarks.model import conv_flops, training_flops
from keras_unet import build_unet


def test_seed_preset_flops_match_the_layer_shapes_counted_by_hand():
    # Multiply-adds per patch, 5 x 5 kernels, bins padded 513 -> 528:
    # encoder convs at their output sizes, transposed convs at their input sizes.
    encoder = (264 * 64 * 1 * 32 + 132 * 32 * 32 * 64 + 66 * 16 * 64 * 128
               + 33 * 8 * 128 * 256)
    decoder = (33 * 8 * 256 * 128 + 66 * 16 * 256 * 64 + 132 * 32 * 128 * 32
               + 264 * 64 * 64 * 1)
    first_layer = 2 * 25 * 264 * 64 * 1 * 32
    forward = 2 * 25 * (encoder + decoder)
    model = build_unet()
    assert conv_flops(model) == (forward, first_layer)
    assert forward == 3_541_401_600
    assert training_flops(model) == 3 * forward - first_layer
