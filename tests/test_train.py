"""train.py end to end on the bundled MUSDB clip, with small epochs."""

import dataclasses
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unet.cli import train
from keras_unet.training import run as training
from keras_unet.training.callbacks import CheckpointWriter, read_history
from keras_unet.training import run_folder
from keras_unet.training.run import (MIN_LEARNING_STEPS, best_constant_mask,
                                      initialise_mask_bias, learning_rate, short_run_warning)
from keras_unet.training.run_folder import BACKUP_METADATA
from keras_unet.core.config import DataConfig, ModelConfig, RunConfig, StftConfig, TrainConfig
from keras_unet.core.model import build_model
from keras_unet.core.saving import load_model
from keras_unet.core.steps import batch_weight, masked_l1_loss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--batch-size", "4", "--patches-per-epoch", "8", "--log-every-steps", "1"]


def _run(tmp_path, *flags, name="run"):
    save_dir, export_dir = tmp_path / name, tmp_path / f"{name}_export"
    argv = ["--save-dir", str(save_dir), "--export-dir", str(export_dir), *SMALL, *flags]
    assert train.main(argv) == 0
    return save_dir, export_dir


def _summary_tags(folder):
    tags = set()
    for path in glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("train"), "--epochs", "5")


def test_short_run_writes_every_output(short_run):
    save_dir, export_dir = short_run
    for name in ("best_model.keras", "final_model.keras", "checkpoint_epoch_5.keras",
                 "history.csv", "config.json"):
        assert (save_dir / name).is_file(), name
    assert not (save_dir / "backup").exists(), "the backup is removed when a run completes"
    assert (export_dir / "saved_model.pb").is_file()
    history = read_history(str(save_dir / "history.csv"))
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(row["val_loss"]) for row in history)
    assert [row["learning_rate"] for row in history] == pytest.approx([1e-3] * 5)
    assert json.loads((save_dir / "config.json").read_text())["train"]["epochs"] == 5


def test_training_starts_from_the_best_constant_mask(tmp_path):
    """On the bundled clip the voice is a tiny share of the mix: the best constant is ~0.

    From the usual 0.5 the first steps only pull the mask down; started at the
    best constant (clipped to 0.01), the first epoch is already there.
    """
    runs = {flag: read_history(str(_run(tmp_path, "--epochs", "1", flag, name=flag)[0]
                                   / "history.csv"))[0]
            for flag in ("--init-mask-bias", "--no-init-mask-bias")}
    started, plain = runs["--init-mask-bias"], runs["--no-init-mask-bias"]
    assert started["val_mask_median"] < 0.05 < 0.3 < plain["val_mask_median"]
    assert started["val_loss"] < 0.8 * plain["val_loss"]


def test_tensorboard_holds_losses_learning_rate_images_and_audio(short_run):
    logs = glob.glob(str(short_run[0] / "logs" / "*"))
    assert len(logs) == 1
    tags = _summary_tags(logs[0])
    assert {"epoch_loss", "batch_loss", "epoch_learning_rate"} <= tags
    assert {"separation", "estimated_vocals"} <= tags


def test_exported_saved_model_reproduces_the_best_keras_model(short_run):
    save_dir, export_dir = short_run
    best = load_model(str(save_dir / "best_model.keras"))
    batch = np.random.default_rng(0).random((2, 513, 128), np.float32)
    served = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    output = list(served(tf.constant(batch)).values())[0].numpy()
    np.testing.assert_allclose(output, best.predict(batch, verbose=0), atol=1e-5)


def test_same_seed_gives_the_same_first_epoch(tmp_path):
    first = _run(tmp_path, "--epochs", "1", "--seed", "7", name="a")[0]
    second = _run(tmp_path, "--epochs", "1", "--seed", "7", name="b")[0]
    losses = [read_history(str(folder / "history.csv"))[0] for folder in (first, second)]
    assert losses[0]["loss"] == pytest.approx(losses[1]["loss"], rel=1e-6)
    assert losses[0]["val_loss"] == pytest.approx(losses[1]["val_loss"], rel=1e-6)


