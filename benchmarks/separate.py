"""End-to-end speed and peak memory of `python separate.py`.

Method: a stereo 44.1 kHz 16-bit WAV (harmonics plus noise) is generated in
a temporary folder, and `separate.py` is run on it as a fresh subprocess, as
a user would: the wall time is from process start to both files written.
separate.py's hidden `--timings` flag prints the split (start-up and model
load, read and resample, model, reconstruction, writing), and its CPU time
(user + system, all cores) is kept beside the wall time: on a loaded machine
it shows the work done when the wall time does not. Each case runs
`--repeats` times and the median is reported. Peak memory is the maximum
resident set size of one subprocess (`os.wait4`'s rusage), for a 1-minute
and a 10-minute input: the separator works in blocks, so their ratio should
stay near 1.

Without --model, a randomly initialised default ("seed") model is used:
the weights do not change the speed. On a shared machine the figures are
indicative; rerun on a quiet one.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import describe_machine, format_table  # noqa: E402
from keras_unet.core.config import PRECISIONS  # noqa: E402
from keras_unet.separation.stopwatch import STAGES  # noqa: E402

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE_HZ = 44100
TARGET_SECONDS, TARGET_MEMORY_RATIO, TARGET_MEMORY_MB = 6.0, 1.3, 2048


def write_song(path: str, seconds: float, rate: int = RATE_HZ) -> None:
    """A stereo 16-bit WAV, written one minute at a time."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(0)
    block = 60 * rate
    with soundfile.SoundFile(path, "w", samplerate=rate, channels=2, subtype="PCM_16") as file:
        for start in range(0, int(seconds * rate), block):
            n = min(block, int(seconds * rate) - start)
            time_s = (start + np.arange(n)) / rate
            tone = sum(np.sin(2 * np.pi * f * time_s) for f in (110, 440, 1760, 7040)) / 8
            noise = 0.05 * rng.standard_normal((n, 2))
            file.write((tone[:, None] + noise).astype(np.float32))


def default_model(folder: str) -> str:
    """A randomly initialised default model saved in `folder`."""
    from keras_unet.core.config import RunConfig
    from keras_unet.core.model import build_model
    from keras_unet.core.saving import save_keras

    path = os.path.join(folder, "random_seed_model.keras")
    save_keras(build_model(RunConfig()), path)
    return path


def run_separate(song: str, model: str, out: str, precision: str) -> dict:
    """One `separate.py` process: wall seconds, its stage split and its peak RSS in MB."""
    command = [sys.executable, os.path.join(REPOSITORY, "separate.py"), song, "-o", out,
               "--model", model, "--precision", precision, "--timings",
               "--overwrite"]  # each repeat replaces the last one's files
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=environment)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"separate.py failed ({process.returncode}): {stderr.strip()[-500:]}")
    line = next(text for text in stderr.splitlines() if text.startswith("timings"))
    stages = {name: float(value) for name, value in re.findall(r"(\w+) ([\d.]+) s", line)}
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024, **stages}


def median_run(song: str, model: str, out: str, precision: str, repeats: int) -> dict:
    runs = [run_separate(song, model, out, precision) for _ in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model to time (default: a random-init seed model)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="separate.py --precision (default: auto)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per case; the median is reported (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="a run under a minute: one repeat, memory of 1 vs 3 minutes")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    repeats = 1 if args.quick else args.repeats
    long_minutes = 3 if args.quick else 10

    with tempfile.TemporaryDirectory(prefix="bench_separate_") as folder:
        model = args.model or default_model(folder)
        songs = {}
        for minutes in sorted({1, 3, long_minutes}):
            songs[minutes] = os.path.join(folder, f"song_{minutes}min.wav")
            write_song(songs[minutes], 60 * minutes)
        out = os.path.join(folder, "separated")
        results = {3: median_run(songs[3], model, out, args.precision, repeats)}
        for minutes in (1, long_minutes):
            if minutes not in results:
                results[minutes] = median_run(songs[minutes], model, out, args.precision, 1)

    headers = ["input", "wall s", "cpu s", "x real time", *[f"{stage} s" for stage in STAGES],
               "peak MB"]
    rows = [[f"{minutes} min stereo 44.1 kHz", f"{result['wall']:.2f}", f"{result['cpu']:.2f}",
             f"{60 * minutes / result['wall']:.0f}x",
             *[f"{result.get(stage, 0.0):.2f}" for stage in STAGES],
             f"{result['peak_mb']:.0f}"]
            for minutes, result in sorted(results.items())]
    print(f"machine: {describe_machine()}; precision {args.precision}; "
          f"model {'random-init seed' if args.model is None else args.model}; "
          f"median of {repeats} run(s) for 3 min, one run otherwise; "
          "cpu s is the process's user + system time, all cores")
    print(format_table(headers, rows))
    three, ratio = results[3], results[long_minutes]["peak_mb"] / results[1]["peak_mb"]
    peak = results[long_minutes]["peak_mb"]
    verdict = ("met" if three["wall"] < TARGET_SECONDS and ratio <= TARGET_MEMORY_RATIO
               and peak < TARGET_MEMORY_MB else "NOT met")
    print(f"separate: 3-min stereo 44.1 kHz in {three['wall']:.2f} s "
          f"({180 / three['wall']:.0f}x real time, target < {TARGET_SECONDS:.0f} s); "
          f"peak memory {long_minutes}-min / 1-min = {ratio:.2f} ({peak:.0f} MB; target <= "
          f"{TARGET_MEMORY_RATIO}, < {TARGET_MEMORY_MB} MB): targets {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
