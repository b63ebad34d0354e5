"""Training augmentation: small pure functions of uniform draws in [0, 1).

Each function takes its randomness as an argument (a float32 scalar from
`tf.random.stateless_uniform`), so the dataset decides where the draws come
from and the same draws always give the same example. Switched one by one by
`DataConfig.augment_gain`, `augment_remix` and `augment_swap`.

- Gain: each source (vocals, accompaniment) is scaled by its own factor,
  uniform in [0.25, 1.25] (Open-Unmix's range), before they are summed into
  the mix: new loudness ratios between voice and band.
- Remix: the vocals of one track are mixed with the accompaniment of another
  track drawn independently, at an independent offset (with one track: the
  same track at another place), so every epoch sees new mixtures
  (Open-Unmix's random track mix). Without it the accompaniment comes from
  the same track and place as the vocals: the original mixture.
- Channel swap: each source's left and right channels are swapped with
  probability 1/2, independently, before a channel becomes an example. It
  changes the data only with `stereo_as_examples` (an example is then, say,
  left vocals over right accompaniment); a mono downmix is a channel mean,
  which a swap does not change, so the pipeline skips it there.
"""

import tensorflow as tf

GAIN_RANGE = (0.25, 1.25)


def gain(uniform):
    """A source gain in GAIN_RANGE from a uniform draw: float32 scalar."""
    low, high = GAIN_RANGE
    return low + (high - low) * tf.cast(uniform, tf.float32)


def pick_index(uniform, count):
    """An index uniform in [0, count) from a uniform draw: int64 scalar.

    Args:
        uniform: float32 scalar in [0, 1).
        count: int64 scalar or int, at least 1.
    """
    count = tf.cast(count, tf.int64)
    index = tf.cast(tf.cast(uniform, tf.float64) * tf.cast(count, tf.float64), tf.int64)
    return tf.minimum(index, count - 1)


def swap_channels(waveform, uniform):
    """Reverses the channel order with probability 1/2.

    Args:
        waveform: float32 (channels, samples).
        uniform: float32 scalar in [0, 1); the swap happens when it is >= 0.5.

    Returns:
        float32 (channels, samples).
    """
    return tf.where(uniform >= 0.5, tf.reverse(waveform, axis=[0]), waveform)

