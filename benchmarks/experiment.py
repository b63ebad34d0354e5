"""Trains a named recipe for a fixed budget, scores it, and appends one row to the ledger.

    python benchmarks/experiment.py --recipe pitch --mir1k-root ../shared/data/MIR-1K \
        --steps 600

A recipe is a set of `train.py` flags (`RECIPES`). Each experiment trains it
twice on MIR-1K's training singers, with the same budget:

- the standard run: a share of each singer's songs held out (what
  `train.py --mir1k-root` does), scored on those validation songs: the
  singers it trained on;
- the cross-singer run: every song of one singer (`--validation-singer`,
  abjones by default) held out, trained on the other's, scored on that
  voice the model never heard: the proxy for the 17 unseen test singers.

Each run is scored by its best epoch's validation vocals SI-SDR gain
(`history.csv`) and by `evaluate.py --subset validation` (BSS Eval v3 GNSDR,
the MIR-1K protocol); the standard run's best model also separates the
MUSDB clip bundled with stempeg (`evaluate.py`, BSS Eval v4 vocals SDR,
median): a cross-dataset score. The row (recipe, flags, budget, wall time,
hardware, scores, the command) goes to `benchmarks/experiments.csv`, every
run, winner or loser, so the next person sees what was tried.

Only the standard library is imported: the training and scoring run as the
project's own command lines, in subprocesses, exactly as a user runs them.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEDGER = os.path.join(REPOSITORY, "benchmarks", "experiments.csv")
FINE_STFT = ("--hop-samples", "256")

# The recipes: flags added to train.py's. "seed" is the brief's recipe as it
# trains by default on MIR-1K.
RECIPES = {
    "seed": (),
    "pitch": ("--augment-pitch-semitones", "3"),
    "fine-stft": FINE_STFT,
    "both-sources": ("--loss-sources", "both"),
    "pitch+fine-stft": ("--augment-pitch-semitones", "3") + FINE_STFT,
    "pitch+fine-stft+both-sources": ("--augment-pitch-semitones", "3", "--loss-sources",
                                     "both") + FINE_STFT,
}

COLUMNS = ("date", "recipe", "flags", "steps", "batch_size", "train_seconds", "hardware",
           "validation_si_sdr_gain", "validation_gnsdr", "cross_singer", "cross_si_sdr_gain",
           "cross_gnsdr", "bundled_clip_vocals_sdr", "command")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    parser.add_argument("--mir1k-root", required=True, metavar="DIR")
    parser.add_argument("--steps", type=int, default=600,
                        help="training steps of each of the two runs (default: 600)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6,
                        help="epochs the steps are spread over, one validation each "
                             "(default: 6)")
    parser.add_argument("--validation-singer", default="abjones",
                        help="the singer the cross-singer run holds out (default: abjones)")
    parser.add_argument("--work-dir", default=os.path.join(REPOSITORY, "checkpoints",
                                                           "experiments"),
                        help="where the runs' checkpoints and scores go")
    parser.add_argument("--ledger", default=LEDGER, help="the CSV the row is appended to")
    return parser


def run(command: list) -> None:
    """Runs a project command line from the repository, failing loudly."""
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, cwd=REPOSITORY, check=True)


def train(args, flags: list, save_dir: str, extra: tuple = ()) -> float:
    """One training run of the recipe; returns its wall-clock seconds."""
    patches_per_epoch = args.steps * args.batch_size // args.epochs
    command = [sys.executable, "train.py", "--mir1k-root", args.mir1k_root,
               "--epochs", str(args.epochs), "--patches-per-epoch", str(patches_per_epoch),
               "--batch-size", str(args.batch_size), "--precision", "auto",
               "--save-dir", save_dir, "--export-dir", os.path.join(save_dir, "export"),
               *flags, *extra]
    started = time.monotonic()
    run(command)
    return time.monotonic() - started


def best_gain(save_dir: str) -> float:
    """The highest validation vocals SI-SDR gain over the run's epochs (dB)."""
    with open(os.path.join(save_dir, "history.csv"), encoding="utf-8") as file:
        return max(float(row["val_vocals_si_sdr_gain"]) for row in csv.DictReader(file))


def evaluate(model: str, output: str, mir1k_root: str = None) -> dict:
    """evaluate.py on the model's MIR-1K validation songs (or the bundled clip): scores.json."""
    command = [sys.executable, "evaluate.py", "--model", model, "-o", output, "--jobs", "2"]
    if mir1k_root is not None:
        command += ["--mir1k-root", mir1k_root, "--subset", "validation"]
    run(command)
    with open(os.path.join(output, "scores.json"), encoding="utf-8") as file:
        return json.load(file)


def hardware() -> str:
    """The CPU's model name and core count (what the wall time was measured on)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            name = next(line.split(":", 1)[1].strip() for line in file
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores, no GPU"


def append_row(path: str, row: dict) -> None:
    """Appends `row` to the ledger, writing the header first into a new file."""
    new = not os.path.exists(path)
    with open(path, "a", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    flags = list(RECIPES[args.recipe])
    folder = os.path.join(os.path.abspath(args.work_dir), args.recipe)
    standard, cross = os.path.join(folder, "standard"), os.path.join(folder, "cross")
    seconds = train(args, flags, standard)
    train(args, flags, cross, ("--validation-singer", args.validation_singer))

    gnsdr = {}
    for name, save_dir in (("standard", standard), ("cross", cross)):
        scores = evaluate(os.path.join(save_dir, "best_model.keras"),
                          os.path.join(save_dir, "scores"), args.mir1k_root)
        gnsdr[name] = scores["bss_eval_v3"]["global"]["model"]["vocals"]["GNSDR"]
    clip = evaluate(os.path.join(standard, "best_model.keras"),
                    os.path.join(standard, "clip_scores"))
    row = {"date": datetime.date.today().isoformat(), "recipe": args.recipe,
           "flags": " ".join(flags), "steps": args.steps, "batch_size": args.batch_size,
           "train_seconds": round(seconds), "hardware": hardware(),
           "validation_si_sdr_gain": round(best_gain(standard), 2),
           "validation_gnsdr": round(gnsdr["standard"], 2),
           "cross_singer": args.validation_singer,
           "cross_si_sdr_gain": round(best_gain(cross), 2),
           "cross_gnsdr": round(gnsdr["cross"], 2),
           "bundled_clip_vocals_sdr": round(clip["median"]["model"]["vocals"]["SDR"], 2),
           "command": shlex.join(["python", "benchmarks/experiment.py", *(argv or sys.argv[1:])])}
    append_row(args.ledger, row)
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
