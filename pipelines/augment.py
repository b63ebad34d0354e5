"""Training augmentation: small pure functions of uniform draws in [0, 1).

Each function takes its randomness as an argument (a float32 scalar from
`tf.random.stateless_uniform`), so the dataset decides where the draws come
from and the same draws always give the same example. Switched one by one by
`DataConfig.augment_gain`, `augment_remix`, `augment_swap` and
`augment_pitch_semitones`.

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
- Pitch: the vocals are read at a rate ratio of 2**(s/12), s uniform in
  [-max, max] semitones, with linear interpolation: every frequency is
  multiplied by the ratio and the tempo with it (a resampling, as a tape
  played faster or slower). MIR-1K's two training singers, a man and a
  woman, span few of the voices users bring; shifted copies of them cover
  more. The accompaniment is left as it is, so voice and band no longer
  share a key, which the mask does not need.
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



def pitch_ratio(uniform, max_semitones: float):
    """The rate ratio 2**(s/12) of a pitch shift of s semitones, s uniform in [-max, max].

    Args:
        uniform: float32 scalar in [0, 1).
        max_semitones: the largest shift, up or down.

    Returns:
        float64 scalar, > 1 shifts up.
    """
    semitones = (2.0 * tf.cast(uniform, tf.float64) - 1.0) * max_semitones
    return tf.pow(tf.constant(2.0, tf.float64), semitones / 12.0)


def shifted_length(n_samples, ratio):
    """Samples of a track of `n_samples` read at `ratio`: int64 floor(n / ratio)."""
    return tf.cast(tf.math.floor(tf.cast(n_samples, tf.float64) / ratio), tf.int64)


def shifted_slice(waveform, begin, length: int, ratio, track_begin=0, n_samples=None):
    """Samples [begin, begin + length) of a track read at `ratio`, zeros outside it.

    Sample m of the shifted track is the track at position m * ratio,
    linearly interpolated between its two neighbours, each zero outside the
    track: frequencies are multiplied by `ratio`, durations divided by it.
    With ratio 1 it is `pipelines.patches.padded_slice`.

    Args:
        waveform: float32 (channels, samples), possibly many tracks back to back.
        begin: int64 scalar, first sample wanted, on the shifted track's time
            axis (may be negative or past its end).
        length: samples wanted.
        ratio: float64 scalar > 0, from `pitch_ratio`.
        track_begin: int64 scalar, where the track starts in `waveform`.
        n_samples: int64 scalar, the track's length (None: all of `waveform`).

    Returns:
        float32 (channels, length).
    """
    if n_samples is None:
        n_samples = tf.shape(waveform, out_type=tf.int64)[1]
    steps = tf.range(length, dtype=tf.int64) + tf.cast(begin, tf.int64)
    positions = tf.cast(steps, tf.float64) * ratio  # (length,), on the track's own axis
    below = tf.cast(tf.math.floor(positions), tf.int64)
    fraction = tf.cast(positions - tf.cast(below, tf.float64), tf.float32)

    def sample(index):  # (channels, length): waveform at `index`, zero outside the track
        inside = tf.cast((index >= 0) & (index < n_samples), tf.float32)
        values = tf.gather(waveform, track_begin + tf.clip_by_value(index, 0, n_samples - 1),
                           axis=1)
        return values * inside

    shifted = sample(below) * (1.0 - fraction) + sample(below + 1) * fraction
    return tf.ensure_shape(shifted, [waveform.shape[0], length])
