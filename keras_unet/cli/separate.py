"""Separate songs into vocals and accompaniment with a trained U-Net.

    python separate.py song.mp3 other.flac -o separated/

writes separated/<song>/vocals.wav and separated/<song>/accompaniment.wav at
the input's own sample rate, channel count and length, full band. Any file
soundfile or ffmpeg decodes, any rate, any length; songs are read, separated
and written in blocks (compressed ones decoded as a stream), so memory does
not grow with their length. --plot adds separation.png (spectrograms and the
mask of an excerpt) beside them.

On disk the two outputs add up to the input: exactly, sample for sample, in
the 16- and 24-bit formats (the accompaniment is the input minus the vocals
computed in integers), to float rounding in wav-float. When a sample of the
vocals or the accompaniment would not fit the format (either can peak above
the mix, and a decoded MP3 or AAC can exceed full scale), --clip-mode
decides (after Demucs's flag of that name):
  rescale  scale the input and both outputs of that file by one factor so
           their peak fits (the default; the sum stays the scaled input)
  clamp    clip the samples beyond full scale (the sum then differs there)
  none     write them as they are (only --format wav-float holds them)
A file rescaled or clipped gets one warning line on stderr. To write each
file, the vocals go first to a float32 scratch file beside the outputs
(4 bytes per sample and channel, deleted afterwards) and the input is read
a second time.

Nothing is lost or half-written: the two outputs of a song appear together
or not at all, earlier results are replaced only with --overwrite, an input
rewritten while it is separated gets an error, not outputs, and Ctrl-C,
SIGTERM or SIGHUP stop the command with one line, leaving no temporary file
(exit 130, 143, 129).
"""

import argparse
import os
import sys
import time

from keras_unet.cli import (ArgumentParser, add_batch_size_flag, add_model_flag,
                            add_output_flags, add_precision_flag, check_batch_size,
                            check_model_exists, check_output_flags, fail,
                            import_tensorflow_quietly, stops_cleanly)
from keras_unet.core.audio_io import OUTPUT_FORMATS, song_name
from keras_unet.core.files import reason
from keras_unet.core.messages import last_line

PLOT_NAME = "separation.png"
TIMINGS_VARIABLE = "SEPARATE_TIMINGS"


class InputError(Exception):
    """One input cannot be separated; the message names it and why."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="IN", help="audio files to separate")
    parser.add_argument("-o", "--output-dir", default="separated",
                        help="folder of the results, one subfolder per input (default: separated)")
    add_model_flag(parser)
    add_output_flags(parser)
    add_precision_flag(parser)
    add_batch_size_flag(parser)
    parser.add_argument("--plot", action="store_true",
                        help=f"also write {PLOT_NAME}: mix, mask and vocals spectrograms")
    parser.add_argument("--reference", metavar="VOCALS_FILE",
                        help="true vocals of the (single) input, added to the plot (with "
                             "--plot)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in a song's folder "
                             "(without it such a song is refused)")
    parser.add_argument("--timings", action="store_true",
                        default=os.environ.get(TIMINGS_VARIABLE) == "1",
                        help=argparse.SUPPRESS)
    return parser


def _output_paths(args, path: str) -> dict:
    extension = OUTPUT_FORMATS[args.format][0]
    folder = os.path.join(args.output_dir, song_name(path))
    return {"folder": folder,
            "vocals": os.path.join(folder, f"vocals.{extension}"),
            "accompaniment": os.path.join(folder, f"accompaniment.{extension}"),
            "plot": os.path.join(folder, PLOT_NAME)}


def _check_outputs(args, paths: dict, protected: set) -> None:
    """Refuses outputs that would overwrite an input, or earlier results without --overwrite.

    Raises:
        InputError: naming the file and what to do.
    """
    for key in ("vocals", "accompaniment", "plot"):
        if os.path.realpath(paths[key]) in protected:
            raise InputError(f"{paths[key]}: output would overwrite an input file")
    if not args.overwrite and _earlier_results(args, paths):
        raise InputError(f"{paths['folder']}: holds earlier results "
                         f"({', '.join(_earlier_results(args, paths))}); pass --overwrite to "
                         "replace them, or choose another -o")


def _earlier_results(args, paths: dict) -> list:
    """The names of this song's outputs already in its folder."""
    keys = ("vocals", "accompaniment", "plot") if args.plot else ("vocals", "accompaniment")
    return [os.path.basename(paths[key]) for key in keys if os.path.lexists(paths[key])]