def test_mirrored_strategy_on_two_logical_cpus_matches_a_single_device(tmp_path):
    """The same global batches give the same model: compare the validation loss.

    The one-patch validation set is padded to a batch per replica. The
    reported training loss is Keras' mean of the replicas' running means,
    which weights the two halves of a batch equally, so it is not compared.
    """
    single = _run(tmp_path, "--epochs", "1", "--seed", "5", name="single")[0]
    mirrored = _run(tmp_path, "--epochs", "1", "--seed", "5", "--strategy", "mirrored",
                    name="mirrored")[0]
    expected, actual = (read_history(str(folder / "history.csv"))[0]
                        for folder in (single, mirrored))
    assert np.isfinite(actual["loss"])
    assert actual["val_loss"] == pytest.approx(expected["val_loss"], rel=2e-3)


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "-1"], "`epochs` must be >= 1"),
    (["--batch-size", "0"], "`batch_size` must be >= 1"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--musdb-root", "/nonexistent/musdb"], "/nonexistent/musdb: no such directory"),
    (["--mir1k-root", "/nonexistent/mir1k"], "/nonexistent/mir1k: no such directory"),
    (["--n-songs", "some"], "expected a whole number or 'all', got 'some'"),
    (["--lr-schedule", "plateau", "--warmup-steps", "10"], "not plateau"),
    (["--patches-per-epoch", "3", "--batch-size", "4"], "an epoch needs one whole batch"),
    (["--save-dir", "/dev/null"], "/dev/null: exists and is not a folder"),
    (["--save-dir", "/dev/null/run"], "cannot be created (/dev/null is not a folder)"),
    (["--export-dir", "/dev/null/export"], "cannot be created (/dev/null is not a folder)"),
    (["--resume", "--overwrite"], "give one"),
])
def test_bad_flags_exit_2_with_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(flags)
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert message in error and len(error.splitlines()) == 1


def test_resume_without_a_started_run_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--save-dir", str(tmp_path / "none"), "--resume", *SMALL])
    assert exit_info.value.code == 2
    assert "nothing to resume" in capsys.readouterr().err


def _train_process(save_dir, export_dir, *flags, env=None):
    command = [sys.executable, os.path.join(REPO, "train.py"), "--save-dir", str(save_dir),
               "--export-dir", str(export_dir), *SMALL, *flags]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_run_killed_after_its_first_epoch_resumes_as_if_never_stopped(tmp_path):
    """Same epochs, same optimizer state, and the same patches: the losses of an unbroken run."""
    save_dir, export_dir = tmp_path / "run", tmp_path / "export"
    flags = ["--epochs", "3", "--patches-per-epoch", "24", "--seed", "3"]
    unbroken = _train_process(tmp_path / "unbroken", tmp_path / "unbroken_export", *flags)
    _, errors = unbroken.communicate(timeout=300)
    assert unbroken.returncode == 0, errors
    process = _train_process(save_dir, export_dir, *flags)
    history_path = str(save_dir / "history.csv")
    deadline = time.time() + 240
    while not (save_dir / "backup" / BACKUP_METADATA).is_file() and process.poll() is None:
        assert time.time() < deadline, "the first epoch did not finish in time"
        time.sleep(0.05)
    time.sleep(1.0)  # into the second epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 1 <= len(read_history(history_path)) < 3

    resumed = _train_process(save_dir, export_dir, *flags, "--resume")
    _, errors = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, errors
    assert [row["epoch"] for row in read_history(history_path)] == [1, 2, 3]
    assert (export_dir / "saved_model.pb").is_file()
    final = keras.models.load_model(str(save_dir / "final_model.keras"))
    assert int(final.optimizer.iterations.numpy()) == 3 * (24 // 4), "optimizer state restored"
    expected = read_history(str(tmp_path / "unbroken" / "history.csv"))
    for row, unbroken_row in zip(read_history(history_path), expected):
        assert row["loss"] == pytest.approx(unbroken_row["loss"], rel=1e-5), row["epoch"]
        assert row["val_loss"] == pytest.approx(unbroken_row["val_loss"], rel=1e-5), row["epoch"]


def test_resume_with_other_settings_is_refused_by_name(tmp_path, capsys):
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    started = train.config_from_args(train.build_parser().parse_args(
        ["--save-dir", str(save_dir), *SMALL]))
    (save_dir / "config.json").write_text(started.to_json())
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--save-dir", str(save_dir), "--resume", *SMALL, "--lr", "0.01",
                    "--preset", "paper"])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(error.splitlines()) == 1
    assert "other settings: model.base_channels, model.batch_norm" in error
    assert "train.learning_rate" in error
    # Where outputs go and how the run reports may change.
    resumed = train.config_from_args(train.build_parser().parse_args(
        ["--save-dir", str(save_dir), "--resume", *SMALL, "--keep-checkpoints", "all",
         "--log-every-steps", "5"]))
    assert resumed.differences(started) == ["train.keep_checkpoints", "train.log_every_steps"]
    # Hiding the GPUs may change the precision "auto" picks, and the optimizer's state.
    with pytest.raises(SystemExit):
        train.main(["--save-dir", str(save_dir), "--resume", *SMALL, "--cpu"])
    assert "other settings: train.cpu" in capsys.readouterr().err


