"""The models the web page offers and accepts, and how it names the one a song used."""

import os
from typing import List, Optional, Tuple

from keras_unet.core.config import KERAS_FILE
from keras_unet.core.precision import policy_of
from keras_unet.core.saving import ModelFileError, model_file, run_config_of
from keras_unet.separation.separator import Separator


def list_models(models_dir: str) -> List[Tuple[str, str]]:
    """The export folders in `models_dir` that hold a model: (name, path), sorted by name."""
    try:
        names = sorted(os.listdir(models_dir))
    except OSError:
        return []
    return [(name, os.path.join(models_dir, name)) for name in names
            if os.path.isfile(os.path.join(models_dir, name, KERAS_FILE))]


def check_model_path(path: str, models_dir: Optional[str] = None) -> str:
    """A model path typed or chosen on the page, checked before the job queues.

    Args:
        path: as sent.
        models_dir: the only folder models may come from (links resolved),
            None for anywhere. A path outside it is refused without a word
            on whether it exists, so the field cannot probe the file system.

    Returns:
        The path, with "~" expanded.

    Raises:
        ModelFileError: "model ..." when the path is empty, outside
            `models_dir`, missing, or a folder without a model; whether the
            file holds a model of this project shows when it loads.
    """
    path = os.path.expanduser((path or "").strip())
    if not path:
        raise ModelFileError("model: none chosen; pick one or type the path of a .keras file "
                             "or an export folder")
    if models_dir is not None and not _inside(path, models_dir):
        raise ModelFileError("model: only the models folder's models can be used here (the "
                             "server's owner can allow others with --any-model-path)")
    try:
        model_file(path)
    except ModelFileError as error:
        raise ModelFileError(f"model {error}") from None
    return path


def _inside(path: str, folder: str) -> bool:
    """Whether `path`, links resolved, lies inside `folder`."""
    folder = os.path.realpath(folder)
    return os.path.commonpath([os.path.realpath(path), folder]) == folder


def describe_model(path: str, separator: Separator) -> str:
    """The model used, in words: its path, architecture, STFT and arithmetic."""
    config = run_config_of(separator.model)
    model, stft = config.model, config.stft
    return (f"{path}: {model.preset} U-Net ({model.depth} layers, {model.base_channels} "
            f"base channels) at {stft.sample_rate_hz} Hz, n_fft {stft.n_fft}, hop "
            f"{stft.hop_samples}; {policy_of(separator.model)}")
