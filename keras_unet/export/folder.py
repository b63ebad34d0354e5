"""Which folders an export may replace: empty ones, and earlier exports of this project.

An export folder is replaced whole, so it must hold nothing a user put
there: every entry is checked by name against what `saved_model` writes
(and TensorFlow's SavedModel writer with it), and its config.json must be a
`RunConfig` of this project. A folder with anything else, such as a user's
notes or another project's SavedModel, is refused. Nothing here imports
TensorFlow, so the command lines check before training or loading a model.
"""

import dataclasses
import json
import os
import re
from typing import Optional

from keras_unet.core.config import KERAS_FILE, RUN_CONFIG_FILE, RunConfig

CONFIG_FILE = RUN_CONFIG_FILE
TFLITE_FILE = "model.tflite"
SAVED_MODEL_FILE = "saved_model.pb"

_EXPORT_FILES = frozenset({SAVED_MODEL_FILE, "fingerprint.pb", CONFIG_FILE, KERAS_FILE,
                           TFLITE_FILE})
_EXPORT_FOLDERS = {"variables": re.compile(r"variables\.(index|data-\d{5}-of-\d{5})"),
                   "assets": None}  # None: nothing may be inside
"""Subfolders of a SavedModel, and the names their files may have."""
_CONFIG_SECTIONS = tuple(field.name for field in dataclasses.fields(RunConfig))


def replace_problem(directory: str) -> Optional[str]:
    """Why an export must not replace `directory`, or None when it may (absent, empty, an export)."""
    if not os.path.lexists(directory):
        return None
    if os.path.islink(directory) or not os.path.isdir(directory):
        return "exists and is not a folder; refusing to replace it"
    names = set(os.listdir(directory))
    if not names:
        return None
    foreign = sorted(name for name in names if not _is_export_entry(directory, name))
    if foreign:
        return (f"holds {foreign[0]!r}, which is not part of an export of this project; "
                "refusing to replace the folder (choose another, or move it away)")
    if SAVED_MODEL_FILE not in names or not _is_run_config(os.path.join(directory, CONFIG_FILE)):
        return ("is not a SavedModel export of this project; refusing to replace it "
                "(choose another folder)")
    return None


def _is_export_entry(directory: str, name: str) -> bool:
    path = os.path.join(directory, name)
    if os.path.islink(path):
        return False
    if name in _EXPORT_FILES:
        return os.path.isfile(path)
    if name not in _EXPORT_FOLDERS or not os.path.isdir(path):
        return False
    pattern = _EXPORT_FOLDERS[name]
    return all(pattern is not None and pattern.fullmatch(inner)
               and os.path.isfile(os.path.join(path, inner)) and not os.path.islink(
                   os.path.join(path, inner))
               for inner in os.listdir(path))


def _is_run_config(path: str) -> bool:
    """Whether `path` holds a `RunConfig` JSON with the sections an export writes."""
    try:
        with open(path, encoding="utf-8") as file:
            values = json.load(file)
        if not isinstance(values, dict) or set(values) != set(_CONFIG_SECTIONS):
            return False
        RunConfig.from_dict(values)
    except (OSError, ValueError, TypeError):
        return False
    return True
