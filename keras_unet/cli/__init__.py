"""The command lines: one `main` per command, and what they share, declared once.

    train.py     train.py: a training run from flags
    separate.py  separate.py: song files into vocals and accompaniment files
    evaluate.py  evaluate.py: BSS Eval scores of a model
    export.py    export.py: a checkpoint as a SavedModel
    serve.py     python -m keras_unet.app: the web page's server

This module holds their shared parts: the flags every command that runs a
model takes (`--model`, `--precision`, `--batch-size`; separate.py's output
`--format` and `--clip-mode`), flags built from the config dataclasses so
they cannot drift (each field becomes `--field-name` with the field's
default, its type, and the help text of its `Args:` entry in the class
docstring; booleans take `--flag / --no-flag`; the parsed values go back
through the dataclass, whose `__post_init__` validates them), and the one
error path: one line on stderr, exit code 2.
"""

import argparse
import contextlib
import dataclasses
import inspect
import os
import re
import signal
import sys
import typing

from keras_unet.core.audio_io import OUTPUT_FORMATS
from keras_unet.core.config import DEFAULT_MODEL, INFERENCE_BATCH_SIZE, PRECISIONS
from keras_unet.separation.writing import CLIP_MODES, DEFAULT_CLIP_MODE, DEFAULT_OUTPUT_FORMAT
from keras_unet.core.files import folder_problem
from keras_unet.export.folder import replace_problem


def _argument_docs(cls) -> dict:
    """{field name: help text} from the `Args:` section of a class docstring."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Args:", 1)[-1] if "Args:" in doc else ""
    docs, current = {}, None
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.startswith("        "):
            docs[current] += " " + line.strip()
    return docs


def _field_type(field: dataclasses.Field):
    kind = field.type if not isinstance(field.type, str) else eval(field.type, vars(typing))
    arguments = [a for a in typing.get_args(kind) if a is not type(None)]
    return arguments[0] if arguments else kind


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (then exit code 2)."""

    def error(self, message):
        fail(f"{self.prog}: {message}")


def int_or_all(text: str):
    """An argparse type: a whole number, or "all" (None: no limit)."""
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}")


def add_dataclass_flags(parser, cls, skip=(), renames=None, choices=None, defaults=None,
                        types=None, later=None):
    """Adds a flag per field of `cls`; returns the field names added.

    Args:
        parser: an argparse parser or argument group.
        cls: a config dataclass.
        skip: field names to leave out.
        renames: {field name: flag name without dashes} for short aliases.
        choices: {field name: allowed values}.
        defaults: {field name: default overriding the dataclass's}.
        types: {field name: argparse type overriding the field's own}.
        later: {field name: text}: flags whose default (None here) the
            caller settles after parsing, the text saying how, for the help.
    """
    renames, choices, defaults = renames or {}, choices or {}, defaults or {}
    types, later = types or {}, later or {}
    docs = _argument_docs(cls)
    added = []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + renames.get(field.name, field.name).replace("_", "-")
        default = None if field.name in later else defaults.get(field.name, field.default)
        kind = types.get(field.name) or _field_type(field)
        shown = later.get(field.name, "all" if default is None and kind is int_or_all else default)
        help_text = f"{docs.get(field.name, '')} (default: {shown})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, dest=field.name, default=default, help=help_text,
                                action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(flag, dest=field.name, default=default, type=kind,
                                choices=choices.get(field.name), help=help_text,
                                metavar=field.name.upper())
        added.append(field.name)
    return added


def dataclass_from_args(cls, args: argparse.Namespace, **overrides):
    """An instance of `cls` from the parsed flags named after its fields."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(cls)
              if hasattr(args, field.name)}
    return cls(**{**values, **overrides})


def add_model_flag(parser) -> None:
    """--model: the model a command runs, the shipped one by default."""
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="SavedModel folder or .keras file (default: the shipped "
                             "saved_models/default)")


def add_precision_flag(parser) -> None:
    """--precision: the model's arithmetic, `auto` choosing by the device."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="model arithmetic; auto picks by the device: bfloat16 on GPUs "
                             "of compute capability 8+ and CPUs with native bfloat16, "
                             "float16 on older GPUs, else float32 (default: auto)")