def test_only_the_newest_numbered_checkpoints_are_kept(tmp_path):
    model = build_model(RunConfig(stft=StftConfig(patch_frames=16),
                                  model=ModelConfig(depth=2, base_channels=4)))
    model.compile(optimizer="adam")
    (tmp_path / "checkpoint_epoch_100.keras").write_bytes(b"an earlier, longer run's")
    writer = CheckpointWriter(str(tmp_path), every_epochs=5, keep=2)
    writer.set_model(model)
    for epoch in range(20):  # the best validation loss is epoch 3's
        writer.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 0.5 if epoch == 2 else 1.0})
    assert sorted(os.listdir(tmp_path)) == ["best_model.keras", "checkpoint_epoch_100.keras",
                                            "checkpoint_epoch_15.keras",
                                            "checkpoint_epoch_20.keras"]
    everything = tmp_path / "all"
    writer = CheckpointWriter(str(everything), every_epochs=5, keep=None)
    writer.set_model(model)
    for epoch in range(10):
        writer.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 1.0})
    assert len(list(everything.glob("checkpoint_epoch_*.keras"))) == 2


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_workers_on_localhost_train_one_epoch_with_chief_outputs_only(tmp_path):
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        processes.append(_train_process(tmp_path / f"run{index}", tmp_path / f"export{index}",
                                        "--epochs", "1", "--strategy", "multiworker",
                                        "--cpu", env=env))
    for process in processes:
        _, errors = process.communicate(timeout=400)
        assert process.returncode == 0, errors
    assert (tmp_path / "run0" / "best_model.keras").is_file()
    assert (tmp_path / "export0" / "saved_model.pb").is_file()
    assert not (tmp_path / "run1" / "best_model.keras").exists()
    assert not (tmp_path / "export1").exists()


def test_a_nan_loss_stops_training_with_a_message_and_keeps_the_good_checkpoint(
        tmp_path, monkeypatch, capsys):
    make_train_dataset = training.make_train_dataset

    def poisoned_after_first_epoch(tracks, config, batch_size, seed, **options):
        """The real stream, with NaN mixes from the second epoch's batches on."""
        dataset = make_train_dataset(tracks, config, batch_size, seed, **options)
        first_epoch = config.data.patches_per_epoch // batch_size

        def poison(index, batch):
            mix, vocals, weights = batch
            return mix * tf.where(index >= first_epoch, float("nan"), 1.0), vocals, weights

        return dataset.enumerate().map(poison)

    monkeypatch.setattr(training, "make_train_dataset", poisoned_after_first_epoch)
    save_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--save-dir", str(save_dir), "--export-dir", str(tmp_path / "export"),
                    "--epochs", "3", *SMALL])
    assert exit_info.value.code == 1
    assert "NaN or infinite" in capsys.readouterr().err
    history = read_history(str(save_dir / "history.csv"))
    assert np.isfinite(history[0]["loss"]) and not np.isfinite(history[-1]["loss"])
    best = load_model(str(save_dir / "best_model.keras"))
    assert np.isfinite(best.get_weights()[0]).all()
    assert not (save_dir / "final_model.keras").exists()


