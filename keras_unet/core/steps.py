"""The masked L1 loss and the Keras model class that trains on it.

The network predicts a mask M in [0, 1]; the estimated vocals are M * X, and
the loss is the mean of |M * X - Y| (X the mix magnitude, Y the vocals
magnitude), as in Jansson et al. 2017. With the accompaniment's magnitude A
as a second target (`TrainConfig.loss_sources` "both") the rest of the mix,
(1 - M) * X, is held to it too, as Park et al. 2018 train both outputs.
"""

import keras
import tensorflow as tf


def masked_l1_loss(mix, targets, mask, frame_weights=None):
    """Mean absolute error between mask * mix and the vocals (and the rest and the accompaniment).

    Args:
        mix: float32 (batch, bins, frames), mix magnitude X.
        targets: float32 (batch, bins, frames), the vocals magnitude V: the
            loss is mean |M X - V|; or (batch, bins, frames, 2), V and the
            accompaniment magnitude A stacked: mean |M X - V| + mean
            |(1 - M) X - A|.
        mask: (batch, bins, frames) in [0, 1], the model's output.
        frame_weights: optional float32 (batch, 1, frames) or any shape that
            broadcasts to the others; 0 marks padding frames that must not
            count. The mean is then taken over the weighted elements only.

    Returns:
        float32 scalar.
    """
    mask = tf.cast(mask, tf.float32)
    if len(targets.shape) == 4:
        vocals, accompaniment = tf.unstack(targets, axis=-1)
        return (masked_l1_loss(mix, vocals, mask, frame_weights)
                + masked_l1_loss(mix, accompaniment, 1.0 - mask, frame_weights))
    error = tf.abs(mask * mix - targets)
    if frame_weights is None:
        return tf.reduce_mean(error)
    weights = tf.broadcast_to(tf.cast(frame_weights, tf.float32), tf.shape(error))
    return tf.reduce_sum(weights * error) / tf.maximum(tf.reduce_sum(weights), 1.0)


@keras.saving.register_keras_serializable(package="keras_unet")
class MaskModel(keras.Model):
    """A functional Keras model (mix magnitude -> mask) trained on the masked L1.

    `fit` and `evaluate` take batches of `(mix, targets)` or
    `(mix, targets, frame_weights)`, shapes as in `masked_l1_loss`; `predict`
    returns the mask. Compile it with an optimizer only (no `loss`).

    Under a `tf.distribute` strategy each replica's loss is divided by the
    number of replicas, so the summed gradients are those of the global-batch
    mean.

    Args:
        run_config: optional dict of the `RunConfig` the model was built for;
            it is part of `get_config`, so it travels inside `.keras` files.
    """

    def __init__(self, *args, run_config=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_config = run_config
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def get_config(self):
        return {**super().get_config(), "run_config": self.run_config}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        run_config = config.pop("run_config", None)
        model = super().from_config(config, custom_objects=custom_objects)
        model.run_config = run_config
        return model

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        mix, vocals, frame_weights = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            mask = self(mix, training=True)
            loss = masked_l1_loss(mix, vocals, mask, frame_weights)
            replicas = tf.distribute.get_replica_context().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._track(loss, mix, frame_weights)

    def test_step(self, data):
        mix, vocals, frame_weights = keras.utils.unpack_x_y_sample_weight(data)
        mask = self(mix, training=False)
        return self._track(masked_l1_loss(mix, vocals, mask, frame_weights), mix, frame_weights)

    def _track(self, loss, mix, frame_weights):
        """Adds the batch to the epoch's mean loss, weighted by `batch_weight`."""
        self.loss_tracker.update_state(loss, sample_weight=batch_weight(mix, frame_weights))
        return {"loss": self.loss_tracker.result()}


def batch_weight(mix, frame_weights=None):
    """A batch's weight in an epoch's mean loss, like the loss's own weighting.

    Its number of weighted frames (of examples when unweighted), so batches
    of padding alone count for nothing. The one rule for `fit` (through
    `MaskModel`) and the multi-worker loop.

    Args:
        mix: (batch, bins, frames).
        frame_weights: None, or weights as in `masked_l1_loss`.

    Returns:
        float32 scalar.
    """
    if frame_weights is None:
        return tf.cast(tf.shape(mix)[0], tf.float32)
    return tf.reduce_sum(tf.cast(frame_weights, tf.float32))
