"""Train the U-Net vocal separator (Jansson et al. 2017) with Keras.

With no data configured it trains on the real MUSDB18 clip that stempeg
ships, so it runs on a fresh machine with no download. Point --mir1k-root at
an unzipped MIR-1K, or --musdb-root (or MUSDB_PATH) at MUSDB18 / MUSDB18-HQ,
to train a real model; with a dataset the epochs are longer and decoded
audio is cached (default: CACHE_DIR below), so a second run starts at once.

Outputs: checkpoints (best, final, every 5 epochs), history.csv, TensorBoard
logs under SAVE_DIR/logs (`tensorboard --logdir SAVE_DIR/logs`), and the best
model exported as a SavedModel. Resume an interrupted run with --resume; a
folder that holds a run is refused for a new one unless --overwrite is given.
"""

import argparse
import dataclasses
import os
import sys

from keras_unet.cli import (ArgumentParser, add_dataclass_flags, dataclass_from_args,
                            export_folder_problem, fail, import_tensorflow_quietly, int_or_all)
from keras_unet.core.config import (LOSS_SOURCES, LR_SCHEDULES, MODELS_DIR, PRECISIONS,
                                    PRESET_DEFAULTS, PRESETS, RESUMABLE_CHANGES,
                                    RUN_CONFIG_FILE, STFT_DEVICES, STRATEGIES, WINDOWS,
                                    DataConfig, ModelConfig, RunConfig, StftConfig, TrainConfig)
from keras_unet.core.files import folder_problem, reason
from keras_unet.training import run_folder
from keras_unet.training.run_folder import BackupError
from pipelines import mir1k

# Run lengths: the dataclasses' defaults fit the 6 s bundled clip; with a dataset
# these apply unless the flags are given.
DATASET_DEFAULTS = {"epochs": 100, "patches_per_epoch": 1600, "lr_schedule": "cosine"}
DEFAULT_CACHE_DIR = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "keras-unet-vocals")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run = parser.add_argument_group("training")
    add_dataclass_flags(run, TrainConfig, renames={"learning_rate": "lr"},
                        choices={"strategy": STRATEGIES, "precision": PRECISIONS,
                                 "lr_schedule": LR_SCHEDULES, "loss_sources": LOSS_SOURCES},
                        types={"keep_checkpoints": int_or_all},
                        later={field: _later_text(field) for field in ("epochs", "lr_schedule")})
    run.add_argument("--preset", choices=PRESETS, default="seed",
                     help="seed (the brief: 4 layers, 32-256 channels), paper (Jansson et "
                          "al.: 6 layers, 16-512, batch norm, dropout) or voices (seed's "
                          "network with hop 256, vocals pitch-shifted by up to 3 semitones "
                          "and the L1 on both sources; flags given still win) "
                          "(default: seed)")
    run.add_argument("--resume", action="store_true",
                     help="continue the interrupted run in --save-dir from its last "
                          "completed epoch")
    run.add_argument("--overwrite", action="store_true",
                     help="start a new run in a --save-dir that holds one, replacing its "
                          "history, best and final models and backup once the new run's "
                          "data are loaded (without it such a run is refused)")
    data = parser.add_argument_group("data (default: the MUSDB clip bundled with stempeg)")
    add_dataclass_flags(data, DataConfig, defaults={"musdb_root": os.environ.get("MUSDB_PATH")},
                        types={"n_songs": int_or_all}, choices={"stft_device": STFT_DEVICES},
                        later={"patches_per_epoch": _later_text("patches_per_epoch"),
                               "cache_dir": f"{DEFAULT_CACHE_DIR} with a dataset, none for "
                                            "the bundled clip; '' for none"})
    stft = parser.add_argument_group("STFT and patches")
    add_dataclass_flags(stft, StftConfig, choices={"window": WINDOWS})
    return parser


def _later_text(field: str) -> str:
    return (f"{_dataclass_default(field)} on the bundled clip, "
            f"{DATASET_DEFAULTS[field]} with a dataset")


def _settle_defaults(args: argparse.Namespace) -> None:
    """Fills the flags left at None by `later`: run lengths and the cache by data source."""
    dataset = args.musdb_root is not None or args.mir1k_root is not None
    for field, value in DATASET_DEFAULTS.items():
        if getattr(args, field) is None:
            setattr(args, field, value if dataset else _dataclass_default(field))
    if args.cache_dir is None:
        args.cache_dir = DEFAULT_CACHE_DIR if dataset else None
    elif args.cache_dir == "":
        args.cache_dir = None