# === The recipe: the mask's starting point, the schedule, run lengths ===

def test_best_constant_mask_is_the_mix_weighted_median_of_the_vocals_share():
    """Half the bins are 90% voice with a loud mix, half 10% with a quiet one: 0.9 wins."""
    mix = np.ones((4, 8, 6), np.float32)
    mix[:, :4] = 4.0  # the loud half
    share = np.where(np.arange(8)[None, :, None] < 4, 0.9, 0.1).astype(np.float32)
    weights = np.ones((4, 1, 6), np.float32)
    weights[..., -1] = 0.0  # a padding frame, all voice, must not count
    share = np.broadcast_to(share, mix.shape).copy()
    share[..., -1] = 1.0
    dataset = tf.data.Dataset.from_tensors((mix, share * mix, weights))
    constant = best_constant_mask(dataset)
    assert constant == pytest.approx(0.9)

    def l1(c):
        counted = np.broadcast_to(weights > 0, mix.shape)
        return np.abs(c * mix - share * mix)[counted].mean()

    assert l1(constant) < min(l1(constant - 0.05), l1(constant + 0.05), l1(0.5))


def test_the_mask_starts_at_the_given_constant():
    model = build_model(RunConfig(stft=StftConfig(patch_frames=16),
                                  model=ModelConfig(depth=2, base_channels=4)))
    initialise_mask_bias(model, 0.07)
    silence = np.zeros((1, 513, 16), np.float32)  # every hidden activation is 0: the bias alone
    np.testing.assert_allclose(model.predict(silence, verbose=0), 0.07, rtol=1e-5)


def test_cosine_schedule_warms_up_then_decays_to_a_hundredth():
    config = RunConfig(data=DataConfig(patches_per_epoch=160),
                       train=TrainConfig(epochs=10, learning_rate=2e-3, lr_schedule="cosine",
                                         warmup_steps=20))  # 10 steps an epoch, 100 in all
    schedule = learning_rate(config)
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(20)) == pytest.approx(2e-3)
    assert float(schedule(60)) == pytest.approx(2e-3 * (0.01 + 0.99 * 0.5), rel=1e-4)
    assert float(schedule(100)) == pytest.approx(2e-5, rel=1e-4)
    constant = dataclasses.replace(config, train=dataclasses.replace(
        config.train, lr_schedule="constant", warmup_steps=0))
    assert learning_rate(constant) == 2e-3


