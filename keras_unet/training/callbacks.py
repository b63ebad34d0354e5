"""Training callbacks the Keras library does not provide as needed.

Keras' own callbacks are used where they fit (BackupAndRestore, TensorBoard,
TerminateOnNaN). These cover the rest:
- `CheckpointWriter`: best / periodic checkpoints written atomically (Keras'
  `ModelCheckpoint` writes in place, so a kill during a save truncates the
  file), with the best model's score carried over a resume, keeping the
  newest numbered checkpoints.
- `HistoryWriter`: history.csv with each epoch exactly once, even when a run
  killed after logging an epoch but before its backup is resumed (Keras'
  `CSVLogger` in append mode would repeat that epoch).
- `SeparationMetrics`: each epoch, the validation songs separated whole as
  `separate.py` would at the model's rate, scored by SDR against the true
  sources, with the mask's mean and median, added to the epoch's logs so
  that history.csv, TensorBoard and the choice of the best model see them.
- `SpectrogramSummaries`: TensorBoard images and audio of a fixed validation
  patch.
"""

import csv
import math
import os
import re
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from keras_unet.separation import figures
from keras_unet.core import transforms
from keras_unet.core.config import BEST_MODEL_FILE, INFERENCE_BATCH_SIZE, StftConfig
from keras_unet.core.files import atomic_path
from keras_unet.core.masking import predict_mask
from keras_unet.core.saving import save_keras

SEPARATION_FIELDS = ("val_vocals_si_sdr", "val_accompaniment_si_sdr", "val_vocals_si_sdr_gain",
                     "val_mask_mean", "val_mask_median")
HISTORY_FIELDS = ("epoch", "loss", "val_loss", *SEPARATION_FIELDS, "learning_rate")
BEST_MODEL_MONITOR = "val_vocals_si_sdr"
"""The best model has the highest validation vocals SI-SDR (the lowest val_loss without it)."""


def read_history(path: str) -> list:
    """Rows of a history.csv as dicts of floats (epoch as int, nan where empty); [] when absent."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as file:
        return [{key: int(value) if key == "epoch" else float(value or "nan")
                 for key, value in row.items()} for row in csv.DictReader(file)]


def best_score(rows: list) -> float:
    """The best model's score in history rows: see `model_score`; -inf when none is finite."""
    scores = [model_score(row) for row in rows]
    return max((score for score in scores if math.isfinite(score)), default=-math.inf)


def model_score(logs: dict) -> float:
    """Higher is better: `BEST_MODEL_MONITOR` when logged, else -val_loss (nan if neither)."""
    value = logs.get(BEST_MODEL_MONITOR, math.nan)
    if math.isfinite(value):
        return value
    return -logs.get("val_loss", math.nan)


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
        row = {field: logs.get(field, math.nan) for field in HISTORY_FIELDS}
        row.update(epoch=epoch + 1, learning_rate=_learning_rate(self.model))
        rows = [old for old in read_history(self.path) if old["epoch"] < row["epoch"]]
        _write_history(self.path, rows + [row])


class CheckpointWriter(keras.callbacks.Callback):
    """Saves best_model.keras (highest `model_score`) and checkpoint_epoch_N.keras.

    The best model is the one that separates best: the highest validation
    vocals SDR (`SeparationMetrics`). The validation loss is a poor guide:
    the L1 on a near-silent mask is close to the L1 of a good one, and on
    MIR-1K the validation loss rose while the SDR still climbed.

    Every file is written to a temporary name and renamed, so a killed run
    leaves the previous complete file. Nothing is saved for an epoch whose
    loss is not finite, so the last good checkpoint survives a NaN. Only the
    newest `keep` numbered checkpoints up to the current epoch stay (each
    holds the optimizer state: 118 MB for the paper preset): those this run
    wrote, or its earlier part's on resume. Later ones, left in the folder by
    an earlier, longer run, are not this run's to delete; the best model is
    never deleted.

    Args:
        save_dir: folder of the checkpoints.
        every_epochs: period of the numbered checkpoints.
        best_score: the best `model_score` so far (from history on resume).
        keep: numbered checkpoints kept (None: all).
    """

    def __init__(self, save_dir: str, every_epochs: int = 5, best_score: float = -math.inf,
                 keep: Optional[int] = None):
        super().__init__()
        self.save_dir = save_dir
        self.every_epochs = every_epochs
        self.best_score = best_score
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(logs.get(key, 0.0)) for key in ("loss", "val_loss")):
            return
        score = model_score(logs) if "val_loss" in logs else -logs.get("loss", math.nan)
        if score > self.best_score:
            self.best_score = score
            save_keras(self.model, os.path.join(self.save_dir, BEST_MODEL_FILE))
        if (epoch + 1) % self.every_epochs == 0:
            save_keras(self.model, os.path.join(self.save_dir, checkpoint_name(epoch + 1)))
            self._forget_old_checkpoints(epoch + 1)

    def _forget_old_checkpoints(self, last_epoch: int) -> None:
        if self.keep is None:
            return
        numbered = sorted(found for found in numbered_checkpoints(self.save_dir)
                          if found[0] <= last_epoch)
        for _, path in numbered[:max(0, len(numbered) - self.keep)]:
            os.unlink(path)


def checkpoint_name(epoch: int) -> str:
    """The file name of the numbered checkpoint after `epoch` (counted from 1)."""
    return f"checkpoint_epoch_{epoch}.keras"


