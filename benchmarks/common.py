"""What the benchmark scripts share: timing, the machine, the table.

Method (every script): a callable is run `warmup` times untimed (tracing,
oneDNN kernel selection, allocator growth), then timed `repeats` times, each
repeat running it `calls` times back to back; a figure is the median over
the repeats, with the spread (slowest / fastest repeat) kept for the reader.
Medians, not means, because other processes on a shared machine only ever
add time. When several cases are compared, `time_interleaved` times them in
rounds (one repeat of each case per round), so a load that comes and goes
slows all of them alike and their ratios stay fair.

Each repeat records wall-clock time and the process's CPU time. On a busy
machine the wall-clock figures drop while CPU-seconds per item hardly move;
a large gap between `cores / cpu time` and the wall-clock rate says the run
was disturbed (or the work does not use every core).

Only the standard library is imported at module level, so a script's
`--help` answers before TensorFlow loads; `matmul_gflops` and
`configure_threads` import TensorFlow when called.
"""

import argparse
import dataclasses
import math
import os
import platform
import statistics
import time
from typing import Callable, Dict, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call of a timed callable.

    Args:
        seconds: wall-clock seconds per call of each repeat.
        cpu_seconds: CPU seconds (all threads of this process) per call of
            each repeat.
    """

    seconds: tuple
    cpu_seconds: tuple = ()

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def fastest(self) -> float:
        return min(self.seconds)

    @property
    def slowest(self) -> float:
        return max(self.seconds)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu_seconds)

    def rate(self, items_per_call: float) -> float:
        """Items per second at the median (patches/s, seconds of audio/s, FLOP/s)."""
        return items_per_call / self.median

    def spread(self) -> str:
        """The slowest over the fastest repeat, as "+N%": how noisy the figure is."""
        return f"+{100.0 * (self.slowest / self.fastest - 1.0):.0f}%"


def time_calls(function: Callable[[], object], warmup: int = 2, repeats: int = 5,
               calls: int = 1) -> Timing:
    """Times `function()` after warm-up; see the module docstring for the method.

    `function` must block until its work is done (return a NumPy value, or a
    tensor whose `.numpy()` it called), so the clock sees the whole call.

    Args:
        function: the work to time, no arguments.
        warmup: untimed calls first.
        repeats: timed repeats (the median is taken over these).
        calls: calls per repeat, to amortise the clock on short calls.

    Returns:
        The `Timing`, in seconds per call.

    Raises:
        ValueError: `repeats` or `calls` below 1, or `warmup` negative.
    """
    return time_interleaved({"case": (function, calls)}, warmup, repeats)["case"]


def time_interleaved(cases: Dict[str, Tuple[Callable[[], object], int]], warmup: int = 2,
                     repeats: int = 5) -> Dict[str, Timing]:
    """Times several cases in rounds: warm-up of each, then `repeats` rounds of one repeat each.

    Args:
        cases: name -> (function, calls per repeat); functions as in `time_calls`.
        warmup: untimed calls of each function first.
        repeats: rounds.

    Returns:
        name -> `Timing` in seconds per call.

    Raises:
        ValueError: `repeats` or a `calls` below 1, or `warmup` negative.
    """
    if repeats < 1 or warmup < 0 or any(calls < 1 for _, calls in cases.values()):
        raise ValueError(f"need repeats >= 1, calls >= 1, warmup >= 0. Received: "
                         f"repeats={repeats}, warmup={warmup}, "
                         f"calls={[calls for _, calls in cases.values()]}")
    for function, _ in cases.values():
        for _ in range(warmup):
            function()
    seconds = {name: [] for name in cases}
    cpu_seconds = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (function, calls) in cases.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(calls):
                function()
            seconds[name].append((time.perf_counter() - start) / calls)
            cpu_seconds[name].append((time.process_time() - cpu_start) / calls)
    return {name: Timing(tuple(seconds[name]), tuple(cpu_seconds[name])) for name in cases}


def calls_for(function: Callable[[], object], target_seconds: float) -> int:
    """Calls per repeat so that a repeat lasts about `target_seconds` (one call is timed)."""
    start = time.perf_counter()
    function()
    return max(1, math.ceil(target_seconds / (time.perf_counter() - start)))


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else `platform.processor()`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine() -> str:
    """One line: CPU model, cores usable by this process, bfloat16 support."""
    from keras_unet.core.precision import BF16_CPU_FLAGS, cpu_flags

    bf16 = sorted(set(BF16_CPU_FLAGS) & cpu_flags()) or ["no bf16 flags"]
    return f"{cpu_model()}, {usable_cores()} cores, {', '.join(bf16)}"


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """Sets TensorFlow's thread pools (0 keeps its default: one per core).

    Must run before TensorFlow executes its first op.
    """
    import tensorflow as tf

    if intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def matmul_function(size: int = 2048, dtype: str = "float32") -> Callable[[], object]:
    """One (size x size) @ (size x size) graph-mode matmul, blocking; 2 * size**3 FLOPs.

    Dense matmul is the best case of the same oneDNN/Eigen kernels the model
    runs on, so its rate is the machine's practical ceiling.

    Args:
        size: matrix side.
        dtype: "float32" or "bfloat16".
    """
    import tensorflow as tf

    left = tf.random.stateless_normal((size, size), seed=(1, 2), dtype=tf.float32)
    right = tf.random.stateless_normal((size, size), seed=(3, 4), dtype=tf.float32)
    left, right = tf.cast(left, dtype), tf.cast(right, dtype)
    # Reduced to a scalar inside the graph, so fetching the result costs nothing.
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.linalg.matmul(left, right),
                                                        tf.float32)))
    return lambda: product().numpy()


def matmul_gflops(size: int = 2048, dtype: str = "float32", warmup: int = 2,
                  repeats: int = 5) -> float:
    """GFLOP/s of `matmul_function(size, dtype)` at the median of `repeats` products."""
    timing = time_calls(matmul_function(size, dtype), warmup=warmup, repeats=repeats)
    return 2.0 * size**3 / timing.median / 1e9


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns padded to their widest cell, numbers right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[i]) for row in cells))
              for i, header in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in cells) for i in range(len(headers))]

    def line(values):
        return "  ".join(value.rjust(width) if is_number else value.ljust(width)
                         for value, width, is_number in zip(values, widths, numeric)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line([str(h) for h in headers]), rule, *(line(row) for row in cells)])


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%x").lstrip("+"))
    except ValueError:
        return False
    return True


def add_timing_arguments(parser: argparse.ArgumentParser, repeats: int = 5,
                         warmup: int = 2) -> None:
    """Adds --quick, --repeats, --warmup, --intra-threads, --inter-threads."""
    parser.add_argument("--quick", action="store_true",
                        help="a run under a minute: fewer cases and repeats")
    parser.add_argument("--repeats", type=int, default=repeats,
                        help=f"timed repeats per case; the median is reported (default {repeats})")
    parser.add_argument("--warmup", type=int, default=warmup,
                        help=f"untimed calls before timing (default {warmup})")
    parser.add_argument("--intra-threads", type=int, default=0,
                        help="TensorFlow intra-op threads (default 0: one per core)")
    parser.add_argument("--inter-threads", type=int, default=0,
                        help="TensorFlow inter-op threads (default 0: TensorFlow's choice)")
