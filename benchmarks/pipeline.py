"""Input pipeline throughput next to what one training step consumes.

Question answered: can `pipelines.datasets.make_train_dataset` feed training
without making it wait? Target: the pipeline delivers at least 5x the
patches/s a training step of the default ("seed") model consumes, so the
input share of a step stays under 5% even if the two shared no overlap.

Method, on the embedded default (the bundled MUSDB clip, default RunConfig,
all augmentation on):
- Pipeline: the tracks are loaded once (the decoded cache is then warm), the
  training dataset is built with `patches_per_epoch` = `--batches` x batch,
  and one timed call is one full iteration over it (iterator start, every
  batch pulled to NumPy), so the per-epoch start-up counts. patches/s =
  patches per epoch / median seconds per epoch.
- Training: the default model (`build_model(RunConfig())`, Adam), one
  `train_on_batch` on a fixed batch from the same pipeline (the compiled
  train function, i.e. `MaskModel.train_step` without data loading).
  patches/s = batch / median seconds per step.
Both are warmed up untimed first (tracing, kernel selection); figures are
medians over `--repeats` repeats (benchmarks/common.py). On a CPU-only
machine training and the pipeline share the cores, so the ratio measures
capacity, not the overlap a real run gets; on a shared machine the figures
are indicative. Run from the repository root:

    python -m benchmarks.pipeline            # about 2 minutes on 2 cores
    python -m benchmarks.pipeline --quick    # under a minute
"""

import argparse
import sys
import time

from benchmarks.common import (add_timing_arguments, configure_threads, describe_machine,
                               format_table, time_calls)

TARGET_RATIO = 5.0


def measure_pipeline(tracks, config, batch: int, args, spectra: bool = True) -> tuple:
    """(patches/s, spread, CPU ms per patch) of whole epochs of the training dataset.

    CPU time is the process's (every core, `time.process_time`) over the
    timed epochs, divided by their patches: what the host spends per patch,
    whatever the parallelism. `spectra=False` leaves out the STFT stage, the
    part a GPU takes over (`--stft-device auto`).
    """
    import tensorflow as tf

    from pipelines.datasets import make_train_dataset

    dataset = make_train_dataset(tracks, config, batch_size=batch, seed=0, epochs=1,
                                 spectra=spectra)

    def epoch():
        for element in dataset:
            tf.nest.map_structure(lambda tensor: tensor.numpy(), element)

    began = time.process_time()
    timing = time_calls(epoch, warmup=args.warmup, repeats=args.repeats)
    cpu_seconds = time.process_time() - began
    patches = config.data.patches_per_epoch * (args.warmup + args.repeats)
    return (timing.rate(config.data.patches_per_epoch), timing.spread(),
            1000.0 * cpu_seconds / patches)


def measure_training(tracks, config, batch: int, args) -> tuple:
    """(patches/s, spread) of `train_on_batch` of the default model on one batch."""
    import keras

    from keras_unet.core.model import build_model
    from pipelines.datasets import make_train_dataset

    mix, vocals, weights = next(iter(make_train_dataset(tracks, config, batch, seed=1)))
    model = build_model(config)
    model.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate))
    timing = time_calls(lambda: model.train_on_batch(mix, vocals, sample_weight=weights),
                        warmup=args.warmup, repeats=args.repeats, calls=args.steps)
    return timing.rate(batch), timing.spread()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline",
        description="Training-pipeline patches/s on the bundled clip next to the patches/s "
                    "one training step of the default model consumes (medians of repeats).")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per batch (16)")
    parser.add_argument("--batches", type=int, default=32,
                        help="batches per timed pipeline epoch (default 32)")
    parser.add_argument("--steps", type=int, default=3,
                        help="training steps per timed repeat (default 3)")
    add_timing_arguments(parser, repeats=5, warmup=1)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.repeats, args.batches, args.steps = min(args.repeats, 3), 8, 1
    for flag in ("batch_size", "batches", "steps", "repeats"):
        if getattr(args, flag) < 1:
            print(f"--{flag.replace('_', '-')}: must be >= 1, got {getattr(args, flag)}",
                  file=sys.stderr)
            return 2

    import dataclasses

    from keras_unet.core.config import RunConfig
    from pipelines.sources import DataError, load_tracks

    configure_threads(args.intra_threads, args.inter_threads)
    config = RunConfig()
    config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, patches_per_epoch=args.batches * args.batch_size))
    try:
        train_tracks, _ = load_tracks(config)
    except DataError as error:
        print(error, file=sys.stderr)
        return 2
    pipeline, pipeline_spread, pipeline_cpu = measure_pipeline(
        train_tracks, config, args.batch_size, args)
    _, crops_spread, crops_cpu = measure_pipeline(train_tracks, config, args.batch_size, args,
                                                  spectra=False)
    training, training_spread = measure_training(train_tracks, config, args.batch_size, args)
    ratio = pipeline / training

    print(f"machine: {describe_machine()}")
    print(format_table(
        ("stage", "batch", "patches/s", "spread", "CPU ms/patch"),
        [("pipeline: make_train_dataset, embedded default", args.batch_size,
          f"{pipeline:.1f}", pipeline_spread, f"{pipeline_cpu:.2f}"),
         ("pipeline without its STFT stage (what a GPU leaves the CPU)", args.batch_size,
          "", crops_spread, f"{crops_cpu:.2f}"),
         (f"training: {config.model.preset} model train_on_batch", args.batch_size,
          f"{training:.1f}", training_spread, "")]))
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print(f"summary: pipeline {pipeline:.0f} patches/s vs training {training:.1f} patches/s = "
          f"{ratio:.1f}x, {verdict} the {TARGET_RATIO:.0f}x target "
          f"(medians of {args.repeats} repeats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
