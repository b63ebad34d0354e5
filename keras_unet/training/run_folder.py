"""A run folder (`TrainConfig.save_dir`) as a user's work: what it holds, and when to touch it.

The command line asks these questions before TensorFlow loads, so a run
that cannot start says so at once and changes nothing:

- `holds_run`: a new run there would replace an earlier run's checkpoints,
  history and backup, so it needs `--overwrite` (or `--resume`);
- `is_finished`: a run that wrote its final model and left no backup has
  nothing to resume;
- `backup_state`: which of the two states Keras' `BackupAndRestore` keeps
  (`double_checkpoint`) can be loaded, so a truncated backup is refused in
  one line, or its previous state used, with the epoch that goes with it.

Nothing here imports TensorFlow.
"""

import json
import os
import shutil
from typing import Optional

import h5py  # Keras' own dependency, for its .weights.h5 files

from keras_unet.core.config import BEST_MODEL_FILE, HISTORY_FILE, RUN_CONFIG_FILE

BACKUP_FOLDER = "backup"
FINAL_MODEL_FILE = "final_model.keras"
BACKUP_WEIGHTS = "latest.weights.h5"  # written by keras.callbacks.BackupAndRestore
BACKUP_METADATA = "training_metadata.json"  # written after the weights
PREVIOUS_SUFFIX = ".bkp"  # BackupAndRestore's copy of the state before the latest

RUN_FILES = (RUN_CONFIG_FILE, HISTORY_FILE, BEST_MODEL_FILE, FINAL_MODEL_FILE, BACKUP_FOLDER)
"""What makes a folder hold a run; all but the config go when a run starts over."""


class BackupError(ValueError):
    """A resumed run's backup cannot be loaded."""


def holds_run(save_dir: str) -> bool:
    """Whether `save_dir` holds a run's files (a new run there would replace them)."""
    return any(os.path.lexists(os.path.join(save_dir, name)) for name in RUN_FILES)


def is_finished(save_dir: str) -> bool:
    """Whether the run in `save_dir` completed: a final model, and no backup left to resume.

    Keras deletes the backup when `fit` ends; the final model is saved after
    it, and a new run (`clear_run`) removes an earlier one's.
    """
    return (os.path.isfile(os.path.join(save_dir, FINAL_MODEL_FILE))
            and not os.path.lexists(os.path.join(save_dir, BACKUP_FOLDER)))


def clear_run(save_dir: str) -> None:
    """Removes an earlier run's history, best and final models and backup (`--overwrite`).

    Called only once a new run has its data and is about to train. Numbered
    checkpoints stay (`callbacks.CheckpointWriter` leaves later ones alone),
    and so do TensorBoard logs (one folder per run).
    """
    for name in RUN_FILES[1:]:
        path = os.path.join(save_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)


def backup_state(backup_dir: str) -> Optional[str]:
    """Which saved state a resumed run loads: "latest", "previous" or None (none completed).

    BackupAndRestore writes the weights, then the metadata (the epoch); with
    no metadata the first backup never completed. When the latest weights
    cannot be read (a kill or a full disk truncated them), Keras falls back
    to the previous state (`.bkp`), and the epoch must come from it too.

    Raises:
        BackupError: the latest weights are unreadable and there is no
            readable previous state.
    """
    latest = os.path.join(backup_dir, BACKUP_WEIGHTS)
    if not os.path.isfile(os.path.join(backup_dir, BACKUP_METADATA)):
        return None
    if _readable(latest, os.path.join(backup_dir, BACKUP_METADATA)):
        return "latest"
    if _readable(latest + PREVIOUS_SUFFIX,
                 os.path.join(backup_dir, BACKUP_METADATA + PREVIOUS_SUFFIX)):
        return "previous"
    raise BackupError(f"{latest}: the backup is damaged and no earlier one can be read; "
                      "start the run over with --overwrite")


def use_previous_backup(backup_dir: str) -> None:
    """Puts the previous state in place of the latest, as BackupAndRestore's fallback does."""
    for name in (BACKUP_WEIGHTS, BACKUP_METADATA):
        path = os.path.join(backup_dir, name)
        os.replace(path + PREVIOUS_SUFFIX, path)


def backup_epoch(backup_dir: str) -> int:
    """The epochs the backup completed (0 when none did): where a resumed run restarts."""
    path = os.path.join(backup_dir, BACKUP_METADATA)
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as file:
        return int(json.load(file)["epoch"])


def _readable(weights: str, metadata: str) -> bool:
    """Whether an HDF5 weights file opens and its metadata names an epoch."""
    try:
        with h5py.File(weights, "r"):
            pass
        with open(metadata, encoding="utf-8") as file:
            int(json.load(file)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True