def _dataclass_default(field: str):
    """The default of a TrainConfig or DataConfig field."""
    return {candidate.name: candidate.default
            for cls in (TrainConfig, DataConfig) for candidate in dataclasses.fields(cls)}[field]


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of the parsed flags; ValueError names a bad one."""
    for flag, root in (("--musdb-root", args.musdb_root), ("--mir1k-root", args.mir1k_root)):
        if root is not None and not os.path.isdir(root):
            raise ValueError(f"{flag} {root}: no such directory")
    _settle_defaults(args)
    if args.resume and args.strategy == "multiworker":
        raise ValueError("--resume is not supported with --strategy multiworker")
    _check_folders(args)
    config = RunConfig(stft=dataclass_from_args(StftConfig, args),
                       model=ModelConfig.from_preset(args.preset),
                       data=dataclass_from_args(DataConfig, args),
                       train=dataclass_from_args(TrainConfig, args))
    if config.data.patches_per_epoch < config.train.batch_size:
        raise ValueError(f"--patches-per-epoch {config.data.patches_per_epoch} is less than "
                         f"--batch-size {config.train.batch_size}: an epoch needs one whole "
                         "batch; raise the first or lower the second")
    if args.resume:
        _check_resumable(config, os.path.join(args.save_dir, RUN_CONFIG_FILE))
    return config


def _check_folders(args: argparse.Namespace) -> None:
    """Refuses at once what would fail or lose work later: ValueError names the flag.

    A save folder that cannot be written, a new run over an earlier one
    without --overwrite, --resume with nothing to resume, an export folder
    that cannot be written or holds anything but an earlier export.
    """
    save_dir = args.save_dir
    problem = folder_problem(save_dir)
    if problem:
        raise ValueError(f"--save-dir {save_dir}: {problem}")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues a run, --overwrite starts one over: give one")
    if args.resume and not os.path.isfile(os.path.join(save_dir, RUN_CONFIG_FILE)):
        raise ValueError(f"--resume: nothing to resume in {save_dir} "
                         "(no run was started there)")
    if not args.resume and not args.overwrite and run_folder.holds_run(save_dir):
        raise ValueError(f"--save-dir {save_dir}: holds a run; continue it with --resume, "
                         "or start over with --overwrite (which replaces its models, "
                         "history and backup)")
    export_dir = args.export_dir or MODELS_DIR
    problem = (export_folder_problem(export_dir) if args.export_dir
               else folder_problem(export_dir))
    if problem:
        raise ValueError(f"--export-dir {export_dir}: {problem}")


def _comparable(config: RunConfig) -> RunConfig:
    """`config` with its data folders resolved, so that two spellings of one folder match.

    MIR-1K's folder and its `Wavfile/` folder are one (`pipelines.mir1k.wav_folder`).
    """
    data = config.data
    mir1k_root = data.mir1k_root
    if mir1k_root is not None and os.path.isdir(mir1k_root):
        mir1k_root = mir1k.wav_folder(mir1k_root)
    return dataclasses.replace(config, data=dataclasses.replace(
        data, mir1k_root=_resolved(mir1k_root), musdb_root=_resolved(data.musdb_root),
        cache_dir=_resolved(data.cache_dir)))


def _resolved(path):
    return None if path is None else os.path.realpath(os.path.expanduser(path))


def _check_resumable(config: RunConfig, saved_path: str) -> None:
    """Refuses to resume a run with settings that change what it learns; names them.

    Folders compare resolved; the save folder not at all, since the run's
    config was found there (a moved run folder resumes).
    """
    try:
        with open(saved_path, encoding="utf-8") as file:
            saved = RunConfig.from_json(file.read())
    except (OSError, ValueError) as error:
        raise ValueError(f"--resume: cannot read {saved_path} ({error})") from None
    changed = [name for name in _comparable(saved).differences(_comparable(config))
               if name not in RESUMABLE_CHANGES and name != "train.save_dir"]
    if changed:
        raise ValueError(f"--resume: the run in {os.path.dirname(saved_path)} was started with "
                         f"other settings: {', '.join(changed)}; resume with the same flags, "
                         "or start a new run in another --save-dir")


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """The flags, with the defaults of the chosen --preset (`PRESET_DEFAULTS`) under them."""
    preset = parser.parse_known_args(argv)[0].preset
    parser.set_defaults(**{field: value
                           for section in PRESET_DEFAULTS.get(preset, {}).values()
                           for field, value in section.items()})
    return parser.parse_args(argv)


def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    if args.resume and run_folder.is_finished(config.train.save_dir):
        print(f"{config.train.save_dir}: this run is finished (its final model is "
              f"{run_folder.FINAL_MODEL_FILE}); nothing to resume. Start a new one with "
              "--overwrite or another --save-dir")
        return 0
    import_tensorflow_quietly()

    from keras_unet.training import run as training
    from keras_unet.core.audio_io import AudioError
    from pipelines.sources import DataError

    warning = training.short_run_warning(config)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    training.configure_devices(config)
    try:
        outputs = training.train(config, resume=args.resume)
    except (DataError, AudioError) as error:
        fail(str(error))
    except BackupError as error:
        fail(str(error))
    except training.TrainingError as error:
        fail(str(error), code=1)
    except OSError as error:
        fail(f"{error.filename or config.train.save_dir}: cannot write ({reason(error)})",
             code=1)
    except KeyboardInterrupt:
        fail("interrupted; continue with the same command and --resume", code=130)
    if not outputs.history:
        return 0  # a non-chief worker of a multi-worker run: the chief reports
    last = outputs.history[-1]
    print(f"done: {len(outputs.history)} epochs, loss {last['loss']:.5f}, "
          f"val_loss {last['val_loss']:.5f}; checkpoints in {outputs.save_dir}, "
          f"SavedModel in {outputs.export_dir}, TensorBoard: tensorboard --logdir "
          f"{os.path.dirname(outputs.log_dir)}")
    return 0

