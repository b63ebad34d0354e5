"""Train the U-Net vocal separator (Jansson et al. 2017) with Keras.

With no data configured it trains on the real MUSDB18 clip that stempeg
ships, so it runs on a fresh machine with no download. Point --musdb-root (or
MUSDB_PATH) at MUSDB18 / MUSDB18-HQ to train a real model.

Outputs: checkpoints (best, final, every 5 epochs), history.csv, TensorBoard
logs under SAVE_DIR/logs (`tensorboard --logdir SAVE_DIR/logs`), and the best
model exported as a SavedModel. Resume an interrupted run with --resume.
"""

import argparse
import os
import sys

from keras_unet.cli import (ArgumentParser, add_dataclass_flags, dataclass_from_args, fail,
                            import_tensorflow_quietly)
from keras_unet.config import (PRECISIONS, PRESETS, RUN_CONFIG_FILE, STRATEGIES, WINDOWS,
                               DataConfig, ModelConfig, RunConfig, StftConfig, TrainConfig)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run = parser.add_argument_group("training")
    add_dataclass_flags(run, TrainConfig, renames={"learning_rate": "lr"},
                        choices={"strategy": STRATEGIES, "precision": PRECISIONS})
    run.add_argument("--preset", choices=PRESETS, default="seed",
                     help="architecture: seed (4 layers, 32-256 channels) or paper "
                          "(Jansson et al.: 6 layers, 16-512, batch norm, dropout) (default: seed)")
    run.add_argument("--resume", action="store_true",
                     help="continue the interrupted run in --save-dir from its last "
                          "completed epoch")
    data = parser.add_argument_group("data (default: the MUSDB clip bundled with stempeg)")
    add_dataclass_flags(data, DataConfig, defaults={"musdb_root": os.environ.get("MUSDB_PATH")})
    stft = parser.add_argument_group("STFT and patches")
    add_dataclass_flags(stft, StftConfig, choices={"window": WINDOWS})
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of the parsed flags; ValueError names a bad one."""
    if args.musdb_root is not None and not os.path.isdir(args.musdb_root):
        raise ValueError(f"--musdb-root {args.musdb_root}: no such directory")
    if args.resume and args.strategy == "multiworker":
        raise ValueError("--resume is not supported with --strategy multiworker")
    if args.resume and not os.path.isfile(os.path.join(args.save_dir, RUN_CONFIG_FILE)):
        raise ValueError(f"--resume: nothing to resume in {args.save_dir} "
                         "(no run was started there)")
    return RunConfig(stft=dataclass_from_args(StftConfig, args),
                     model=ModelConfig.from_preset(args.preset),
                     data=dataclass_from_args(DataConfig, args),
                     train=dataclass_from_args(TrainConfig, args))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    import_tensorflow_quietly()

    from keras_unet import training
    from pipelines.audio_io import AudioError
    from pipelines.sources import DataError

    training.configure_devices(config)
    try:
        outputs = training.train(config, resume=args.resume)
    except (DataError, AudioError) as error:
        fail(str(error))
    except training.TrainingError as error:
        fail(str(error), code=1)
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


if __name__ == "__main__":
    sys.exit(main())