def add_batch_size_flag(parser) -> None:
    """--batch-size: patches per model call (checked by `check_batch_size`)."""
    parser.add_argument("--batch-size", type=int, default=INFERENCE_BATCH_SIZE,
                        help=f"patches per model call (default: {INFERENCE_BATCH_SIZE})")


def add_output_flags(parser) -> None:
    """--format and --clip-mode: how separated files are written (`check_output_flags`)."""
    parser.add_argument("--format", choices=tuple(OUTPUT_FORMATS),
                        default=DEFAULT_OUTPUT_FORMAT,
                        help="wav16 (16-bit WAV), wav-float (32-bit float WAV) or flac "
                             f"(24-bit) (default: {DEFAULT_OUTPUT_FORMAT})")
    parser.add_argument("--clip-mode", choices=CLIP_MODES, default=DEFAULT_CLIP_MODE,
                        help="samples that do not fit the format: rescale the file, clamp "
                             f"them, or none (wav-float only) (default: {DEFAULT_CLIP_MODE})")


def check_batch_size(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        fail(f"argument --batch-size: must be >= 1, got {args.batch_size}")


def check_output_flags(args: argparse.Namespace) -> None:
    if args.clip_mode == "none" and args.format != "wav-float":
        fail(f"argument --clip-mode none: writes samples beyond full scale, which "
             f"--format {args.format} cannot hold; use --format wav-float")


def check_model_exists(path: str) -> None:
    """Fails unless the --model path exists; answered before TensorFlow loads."""
    if not os.path.exists(path):
        fail(f"--model {path}: no such model file or folder"
             + (" (train one with train.py, or pass --model)" if path == DEFAULT_MODEL else ""))


def fail(message: str, code: int = 2) -> typing.NoReturn:
    """Prints one line on stderr and exits: the CLIs' only way to report bad input."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def export_folder_problem(directory: str) -> typing.Optional[str]:
    """Why an export cannot be written to `directory`, or None: asked before any long work.

    The folder must be absent, empty or an earlier export of this project
    (`keras_unet.export.folder`); it and its parent, where the new export is
    built before it is renamed into place, writable or creatable.
    """
    return (replace_problem(directory) or folder_problem(directory)
            or folder_problem(os.path.dirname(os.path.abspath(directory))))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What a terminal (Ctrl-C, a closed window) or a service manager sends to stop a command."""


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; raised where the command is, so every `finally` cleans up.

    Args:
        signal_number: the signal; the command exits with 128 + it (130 for
            SIGINT, 143 for SIGTERM, 129 for SIGHUP), as a shell reports it.
    """

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number


@contextlib.contextmanager
def stops_cleanly():
    """Within the block, SIGINT, SIGTERM and SIGHUP end the command with one line.

    Their default action kills the process at once, leaving its temporary
    files; here each raises `Stopped` in the main thread, so the code that
    made a temporary file removes it on the way out. Further signals are
    ignored while that runs. The previous handlers come back after the block.
    """
    def stop(signal_number, _frame):
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)  # the clean-up runs once, to its end
        raise Stopped(signal_number)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    except Stopped as stopped:
        name = signal.Signals(stopped.signal_number).name
        fail(f"stopped by {name}; no partial file was left", code=128 + stopped.signal_number)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def exit_at_once(code: int) -> typing.NoReturn:
    """Ends a command whose outputs are all written, skipping the interpreter's teardown.

    Tearing down TensorFlow's objects and modules at exit takes about 1 s on
    2 cores, 15% of separating a 3-minute song, after the work is done.
    Standard output and error are flushed first; every file a command
    writes is closed (and renamed into place) before its `main` returns, so
    nothing is lost. Only for a `main` that returned normally.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def import_tensorflow_quietly():
    """Imports TensorFlow and finds its devices without its C++ start-up chatter.

    TensorFlow 2.21 prints its oneDNN / CUDA notices before absl logging is
    initialised, so TF_CPP_MIN_LOG_LEVEL cannot silence them; standard error
    is pointed at /dev/null for the import alone. Python exceptions still
    surface after it is restored. Later C++ logs keep TF_CPP_MIN_LOG_LEVEL
    (3 by default here: the CLIs report errors themselves).

    Returns:
        The `tensorflow` module.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf
