"""Training callbacks the Keras library does not provide as needed.

Keras' own callbacks are used where they fit (BackupAndRestore, TensorBoard,
TerminateOnNaN). These cover the rest:
- `CheckpointWriter`: best / periodic checkpoints written atomically (Keras'
  `ModelCheckpoint` writes in place, so a kill during a save truncates the
  file), with the best validation loss carried over a resume.
- `HistoryWriter`: history.csv with each epoch exactly once, even when a run
  killed after logging an epoch but before its backup is resumed (Keras'
  `CSVLogger` in append mode would repeat that epoch).
- `SpectrogramSummaries`: TensorBoard images and audio of a fixed validation
  patch.
"""

import csv
import math
import os

import keras
import numpy as np
import tensorflow as tf

from keras_unet import transforms
from keras_unet.config import StftConfig
from keras_unet.export import save_keras
from keras_unet.files import atomic_path

HISTORY_FIELDS = ("epoch", "loss", "val_loss", "learning_rate")


def read_history(path: str) -> list:
    """Rows of a history.csv as dicts of floats (epoch as int); [] when absent."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as file:
        return [{key: int(value) if key == "epoch" else float(value)
                 for key, value in row.items()} for row in csv.DictReader(file)]


def _write_history(path: str, rows: list) -> None:
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _learning_rate(model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class HistoryWriter(keras.callbacks.Callback):
    """Writes epoch, loss, val_loss, learning_rate to a CSV after every epoch.

    Epochs are numbered from 1. A row for an epoch that is already in the
    file replaces it, so a resumed run never lists an epoch twice. The file
    is rewritten atomically.

    Args:
        path: the CSV file.
        resume: keep the rows of an earlier run; otherwise start a new file.
    """

    def __init__(self, path: str, resume: bool):
        super().__init__()
        self.path = path
        self.resume = resume

    def on_train_begin(self, logs=None):
        if not self.resume and os.path.exists(self.path):
            os.unlink(self.path)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, "loss": logs.get("loss", math.nan),
               "val_loss": logs.get("val_loss", math.nan),
               "learning_rate": _learning_rate(self.model)}
        rows = [old for old in read_history(self.path) if old["epoch"] < row["epoch"]]
        _write_history(self.path, rows + [row])


class CheckpointWriter(keras.callbacks.Callback):
    """Saves best_model.keras (lowest val_loss) and checkpoint_epoch_N.keras.

    Every file is written to a temporary name and renamed, so a killed run
    leaves the previous complete file. Nothing is saved for an epoch whose
    loss is not finite, so the last good checkpoint survives a NaN.

    Args:
        save_dir: folder of the checkpoints.
        every_epochs: period of the numbered checkpoints.
        best_val_loss: the best validation loss so far (from history on resume).
    """

    def __init__(self, save_dir: str, every_epochs: int = 5, best_val_loss: float = math.inf):
        super().__init__()
        self.save_dir = save_dir
        self.every_epochs = every_epochs
        self.best_val_loss = best_val_loss

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(logs.get(key, 0.0)) for key in ("loss", "val_loss")):
            return
        val_loss = logs.get("val_loss", logs.get("loss"))
        if val_loss < self.best_val_loss:
            self.best_val_loss = val_loss
            save_keras(self.model, os.path.join(self.save_dir, "best_model.keras"))
        if (epoch + 1) % self.every_epochs == 0:
            save_keras(self.model, os.path.join(self.save_dir,
                                                f"checkpoint_epoch_{epoch + 1}.keras"))


def colour_image(unit_values: np.ndarray) -> np.ndarray:
    """(bins, frames) values in [0, 1] -> uint8 RGB (bins, frames, 3), low bins at the bottom."""
    from matplotlib import colormaps

    return (colormaps["magma"](unit_values[::-1])[..., :3] * 255).astype(np.uint8)


def spectrogram_image(magnitudes: np.ndarray, range_db: float = 80.0) -> np.ndarray:
    """(bins, frames) magnitudes -> RGB image of their level in dB (top `range_db` dB)."""
    decibels = 20 * np.log10(np.maximum(magnitudes, 1e-8))
    return colour_image(np.clip((decibels - decibels.max() + range_db) / range_db, 0.0, 1.0))


class SpectrogramSummaries(keras.callbacks.Callback):
    """Each epoch: images of a fixed validation patch and audio of its estimated vocals.

    Images: mix, predicted mask, estimated vocals (mask * mix) and true
    vocals spectrograms. Audio: the estimated vocals waveform, reconstructed
    with the mix phase at the model's sample rate.

    Args:
        log_dir: TensorBoard run folder (the validation writer's parent).
        example: dict with `mix_waveform` (samples,), `mix` and `vocals`
            (bins, frames) normalised magnitudes, as made by
            `pipelines.datasets.validation_patch`.
        stft_config: the model's STFT settings.
    """

    def __init__(self, log_dir: str, example: dict, stft_config: StftConfig):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))
        self.example = example
        self.stft_config = stft_config

    def on_epoch_end(self, epoch, logs=None):
        mix, vocals = self.example["mix"], self.example["vocals"]
        # A direct call, not predict(): it runs on this worker alone, with no
        # collective op that the other workers of a multi-worker run would miss.
        mask = keras.ops.convert_to_numpy(self.model(mix[np.newaxis], training=False))[0]
        frames = mix.shape[-1]
        waveform = np.asarray(self.example["mix_waveform"], np.float32)
        mix_spectrogram = transforms.stft(waveform, self.stft_config)[:, :frames]
        n_samples = min(len(waveform), frames * self.stft_config.hop_samples)
        estimate = transforms.masked_waveform(
            mask[:, :mix_spectrogram.shape[1]], mix_spectrogram, self.stft_config, n_samples)
        images = {"mix": spectrogram_image(mix), "mask": colour_image(mask),
                  "estimated_vocals": spectrogram_image(mask * mix),
                  "true_vocals": spectrogram_image(vocals)}
        with self.writer.as_default(step=epoch + 1):
            for name, image in images.items():
                tf.summary.image(f"spectrogram/{name}", image[np.newaxis])
            tf.summary.audio("estimated_vocals", estimate[np.newaxis, :, np.newaxis],
                             self.stft_config.sample_rate_hz)
        self.writer.flush()