def _process(separator, args, path: str, paths: dict) -> None:
    """Separates one input into its folder (and draws its figure with --plot).

    The work itself is in `keras_unet.separation.song_files`, which the web page shares.
    """
    from keras_unet.separation.song_files import fit_warning, separate_file, write_plot

    created = not os.path.isdir(paths["folder"])
    try:
        os.makedirs(paths["folder"], exist_ok=True)
        written = separate_file(separator, path, paths["vocals"], paths["accompaniment"],
                                args.format, args.clip_mode)
        warning = fit_warning(path, written)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        if args.plot:
            write_plot(separator, path, paths["plot"], args.reference)
    except OSError as error:
        raise InputError(f"{paths['folder']}: cannot write ({reason(error)})") from None
    finally:
        if created and os.path.isdir(paths["folder"]) and not os.listdir(paths["folder"]):
            os.rmdir(paths["folder"])


def _check_flags(parser, args: argparse.Namespace) -> None:
    """Fails on flags that cannot work together, a missing model or reference, or an
    output folder that cannot be written."""
    check_batch_size(args)
    check_output_flags(args)
    if args.reference is not None and not args.plot:
        parser.error("argument --reference: is drawn in the plot; add --plot")
    if args.reference is not None and len(args.inputs) > 1:
        parser.error("argument --reference: gives the vocals of one input; "
                     f"received {len(args.inputs)} inputs")
    check_model_exists(args.model)
    if args.reference is not None:
        _check_reference(args.reference)
    try:
        os.makedirs(args.output_dir, exist_ok=True)
    except OSError as error:
        fail(f"-o {args.output_dir}: cannot create the output folder ({error.strerror})")
    if not os.access(args.output_dir, os.W_OK | os.X_OK):
        fail(f"-o {args.output_dir}: output folder is not writable")


def _check_reference(path: str) -> None:
    """Fails unless the --reference file opens as audio: before any output is written."""
    from keras_unet.core.audio_io import AudioError, open_audio

    try:
        with open_audio(path):
            pass
    except AudioError as error:
        fail(f"--reference {error}")


def _checked_inputs(args: argparse.Namespace):
    """(the inputs to separate as (path, output paths), how many were refused).

    Cheap checks, so bad inputs are reported before TensorFlow loads.
    """
    from keras_unet.core.audio_io import AudioError, check_readable

    failures, jobs, folders = 0, [], {}
    protected = {os.path.realpath(path) for path in args.inputs + [args.reference] if path}
    for path in args.inputs:
        try:
            check_readable(path)
            paths = _output_paths(args, path)
            _check_outputs(args, paths, protected)
            if paths["folder"] in folders:
                raise InputError(f"{path}: same output folder {paths['folder']} as "
                                 f"{folders[paths['folder']]}; rename it, or separate it "
                                 "with another -o")
            folders[paths["folder"]] = path
            jobs.append((path, paths))
        except (AudioError, InputError) as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
    return jobs, failures


def _separate_each(separator, args: argparse.Namespace, jobs: list) -> int:
    """Separates every input in turn; returns how many failed (each named on stderr)."""
    from keras_unet.core.audio_io import AudioError

    failures = 0
    for path, paths in jobs:
        replaced = " (earlier results replaced)" if _earlier_results(args, paths) else ""
        try:
            _process(separator, args, path, paths)
        except (AudioError, InputError, ValueError) as error:
            message = str(error)
            print(f"error: {message if path in message else f'{path}: {message}'}",
                  file=sys.stderr)
            failures += 1
            continue
        except Exception as error:  # one broken input must not stop the others
            print(f"error: {path}: separation failed ({type(error).__name__}: "
                  f"{last_line(str(error))})", file=sys.stderr)
            failures += 1
            continue
        print(f"{path} -> {paths['folder']}{replaced}")
    return failures


def main(argv=None) -> int:
    """Separates the inputs; a stop signal ends it with one line (`stops_cleanly`)."""
    with stops_cleanly():
        return _separate_all(argv)


def _separate_all(argv) -> int:
    process_start = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_flags(parser, args)
    jobs, failures = _checked_inputs(args)
    if not jobs:
        return 2

    import_tensorflow_quietly()
    from keras_unet.core.saving import ModelFileError, load_model
    from keras_unet.separation.separator import Separator
    from keras_unet.separation.stopwatch import Stopwatch

    try:
        model = load_model(args.model)
    except ModelFileError as error:
        fail(f"--model {error}")
    stopwatch = Stopwatch()
    stopwatch.add("startup_model_load", process_start)
    separator = Separator(model, precision=args.precision, batch_size=args.batch_size,
                          progress=sys.stderr.isatty(), stopwatch=stopwatch)
    failures += _separate_each(separator, args, jobs)
    if args.timings:
        print(stopwatch.report(len(jobs), time.perf_counter() - process_start), file=sys.stderr)
    return 2 if failures else 0