def test_a_dataset_run_too_short_to_learn_is_warned_about():
    short = RunConfig(data=DataConfig(mir1k_root="/data/MIR-1K", patches_per_epoch=320),
                      train=TrainConfig(epochs=5))
    assert "makes only 100 training steps" in short_run_warning(short)
    enough = dataclasses.replace(short, train=TrainConfig(epochs=MIN_LEARNING_STEPS // 20))
    assert short_run_warning(enough) is None
    assert short_run_warning(RunConfig()) is None  # the bundled clip is a demonstration


def test_the_voices_preset_sets_its_recipe_and_given_flags_still_win():
    def config_of(*flags):
        return train.config_from_args(train.parse_args(train.build_parser(), list(flags)))

    seed, voices = config_of(), config_of("--preset", "voices")
    assert (seed.stft.hop_samples, seed.data.augment_pitch_semitones,
            seed.train.loss_sources) == (768, 0.0, "vocals")
    assert (voices.stft.hop_samples, voices.data.augment_pitch_semitones,
            voices.train.loss_sources) == (256, 3.0, "both")
    assert dataclasses.replace(voices.model, preset="seed") == seed.model
    given = config_of("--preset", "voices", "--hop-samples", "512", "--loss-sources", "vocals")
    assert (given.stft.hop_samples, given.train.loss_sources) == (512, "vocals")
    assert given.data.augment_pitch_semitones == 3.0


def test_dataset_runs_get_longer_defaults_and_a_cache(tmp_path):
    args = train.build_parser().parse_args(["--mir1k-root", str(tmp_path), "--n-songs", "all",
                                            "--save-dir", str(tmp_path / "run")])
    config = train.config_from_args(args)
    assert config.data.n_songs is None
    assert config.train.epochs == train.DATASET_DEFAULTS["epochs"]
    assert config.data.patches_per_epoch == train.DATASET_DEFAULTS["patches_per_epoch"]
    assert config.train.lr_schedule == "cosine"
    assert config.data.cache_dir == train.DEFAULT_CACHE_DIR
    bundled = train.config_from_args(train.build_parser().parse_args(["--epochs", "3"]))
    assert (bundled.train.epochs, bundled.data.patches_per_epoch) == (3, 64)
    assert bundled.train.lr_schedule == "constant"
    assert bundled.data.cache_dir is None
    no_cache = train.config_from_args(train.build_parser().parse_args(
        ["--mir1k-root", str(tmp_path), "--cache-dir", "", "--n-songs", "4"]))
    assert no_cache.data.cache_dir is None and no_cache.data.n_songs == 4


# === Scale: precision, one validation rule, data service ===

TINY_RUN = RunConfig(stft=StftConfig(patch_frames=16), model=ModelConfig(depth=2, base_channels=4))


def test_float16_training_scales_the_loss_and_stays_finite():
    config = dataclasses.replace(TINY_RUN, train=TrainConfig(precision="mixed_float16"))
    model = training.build_compiled_model(config, tf.distribute.get_strategy())
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("encoder_conv_0").compute_dtype == "float16"
    rng = np.random.default_rng(0)
    mix = rng.random((4, 513, 16), np.float32)
    history = model.fit(mix, 0.3 * mix, batch_size=2, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_the_multi_worker_validation_loss_is_fits():
    """Batches with more padding count less, in both: fit weights by frames, not examples."""
    model = training.build_compiled_model(TINY_RUN, tf.distribute.get_strategy())
    rng = np.random.default_rng(1)
    mix = rng.random((6, 513, 16), np.float32)
    weights = np.ones((6, 1, 16), np.float32)
    weights[4:, :, 4:] = 0.0  # the last batch is three-quarters padding,
    mix[4:] *= 3.0  # and louder: its loss differs from the first batch's
    dataset = tf.data.Dataset.from_tensor_slices((mix, 0.5 * mix, weights)).batch(4)
    expected = model.evaluate(dataset, verbose=0)
    assert training.validation_loss(model, dataset) == pytest.approx(expected, rel=1e-5)
    batches = [(float(masked_l1_loss(m, v, model(m, training=False), w)), len(m))
               for m, v, w in dataset]
    by_examples = sum(loss * n for loss, n in batches) / sum(n for _, n in batches)
    assert abs(by_examples - expected) > 0.01 * expected  # the rule makes a difference here


def test_the_multi_worker_loop_reports_each_epochs_own_mean_loss():
    """As `fit`: epoch 2's loss is the frame-weighted mean over epoch 2's batches alone."""
    from pipelines import datasets, sources

    config = dataclasses.replace(TINY_RUN, data=DataConfig(patches_per_epoch=16),
                                 train=TrainConfig(epochs=2, batch_size=4))
    strategy = tf.distribute.get_strategy()
    tracks, validation = sources.load_tracks(config)
    model = training.build_compiled_model(config, strategy)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))  # fixed weights
    logs = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, epoch_logs=None):
            logs.append(epoch_logs)

    training.fit_multiworker(model, strategy, config, tracks, validation, [Recorder()])
    batches = list(datasets.make_train_dataset(tracks, config, 4, seed=config.train.seed,
                                               epochs=2))
    per_epoch = [batches[:4], batches[4:]]
    for epoch_logs, epoch_batches in zip(logs, per_epoch):
        pairs = [(float(masked_l1_loss(m, v, model(m, training=False), w)),
                  float(batch_weight(m, w))) for m, v, w in epoch_batches]
        expected = sum(loss * weight for loss, weight in pairs) / sum(w for _, w in pairs)
        assert epoch_logs["loss"] == pytest.approx(expected, rel=1e-4)


