"""Scores a model's separation with BSS Eval v4, beside the mixture and oracle baselines.

    python evaluate.py [--model PATH]
                       [--musdb-root DIR [--subset test] [--is-wav] | --tracks DIR
                        | --mir1k-root DIR [--subset test|train|validation]]
                       [-o OUTDIR] [--jobs N] [--oracle-full-rate]

Each track is separated with the code of separate.py and scored (SDR, SIR,
SAR, ISR of vocals and accompaniment; median over 1 s windows, then over
tracks, as SiSEC 2018). A track that cannot be read or scored is named on
stderr and left out; the others are still scored and written, and the exit
code is then 2. With neither --musdb-root nor --tracks it scores the
MUSDB18 clip that stempeg ships. Prints the table and writes
OUTDIR/scores.json (every figure; its keys are documented in
keras_unet/evaluation/report.py) and OUTDIR/sdr_boxplot.png.

--tracks DIR: a folder of track folders, each with mixture.wav, vocals.wav
and optionally accompaniment.wav (else mixture - vocals).

--mir1k-root DIR: MIR-1K's clips (the unzipped MIR-1K/ or its Wavfile/), the
test split (17 singers), --subset train (abjones, amy), or --subset
validation (the songs of those two that the model's training held out, by
its own validation share), scored also the way MIR-1K papers do: BSS Eval
v3 on each whole clip, GNSDR / GSIR / GSAR.
"""

import argparse
import os
import sys

from keras_unet.core.config import SUBSETS
from keras_unet.cli import (ArgumentParser, add_model_flag, add_precision_flag,
                            check_model_exists, fail, import_tensorflow_quietly)

DEFAULT_OUTPUT = "evaluation"
SCORES_FILE = "scores.json"
PLOT_FILE = "sdr_boxplot.png"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python evaluate.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flag(parser)
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--musdb-root", metavar="DIR", help="MUSDB18 root folder")
    data.add_argument("--tracks", metavar="DIR", help="a folder of track folders")
    data.add_argument("--mir1k-root", metavar="DIR", help="MIR-1K folder (or its Wavfile/)")
    parser.add_argument("--subset", default="test", choices=(*SUBSETS, "validation"),
                        help="MUSDB18 or MIR-1K subset; validation: MIR-1K only "
                             "(default: test)")
    parser.add_argument("--is-wav", action="store_true",
                        help="--musdb-root holds MUSDB18-HQ (WAV folders)")
    parser.add_argument("-o", "--output", metavar="OUTDIR", default=DEFAULT_OUTPUT,
                        help=f"folder of the JSON and the plot (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes scoring tracks in parallel (default: 1)")
    add_precision_flag(parser)  # scores.json records the one used
    parser.add_argument("--oracle-full-rate", action="store_true",
                        help="also score the ideal ratio mask at each track's own rate")
    return parser


def _check_flags(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        fail(f"--jobs {args.jobs}: must be >= 1")
    if args.subset == "validation" and args.mir1k_root is None:
        fail("--subset validation needs --mir1k-root (MUSDB18's validation tracks are "
             "in its train subset: --subset train)")
    if args.subset != "test" and args.musdb_root is None and args.mir1k_root is None:
        fail("--subset needs --musdb-root or --mir1k-root")
    if args.is_wav and args.musdb_root is None:
        fail("--is-wav needs --musdb-root")


def _loaders(args: argparse.Namespace, validation_share=None, validation_singer=None) -> list:
    """The tracks to score, as (name, loader) pairs; checked before TensorFlow loads.

    MIR-1K's validation songs are known once the model (its validation
    share) is loaded; before that, the folder's training clips stand in, so
    a bad folder fails early.
    """
    from pipelines import reference_tracks

    try:
        if args.mir1k_root is None:
            return reference_tracks.track_loaders(tracks_dir=args.tracks,
                                                  musdb_root=args.musdb_root,
                                                  subset=args.subset, is_wav=args.is_wav)
        if args.subset != "validation":
            return reference_tracks.mir1k_loaders(args.mir1k_root, args.subset)
        if validation_share is None:  # the model's, not known yet
            return reference_tracks.mir1k_loaders(args.mir1k_root, "train")
        return reference_tracks.mir1k_loaders(args.mir1k_root, "validation", validation_share,
                                              validation_singer)
    except reference_tracks.TrackError as error:
        fail(str(error))


def _load_model(args: argparse.Namespace):
    """The model, with the output folder made; fails with one line."""
    from keras_unet.core.saving import ModelFileError, load_model

    try:
        model = load_model(args.model)
        os.makedirs(args.output, exist_ok=True)
    except ModelFileError as error:
        fail(str(error))
    except OSError as error:
        fail(f"-o {args.output}: cannot create ({error.strerror})")
    return model


def _write_report(document: dict, output: str) -> None:
    from keras_unet.evaluation.report import format_table, plot_sdr, write_json

    print(format_table(document))
    scores_path = os.path.join(output, SCORES_FILE)
    plot_path = os.path.join(output, PLOT_FILE)
    for path, write in ((scores_path, write_json), (plot_path, plot_sdr)):
        try:
            write(path, document)
        except OSError as error:
            fail(f"{path}: cannot write ({error.strerror or error})")
    print(f"wrote {scores_path} and {plot_path}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _check_flags(args)
    loaders = _loaders(args)
    check_model_exists(args.model)
    import_tensorflow_quietly()

    from keras_unet.core.precision import policy_of
    from keras_unet.core.saving import run_config_of
    from keras_unet.evaluation.estimates import estimators
    from keras_unet.evaluation.report import report
    from keras_unet.evaluation.run import evaluate_tracks
    from keras_unet.separation.separator import Separator
    from pipelines.reference_tracks import TrackError

    model = _load_model(args)
    run_config = run_config_of(model)
    if args.subset == "validation":  # the songs this model's own run held out
        if run_config.data.mir1k_root is None:
            fail(f"--subset validation: {args.model} was not trained on MIR-1K, so none of "
                 "its songs were held out from it; score --subset test or train")
        loaders = _loaders(args, run_config.data.validation_share,
                           run_config.data.validation_singer)
    separator = Separator(model, precision=args.precision)
    methods = estimators(separator, run_config.stft, oracle_full_rate=args.oracle_full_rate)
    try:
        tracks, seconds, failed = evaluate_tracks(
            loaders, methods, jobs=args.jobs, bss_eval_v3=args.mir1k_root is not None)
    except TrackError as error:
        fail(str(error))
    for name, why in failed.items():
        print(f"error: track {name}: {why}", file=sys.stderr)
    if not tracks:
        fail(f"no track could be evaluated ({len(failed)} failed)")
    _write_report(report(args.model, run_config.stft, tracks, seconds,
                         precision=policy_of(separator.model), failed=failed), args.output)
    return 2 if failed else 0
