"""A training run: devices, strategy, data, model, callbacks, fit, outputs.

Outputs, under `config.train.save_dir`:
    config.json                  the run's RunConfig
    best_model.keras             highest validation vocals SI-SDR (`callbacks.CheckpointWriter`)
    final_model.keras            after the last epoch
    checkpoint_epoch_N.keras     every 5 epochs, the newest `keep_checkpoints`
    history.csv                  epoch, loss, val_loss, validation SDR and mask
                                 statistics (`callbacks.SeparationMetrics`), learning_rate
    logs/YYYYMMDD_HHMMSS/        TensorBoard (train/ and validation/)
    backup/                      BackupAndRestore state while a run is unfinished
and the best model exported as a SavedModel to the export folder.

Single machine (`auto`, `mirrored`) uses Keras `fit`. `multiworker` uses
`MultiWorkerMirroredStrategy` with a `tf.function` that calls
`strategy.run(model.train_step, ...)`, because Keras 3 `fit` fails under that
strategy (keras-team/keras#20585); the callbacks run on the chief only.
"""

import dataclasses
import functools
import json
import math
import os
import shutil
import sys
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_unet.training import callbacks as unet_callbacks
from keras_unet.training import run_folder
from keras_unet.export.saved_model import export_saved_model
from keras_unet.core.precision import resolve_precision
from keras_unet.core.config import (BEST_MODEL_FILE, HISTORY_FILE, MASK_LAYER, MODELS_DIR,
                                    RUN_CONFIG_FILE, RunConfig)
from keras_unet.core.files import atomic_path
from keras_unet.core.messages import error_line
from keras_unet.core.model import build_model
from keras_unet.core.saving import load_model, save_keras
from keras_unet.core.steps import batch_weight, masked_l1_loss
from pipelines.datasets import make_train_dataset, make_validation_dataset, validation_patch
from pipelines.sources import load_tracks

CHECKPOINT_EVERY_EPOCHS = 5
COSINE_FINAL_SHARE = 0.01  # the cosine schedule ends at 1% of the peak learning rate
MASK_INIT_BATCHES = 8
MASK_INIT_SEED_OFFSET = 7919
MASK_INIT_RANGE = (0.01, 0.99)
MIN_LEARNING_STEPS = 1000  # on MIR-1K, fewer steps leave the mask near a constant
MIRRORED_CPU_REPLICAS = 2


class TrainingError(RuntimeError):
    """Training stopped without a usable model (non-finite loss)."""


@dataclasses.dataclass(frozen=True)
class RunOutputs:
    """Where a finished run put its results."""

    save_dir: str
    log_dir: str
    export_dir: str
    history: list


def configure_devices(config: RunConfig) -> None:
    """Hides GPUs for `--cpu`, splits the CPU for a GPU-less `mirrored` run.

    Must run before TensorFlow initialises its devices.
    """
    if config.train.cpu:
        tf.config.set_visible_devices([], "GPU")
    gpus = tf.config.list_physical_devices("GPU") if not config.train.cpu else []
    cpu = tf.config.list_physical_devices("CPU")[0]
    if (config.train.strategy == "mirrored" and not gpus
            and tf.config.get_logical_device_configuration(cpu) is None):
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * MIRRORED_CPU_REPLICAS)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for `--strategy`."""
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise TrainingError("--strategy multiworker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([device.name for device in gpus])
        # Logical CPUs share memory: reduce on one device, without collective
        # ops (whose instance keys also clash between strategies in one process).
        return tf.distribute.MirroredStrategy(
            [device.name for device in tf.config.list_logical_devices("CPU")],
            cross_device_ops=tf.distribute.ReductionToOneDevice())
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True except on the non-chief workers of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def _run_name(config: RunConfig, stamp: str) -> str:
    return f"{config.model.preset}_{stamp}"


def _prepare_save_dir(config: RunConfig, resume: bool) -> str:
    """Makes the run folder ready to train in; returns its backup folder.

    Called once the data are loaded and the model built, so a run that fails
    or is stopped before it changes nothing in the folder. A new run clears
    an earlier one's files (the command line asked for `--overwrite`); a
    resumed one puts the backup state it will load in place.
    """
    save_dir = config.train.save_dir
    backup_dir = os.path.join(save_dir, run_folder.BACKUP_FOLDER)
    if not resume:
        run_folder.clear_run(save_dir)
    else:
        state = run_folder.backup_state(backup_dir)
        if state is None:  # the first backup never completed: resume from epoch 1
            shutil.rmtree(backup_dir, ignore_errors=True)
        elif state == "previous":
            run_folder.use_previous_backup(backup_dir)
    with atomic_path(os.path.join(save_dir, RUN_CONFIG_FILE)) as temporary, \
            open(temporary, "w") as file:
        file.write(config.to_json())
    return backup_dir


def _make_callbacks(config, backup_dir, log_dir, resume, example, validation_tracks):
    save_dir = config.train.save_dir
    history_path = os.path.join(save_dir, HISTORY_FILE)
    best = (unet_callbacks.best_score(unet_callbacks.read_history(history_path)) if resume
            else -math.inf)
    # Order matters: history and checkpoints are written before the backup, so
    # a run killed in between repeats that epoch instead of skipping it.
    backup = ([keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True)]
              if config.train.strategy != "multiworker" else [])
    songs = [(track.mix, track.vocals) for track in validation_tracks]
    return [
        keras.callbacks.TerminateOnNaN(),
        # First: it adds the separation scores to the logs the others read.
        unet_callbacks.SeparationMetrics(songs, config.stft, config.train.batch_size),
        unet_callbacks.HistoryWriter(history_path, resume=resume),
        unet_callbacks.CheckpointWriter(save_dir, CHECKPOINT_EVERY_EPOCHS, best_score=best,
                                        keep=config.train.keep_checkpoints),
        *backup,
        *_schedule_callbacks(config),
        keras.callbacks.TensorBoard(log_dir, update_freq=config.train.log_every_steps),
        unet_callbacks.SpectrogramSummaries(log_dir, example, config.stft),
    ]


def learning_rate(config: RunConfig):
    """Adam's learning rate: a float (constant, plateau) or a Keras schedule over the run's steps.

    Warm-up and cosine decay are Keras' `CosineDecay`: a constant rate after
    warm-up is its decay with alpha = 1 (it decays to 100% of the peak).
    """
    train = config.train
    if train.lr_schedule == "plateau" or (train.lr_schedule == "constant"
                                          and train.warmup_steps == 0):
        return train.learning_rate
    total_steps = train.epochs * _steps_per_epoch(config)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if train.warmup_steps else train.learning_rate,
        decay_steps=max(1, total_steps - train.warmup_steps),
        alpha=COSINE_FINAL_SHARE if train.lr_schedule == "cosine" else 1.0,
        warmup_target=train.learning_rate if train.warmup_steps else None,
        warmup_steps=train.warmup_steps)


def best_constant_mask(dataset, batches: int = MASK_INIT_BATCHES) -> float:
    """The constant mask c with the lowest L1 loss on the first batches of `dataset`.

    mean |c X - Y| is minimised by the weighted median of Y / X with weights
    X (its derivative in c is sum X sign(c X - Y)), over the frames that
    count. Ratios are clipped to [0, 1], the mask's range.

    Args:
        dataset: batches of (mix, vocals, frame_weights) as `pipelines.datasets` makes them.
        batches: how many batches to look at.
    """
    ratios, weights = [], []
    for mix, vocals, frame_weights in dataset.take(batches):
        mix, vocals = mix.numpy(), vocals.numpy()
        if vocals.ndim == 4:  # vocals and accompaniment stacked (loss_sources "both")
            vocals = vocals[..., 0]
        counted = np.broadcast_to(frame_weights.numpy() > 0, mix.shape) & (mix > 0)
        ratios.append(np.clip(vocals[counted] / mix[counted], 0.0, 1.0))
        weights.append(mix[counted])
    ratios, weights = np.concatenate(ratios), np.concatenate(weights)
    order = np.argsort(ratios)
    cumulative = np.cumsum(weights[order])
    return float(ratios[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def initialise_mask_bias(model: keras.Model, constant_mask: float) -> None:
    """Sets the output layer's bias so that the untrained mask sits near `constant_mask`.

    A new network's mask is about sigmoid(bias) everywhere, 0.5 for a zero
    bias, while the L1 loss is lowest for a constant mask near the share of
    the mix that is voice (about 0.1 on MIR-1K). Starting at 0.5, the first
    hundreds of steps move every weight to lower the mask as a whole, and
    Adam's momentum carries it far below that level: the mask collapses
    toward silence, where the sigmoid's gradient vanishes. Starting at the
    best constant, training spends its steps on what tells voice from band.
    """
    share = float(np.clip(constant_mask, MASK_INIT_RANGE[0], MASK_INIT_RANGE[1]))
    layer = model.get_layer(MASK_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.full_like(bias, np.log(share / (1.0 - share)))])


def _schedule_callbacks(config: RunConfig) -> list:
    """ReduceLROnPlateau and EarlyStopping on the validation vocals SI-SDR, as configured."""
    train = config.train
    monitor = {"monitor": unet_callbacks.BEST_MODEL_MONITOR, "mode": "max", "verbose": 1}
    found = []
    if train.lr_schedule == "plateau":
        found.append(keras.callbacks.ReduceLROnPlateau(
            factor=0.5, patience=train.plateau_epochs, min_delta=0.05, **monitor))
    if train.early_stopping_epochs is not None:
        found.append(keras.callbacks.EarlyStopping(
            patience=train.early_stopping_epochs, min_delta=0.05, **monitor))
    return found


def build_compiled_model(config: RunConfig, strategy) -> keras.Model:
    """The run's model under the strategy, at its precision, compiled with Adam.

    Under mixed_float16 the optimizer scales the loss (dynamically), so
    float16 gradients neither underflow nor overflow.
    """
    policy = resolve_precision(config.train.precision)
    with strategy.scope():
        model = build_model(config, dtype_policy=policy)
        optimizer = keras.optimizers.Adam(learning_rate(config))
        if policy == "mixed_float16":  # float16 gradients underflow without it
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer)
    return model


def even_batches(dataset: tf.data.Dataset, replicas: int) -> tf.data.Dataset:
    """Pads every batch to a multiple of `replicas` with weight-0 examples.

    Keras splits a batch across replicas and, under a strategy, reduces the
    first batch's per-replica parts to build the model, which fails when
    they differ in size (a validation set of one patch on two replicas).
    The padding examples are silent and have frame weight 0, so they change
    neither the loss nor its epoch mean (`MaskModel` weights by frames).

    Args:
        dataset: batches of (mix, vocals, frame_weights), shapes as in
            `pipelines.datasets`.
        replicas: the strategy's number of replicas.
    """
    def pad(mix, vocals, frame_weights):
        missing = -tf.shape(mix)[0] % replicas
        return tuple(tf.pad(part, [[0, missing], [0, 0], [0, 0]])
                     for part in (mix, vocals, frame_weights))

    return dataset.map(pad) if replicas > 1 else dataset


def stft_device(config: RunConfig, strategy: tf.distribute.Strategy) -> Optional[str]:
    """The accelerator the training pipeline's STFT stage runs on, or None for the CPU.

    The GPU of a run on one GPU, unless `stft_device` is "cpu" or a tf.data
    service makes the batches (its workers compute the spectra). With
    several replicas the strategy splits batches from the host itself.
    """
    if config.data.stft_device == "cpu" or config.data.data_service is not None:
        return None
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) == 1 and strategy.num_replicas_in_sync == 1:
        return gpus[0].name
    return None


def short_run_warning(config: RunConfig) -> Optional[str]:
    """A warning when a run on a dataset is too short to learn to separate, else None.

    The bundled clip is a demonstration and is never warned about.
    """
    data = config.data
    if data.musdb_root is None and data.mir1k_root is None:
        return None
    steps = config.train.epochs * _steps_per_epoch(config)
    if steps >= MIN_LEARNING_STEPS:
        return None
    return (f"this run makes only {steps} training steps ({config.train.epochs} epochs x "
            f"{_steps_per_epoch(config)} batches); a model needs about {MIN_LEARNING_STEPS} "
            "to start separating. Raise --epochs or --patches-per-epoch")


def _steps_per_epoch(config: RunConfig) -> int:
    return max(1, config.data.patches_per_epoch // config.train.batch_size)


def checked_on_device(make_dataset: Callable[..., tf.data.Dataset],
                      device: Optional[str]) -> tf.data.Dataset:
    """`make_dataset(device=device)`, or the CPU's where the device cannot make a batch.

    The STFT stage on an accelerator (`copy_to_device` before it) depends on
    TensorFlow's tf.data kernels for that device; one batch is drawn first
    (from an iterator of its own: the run's stream is unchanged), and if
    it fails the run goes on with the stage on the CPU, saying so.
    """
    dataset = make_dataset(device=device)
    if device is None:
        return dataset
    try:
        next(iter(dataset.take(1)))
    except (tf.errors.OpError, NotImplementedError, TypeError, ValueError) as error:
        print(f"warning: the STFT stage cannot run on {device} "
              f"({error_line(error, first=True)}); it runs on "
              "the CPU (--stft-device cpu says so at once)", file=sys.stderr)
        return make_dataset(device=None)
    return dataset


def validation_loss(model: keras.Model, dataset: tf.data.Dataset) -> float:
    """The epoch's validation loss by `fit`'s rule: batch losses weighted by `batch_weight`.

    Runs the model here, on this worker alone (no collective op), so every
    worker of a multi-worker run can compute it locally.

    Args:
        model: a `MaskModel`.
        dataset: batches of (mix, vocals, frame_weights), as `pipelines.datasets` makes them.
    """
    @tf.function
    def loss_and_weight(mix, vocals, frame_weights):
        loss = masked_l1_loss(mix, vocals, model(mix, training=False), frame_weights)
        return loss, batch_weight(mix, frame_weights)

    pairs = [[float(value) for value in loss_and_weight(*batch)] for batch in dataset]
    total_weight = sum(weight for _, weight in pairs)
    return sum(loss * weight for loss, weight in pairs) / max(total_weight, 1e-12)


def fit_multiworker(model, strategy, config: RunConfig, train_tracks, validation_tracks,
                    run_callbacks) -> None:
    """Trains under MultiWorkerMirroredStrategy without Keras `fit`.

    Each worker draws its own share of the epoch's patches (its own seed,
    `patches_per_epoch / workers` patches, per-replica batches) from one
    stream for the whole run; gradients are all-reduced by the strategy
    inside `model.train_step`. Every worker holds the same weights, so each
    computes the validation loss locally, without collectives, by the rule
    `fit` uses (`keras_unet.core.steps.batch_weight`). The epoch's training
    loss is `MaskModel`'s loss tracker after its last step, reset at each
    epoch's start, as in `fit`. `run_callbacks` is empty on the non-chief
    workers.
    """
    global_batch = config.train.batch_size

    def worker_dataset(context: tf.distribute.InputContext):
        share = dataclasses.replace(config.data, patches_per_epoch=max(
            1, config.data.patches_per_epoch // context.num_input_pipelines))
        return make_train_dataset(train_tracks, dataclasses.replace(config, data=share),
                                  context.get_per_replica_batch_size(global_batch),
                                  config.train.seed + context.input_pipeline_id,
                                  data_service=config.data.data_service)

    train_data = strategy.distribute_datasets_from_function(worker_dataset)
    validation_data = make_validation_dataset(validation_tracks, config, global_batch)

    @tf.function
    def train_step(iterator):
        results = strategy.run(model.train_step, args=(next(iterator),))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, results["loss"], axis=None)

    steps = _steps_per_epoch(config)
    callback_list = keras.callbacks.CallbackList(
        run_callbacks, model=model, add_history=False, add_progbar=bool(run_callbacks),
        verbose=1, epochs=config.train.epochs, steps=steps)
    callback_list.on_train_begin()
    iterator = iter(train_data)
    for epoch in range(config.train.epochs):
        model.reset_metrics()  # the loss tracker's mean covers this epoch's steps only
        callback_list.on_epoch_begin(epoch)
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            loss = float(train_step(iterator))  # the epoch's mean so far
            callback_list.on_train_batch_end(step, {"loss": loss})
        val_loss = validation_loss(model, validation_data)
        callback_list.on_epoch_end(epoch, {"loss": loss, "val_loss": val_loss})
        if model.stop_training:
            break
    callback_list.on_train_end()


def train(config: RunConfig, resume: bool = False) -> RunOutputs:
    """Trains the U-Net as configured and writes every output listed above.

    Args:
        config: the run's settings.
        resume: continue an interrupted run from its last completed epoch.

    Returns:
        Where the outputs went, and the history rows.

    Raises:
        pipelines.sources.DataError: the data cannot be loaded.
        TrainingError: the loss became non-finite.
        run_folder.BackupError: a resumed run's backup cannot be loaded.
        OSError: the run folder or the export folder cannot be written.
    """
    keras.utils.set_random_seed(config.train.seed)
    strategy = make_strategy(config.train.strategy)
    chief = is_chief(strategy)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    save_dir = config.train.save_dir
    log_dir = os.path.join(save_dir, "logs", stamp)
    export_dir = config.train.export_dir or os.path.join(MODELS_DIR, _run_name(config, stamp))
    if resume and chief:
        run_folder.backup_state(os.path.join(save_dir, run_folder.BACKUP_FOLDER))  # fails early

    train_tracks, validation_tracks = load_tracks(config)
    model = build_compiled_model(config, strategy)
    if config.train.init_mask_bias:
        # Its own draws (another seed), so the training stream stays as the seed makes it.
        sample = make_train_dataset(train_tracks, config, config.train.batch_size,
                                    config.train.seed + MASK_INIT_SEED_OFFSET, epochs=1)
        initialise_mask_bias(model, best_constant_mask(sample))
    # Only now, with the data and the model ready, does the run folder change.
    backup_dir = _prepare_save_dir(config, resume) if chief else None
    run_callbacks = (_make_callbacks(config, backup_dir, log_dir, resume,
                                     validation_patch(validation_tracks, config),
                                     validation_tracks)
                     if chief else [])
    if config.train.strategy == "multiworker":
        fit_multiworker(model, strategy, config, train_tracks, validation_tracks, run_callbacks)
    else:
        # One stream for the whole run, from the epoch a resumed run restarts at.
        train_data = checked_on_device(functools.partial(
            make_train_dataset, train_tracks, config, config.train.batch_size,
            config.train.seed, first_epoch=run_folder.backup_epoch(backup_dir) if resume else 0,
            data_service=config.data.data_service), stft_device(config, strategy))
        model.fit(train_data, steps_per_epoch=_steps_per_epoch(config),
                  validation_data=even_batches(
                      make_validation_dataset(validation_tracks, config, config.train.batch_size),
                      strategy.num_replicas_in_sync),
                  epochs=config.train.epochs, callbacks=run_callbacks, shuffle=False, verbose=1)
    if not chief:
        return RunOutputs(save_dir, log_dir, export_dir, [])

    history = unet_callbacks.read_history(os.path.join(save_dir, HISTORY_FILE))
    if not history or not math.isfinite(history[-1]["loss"]):
        best = os.path.join(save_dir, BEST_MODEL_FILE)
        raise TrainingError("the training loss became NaN or infinite; training stopped. "
                            f"The last good checkpoint is {best}")
    save_keras(model, os.path.join(save_dir, run_folder.FINAL_MODEL_FILE))
    best_model = load_model(os.path.join(save_dir, BEST_MODEL_FILE))
    export_saved_model(best_model, export_dir, kind="both")
    return RunOutputs(save_dir, log_dir, export_dir, history)