def numbered_checkpoints(save_dir: str) -> list:
    """[(epoch, path)] of the numbered checkpoints in `save_dir`, in no particular order."""
    found = []
    for name in os.listdir(save_dir) if os.path.isdir(save_dir) else []:
        match = re.fullmatch(r"checkpoint_epoch_(\d+)\.keras", name)
        if match:
            found.append((int(match.group(1)), os.path.join(save_dir, name)))
    return found


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio (Le Roux et al. 2019), in dB.

    The reference is scaled to its best fit a s (a = <s_hat, s> / <s, s>);
    SI-SDR = 10 log10(|a s|^2 / |a s - s_hat|^2). Like BSS Eval's SDR it
    ignores the estimate's overall gain, so half the mixture scores what the
    mixture scores (about 0 dB for vocals and band at equal level), and it
    is cheap enough for every epoch. Arrays of any equal shape.
    """
    reference, estimate = (np.asarray(part, np.float64).ravel() for part in (reference, estimate))
    scale = np.dot(estimate, reference) / np.dot(reference, reference)
    target = scale * reference
    return float(10.0 * np.log10(np.dot(target, target) / np.sum(np.square(target - estimate))))


class SeparationMetrics(keras.callbacks.Callback):
    """Each epoch: how well the model separates whole validation songs.

    Every song is separated at the model's rate the way `separate.py` does
    it (`keras_unet.core.masking.predict_mask`: overlapping patches, each
    normalised by its maximum, cross-faded masks; vocals = mask * |X| with
    the mix phase, accompaniment = mix - vocals), and scored against the
    true sources with `si_sdr_db`. Added to the epoch's logs (so this
    callback must come before those that read them):
        val_vocals_si_sdr, val_accompaniment_si_sdr: SI-SDR in dB, the mean
            over songs weighted by their length;
        val_vocals_si_sdr_gain: the same mean of SI-SDR(estimate) -
            SI-SDR(mixture) for the vocals (the NSDR of MIR-1K papers, with
            this SDR): what separating adds to leaving the mixture as it is;
        val_mask_mean, val_mask_median: over every bin and frame. A mask
            collapsing to silence shows here first: median near 0.

    Args:
        songs: list of (mix, vocals), float32 (samples, channels) at the
            model's rate; each channel is scored as its own signal.
        stft_config: the model's STFT settings.
        batch_size: patches per model call.
    """

    def __init__(self, songs, stft_config: StftConfig, batch_size: int = INFERENCE_BATCH_SIZE):
        super().__init__()
        self.stft_config = stft_config
        self.songs = []
        for mix, vocals in songs:
            mix, vocals = (np.ascontiguousarray(np.asarray(part, np.float32).T)
                           for part in (mix, vocals))  # (channels, samples)
            spectrum = transforms.stft(mix, stft_config)  # (channels, bins, frames)
            self.songs.append({"mix": mix, "vocals": vocals, "spectrum": spectrum,
                               "mixture_sdr": si_sdr_db(vocals, mix)})
        self.weights = np.array([song["mix"].shape[-1] for song in self.songs], np.float64)
        self._mask = tf.function(
            lambda magnitudes: predict_mask(self.model, magnitudes, stft_config, batch_size),
            input_signature=[tf.TensorSpec([None, stft_config.n_bins, None], tf.float32)])

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        scores, masks = {"vocals": [], "accompaniment": [], "gain": []}, []
        for song in self.songs:
            spectrum, mix, vocals = song["spectrum"], song["mix"], song["vocals"]
            mask = self._mask(transforms.magnitude(spectrum))
            estimate = transforms.masked_waveform(mask, spectrum, self.stft_config,
                                                  mix.shape[-1]).numpy()
            scores["vocals"].append(si_sdr_db(vocals, estimate))
            scores["accompaniment"].append(si_sdr_db(mix - vocals, mix - estimate))
            scores["gain"].append(scores["vocals"][-1] - song["mixture_sdr"])
            masks.append(mask.numpy().ravel())
        average = {name: float(np.average(values, weights=self.weights))
                   for name, values in scores.items()}
        every_mask = np.concatenate(masks)
        logs.update(val_vocals_si_sdr=average["vocals"],
                    val_accompaniment_si_sdr=average["accompaniment"],
                    val_vocals_si_sdr_gain=average["gain"],
                    val_mask_mean=float(every_mask.mean()),
                    val_mask_median=float(np.median(every_mask)))


class SpectrogramSummaries(keras.callbacks.Callback):
    """Each epoch: a figure of a fixed validation patch and audio of its estimated vocals.

    The figure (TensorBoard image "separation") shows the mix, the predicted
    mask, the estimated vocals (mask * mix) and the true vocals side by side,
    with time in seconds, frequency in Hz and colour bars
    (`keras_unet.separation.figures`). Audio: the estimated vocals waveform,
    reconstructed with the mix phase at the model's sample rate.

    Args:
        log_dir: TensorBoard run folder (the validation writer's parent).
        example: dict with `mix_waveform` (samples,), `mix` and `vocals`
            (bins, frames) normalised magnitudes, `name` and `start_seconds`,
            as made by `pipelines.datasets.validation_patch`.
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
        panels = [("mix |X|", mix, figures.LEVEL), ("mask M", mask, figures.MASK),
                  ("estimated vocals |M X|", mask * mix, figures.LEVEL),
                  ("true vocals |Y|", vocals, figures.LEVEL)]
        figure = figures.spectrogram_figure(
            panels, self.stft_config.sample_rate_hz, self.stft_config.hop_samples,
            start_seconds=self.example["start_seconds"], side_by_side=True,
            title=f"{self.example['name']}, epoch {epoch + 1}")
        image = tf.io.decode_png(figures.png_bytes(figure), channels=3)
        with self.writer.as_default(step=epoch + 1):
            tf.summary.image("separation", image[np.newaxis])
            tf.summary.audio("estimated_vocals", estimate[np.newaxis, :, np.newaxis],
                             self.stft_config.sample_rate_hz)
        self.writer.flush()
