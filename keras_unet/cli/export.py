"""Export a trained checkpoint as a SavedModel that TensorFlow alone can run.

    python export.py checkpoints/best_model.keras
    python export.py checkpoints/best_model.keras -o saved_models/unet --kind separator

Kinds (one folder each; `serving_default` is the first signature listed):
  mask       the model as trained: `mask` signature, mix_magnitude
             (batch, bins, frames) -> mask
  separator  end to end: `separate` signature, mono waveform at the model's
             rate -> vocals, accompaniment
  both       one folder with both signatures and one copy of the weights
Every export also has a `config` signature (the run's config JSON) and holds
config.json and model.keras, so separate.py and evaluate.py load it too.
"""

import argparse
import os
import zipfile
from typing import Optional

from keras_unet.cli import (ArgumentParser, add_batch_size_flag, check_batch_size, fail,
                            export_folder_problem, import_tensorflow_quietly)
from keras_unet.core.config import EXPORT_KINDS, KERAS_FILE, MODELS_DIR
from keras_unet.core.files import reason


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="export.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint",
                        help="a .keras checkpoint (or an exported SavedModel folder)")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="SavedModel folder to write (default: saved_models/<checkpoint "
                             "stem>, beside the code); replaced only if it is empty "
                             "or holds nothing but an earlier export of this project")
    parser.add_argument("--kind", choices=EXPORT_KINDS, default="both",
                        help="what to export (default: both)")
    add_batch_size_flag(parser)  # inside the separator graph
    parser.add_argument("--tflite", action="store_true",
                        help="also write DIR/model.tflite from the mask signature "
                             "(kinds mask and both)")
    return parser


def _default_output(checkpoint: str) -> str:
    stem = os.path.basename(os.path.normpath(checkpoint))
    if stem.endswith(".keras"):
        stem = stem[:-len(".keras")]
    return os.path.join(MODELS_DIR, stem)


def _checkpoint_problem(checkpoint: str) -> Optional[str]:
    """Why `checkpoint` cannot be a model file (None when it may be), without TensorFlow.

    A `.keras` file is a zip archive holding `config.json`; a SavedModel
    folder of this project holds such a `model.keras`.
    """
    if not os.path.exists(checkpoint):
        return f"{checkpoint}: no such checkpoint file or folder"
    archive = checkpoint
    if os.path.isdir(checkpoint):
        archive = os.path.join(checkpoint, KERAS_FILE)
        if not os.path.isfile(archive):
            return f"{checkpoint}: not a model folder of this project (no {KERAS_FILE})"
    try:
        if not zipfile.is_zipfile(archive):
            return f"{archive}: not a .keras model (not a complete zip archive)"
        with zipfile.ZipFile(archive) as contents:
            if "config.json" not in contents.namelist():
                return f"{archive}: not a .keras model (no config.json inside)"
    except (OSError, zipfile.BadZipFile) as error:
        return f"{archive}: cannot be read ({error})"
    return None


def _overwrites_input(checkpoint: str, output: str) -> bool:
    checkpoint, output = os.path.realpath(checkpoint), os.path.realpath(output)
    return checkpoint == output or checkpoint.startswith(output + os.sep)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    output = args.output or _default_output(args.checkpoint)
    problem = _checkpoint_problem(args.checkpoint)
    if problem:
        fail(problem)
    if _overwrites_input(args.checkpoint, output):
        fail(f"--output {output}: would overwrite the checkpoint {args.checkpoint}")
    check_batch_size(args)
    if args.tflite and args.kind == "separator":
        fail("--tflite needs the mask signature: use --kind mask or both")
    problem = export_folder_problem(output)
    if problem:
        fail(f"--output {output}: {problem}")
    import_tensorflow_quietly()

    from keras_unet.export.saved_model import export_saved_model, signature_names
    from keras_unet.core.saving import ModelFileError, load_model

    try:
        model = load_model(args.checkpoint)
        directory = export_saved_model(model, output, kind=args.kind,
                                       batch_size=args.batch_size, tflite=args.tflite)
    except ModelFileError as error:
        fail(str(error))
    except OSError as error:
        fail(f"--output {output}: cannot write ({reason(error)})")
    primary, *others = signature_names(args.kind)
    print(f"exported {args.checkpoint} ({args.kind}) to {directory}; signatures: "
          f"{primary} (serving_default), {', '.join(others)}")
    return 0