def test_a_device_that_cannot_make_batches_leaves_the_stft_on_the_cpu(capsys):
    calls = []

    def make(device=None):
        calls.append(device)
        if device is not None:  # as a device without tf.data's kernels fails
            return tf.data.Dataset.range(3).map(lambda k: tf.strings.to_number("no kernel"))
        return tf.data.Dataset.range(3)

    assert list(training.checked_on_device(make, "/GPU:0").as_numpy_iterator()) == [0, 1, 2]
    assert calls == ["/GPU:0", None]
    assert capsys.readouterr().err.startswith(
        "warning: the STFT stage cannot run on /GPU:0 (")
    calls.clear()
    assert list(training.checked_on_device(make, None).as_numpy_iterator()) == [0, 1, 2]
    assert calls == [None]


def test_batches_from_a_data_service_on_localhost_are_the_local_ones(tmp_path):
    from pipelines import datasets, sources

    dispatcher = tf.data.experimental.service.DispatchServer()
    address = dispatcher.target.split("://")[1]
    worker = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(dispatcher_address=address))
    config = RunConfig(data=DataConfig(patches_per_epoch=32))
    tracks, _ = sources.load_tracks(config)
    local = list(datasets.make_train_dataset(tracks, config, 16, seed=5, epochs=2))
    served = list(datasets.make_train_dataset(tracks, config, 16, seed=5, epochs=2,
                                              data_service=dispatcher.target))
    assert len(served) == len(local) == 4
    # One worker makes the epochs in order; with several, each takes whole epochs.
    for batch, expected in zip(served, local):
        for value, expected_value in zip(batch, expected):
            np.testing.assert_allclose(value.numpy(), expected_value.numpy(), rtol=1e-6)
    del worker


# === Nothing lost: a run folder is a user's work (issue 22) ===

class _StopAtSecondEpoch(keras.callbacks.Callback):
    """Ctrl-C as the second epoch begins: the first epoch's backup is complete."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def _main_exit_code(argv) -> int:
    try:
        return train.main(argv)
    except SystemExit as exit_info:
        return exit_info.code


def test_an_interrupted_run_survives_a_refused_and_a_failed_command_then_resumes(
        tmp_path, monkeypatch, capsys):
    """Items 1 and 3: a new run without --resume is refused at once; with --overwrite and a
    wrong data folder it fails before touching the run; --resume (the folder spelled
    otherwise) then continues at epoch 2."""
    save_dir, export_dir = tmp_path / "run", tmp_path / "export"
    flags = ["--export-dir", str(export_dir), *SMALL, "--epochs", "3"]
    schedule = training._schedule_callbacks
    monkeypatch.setattr(training, "_schedule_callbacks",
                        lambda config: [*schedule(config), _StopAtSecondEpoch()])
    assert _main_exit_code(["--save-dir", str(save_dir), *flags]) == 130
    monkeypatch.setattr(training, "_schedule_callbacks", schedule)
    first_epoch = read_history(str(save_dir / "history.csv"))
    assert [row["epoch"] for row in first_epoch] == [1]
    kept = {path: path.read_bytes() for path in save_dir.rglob("*") if path.is_file()
            and "logs" not in path.parts}
    capsys.readouterr()

    assert _main_exit_code(["--save-dir", str(save_dir), *flags]) == 2
    refusal = capsys.readouterr().err.strip()
    assert len(refusal.splitlines()) == 1 and "--resume" in refusal and "--overwrite" in refusal
    empty = tmp_path / "not_mir1k"
    empty.mkdir()
    assert _main_exit_code(["--save-dir", str(save_dir), *flags, "--overwrite",
                            "--mir1k-root", str(empty)]) == 2
    assert "no MIR-1K clips" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in kept} == kept, "the run folder is unchanged"

    assert _main_exit_code(["--save-dir", f"{tmp_path}//./run/", *flags, "--resume"]) == 0
    history = read_history(str(save_dir / "history.csv"))
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[0]["loss"] == first_epoch[0]["loss"], "epoch 1 was not trained again"


def test_resume_on_a_finished_run_says_so_and_changes_nothing(short_run, capsys):
    """Item 4: it does not train the run again nor replace its final model or export."""
    save_dir, export_dir = short_run
    final = save_dir / "final_model.keras"
    stamps = (final.stat().st_mtime_ns, (export_dir / "saved_model.pb").stat().st_mtime_ns)
    capsys.readouterr()
    assert train.main(["--save-dir", str(save_dir), "--export-dir", str(export_dir), *SMALL,
                       "--epochs", "5", "--resume"]) == 0
    assert "this run is finished" in capsys.readouterr().out
    assert (final.stat().st_mtime_ns,
            (export_dir / "saved_model.pb").stat().st_mtime_ns) == stamps


def test_a_new_run_into_a_finished_runs_folder_is_refused(short_run, capsys):
    save_dir, export_dir = short_run
    assert _main_exit_code(["--save-dir", str(save_dir), "--export-dir",
                            str(export_dir), *SMALL, "--epochs", "5"]) == 2
    assert "holds a run; continue it with --resume" in capsys.readouterr().err


def test_resume_compares_folders_not_their_spelling(tmp_path, monkeypatch):
    """Item 3: MIR-1K's folder and its Wavfile/ are one; relative and absolute are one."""
    (tmp_path / "M" / "Wavfile").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    started = train.config_from_args(train.build_parser().parse_args(
        ["--save-dir", "run", "--mir1k-root", "M/", *SMALL]))
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "config.json").write_text(started.to_json())
    resumed = train.config_from_args(train.build_parser().parse_args(
        ["--save-dir", str(tmp_path / "moved"), "--resume", *SMALL,
         "--mir1k-root", str(tmp_path / "M" / "Wavfile")]))
    assert resumed.data.mir1k_root == str(tmp_path / "M" / "Wavfile")


def test_an_export_folder_holding_a_users_file_is_refused_before_training(tmp_path, capsys):
    """Item 2 / 5: checked before the data load, with the save folder left untouched."""
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / "notes.txt").write_text("mine")
    assert _main_exit_code(["--save-dir", str(tmp_path / "run"), "--export-dir",
                            str(export_dir), *SMALL]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "notes.txt" in error
    assert not (tmp_path / "run").exists()
    assert os.listdir(export_dir) == ["notes.txt"]


def _backup(folder, epochs_and_weights):
    """A BackupAndRestore folder: the latest state, then the previous one (.bkp)."""
    folder.mkdir()
    model = build_model(TINY_RUN)
    for suffix, epoch in epochs_and_weights:
        model.save_weights(str(folder / "saved.weights.h5"))
        os.replace(folder / "saved.weights.h5", folder / f"latest.weights.h5{suffix}")
        (folder / f"{BACKUP_METADATA}{suffix}").write_text(json.dumps({"epoch": epoch}))


def test_a_truncated_backup_falls_back_to_the_previous_state_with_its_own_epoch(tmp_path):
    """Item 8: Keras loads the .bkp weights; the data must restart at their epoch, not the
    newest metadata's; with no readable state left, one line says how to start over."""
    backup = tmp_path / "backup"
    _backup(backup, [("", 2), (".bkp", 1)])
    weights = backup / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    assert run_folder.backup_state(str(backup)) == "previous"
    run_folder.use_previous_backup(str(backup))
    assert run_folder.backup_epoch(str(backup)) == 1
    assert run_folder.backup_state(str(backup)) == "latest"

    weights.write_bytes(b"truncated")
    with pytest.raises(run_folder.BackupError, match="start the run over with --overwrite"):
        run_folder.backup_state(str(backup))


def test_a_truncated_backup_is_one_line_before_the_data_load(tmp_path, capsys):
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    (save_dir / "config.json").write_text(train.config_from_args(train.build_parser().parse_args(
        ["--save-dir", str(save_dir), *SMALL])).to_json())
    _backup(save_dir / "backup", [("", 1)])
    (save_dir / "backup" / "latest.weights.h5").write_bytes(b"\x89HDF\r\n")
    assert _main_exit_code(["--save-dir", str(save_dir), *SMALL, "--resume"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "backup is damaged" in error
