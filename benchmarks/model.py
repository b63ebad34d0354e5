"""Model throughput against the machine's own ceiling.

For each preset (seed, paper), precision (float32, mixed_bfloat16), mode
(inference, training step) and batch size, prints patches/s, seconds of
audio per second (x real time: one 513 x 128 patch is 128 x 768 / 8192 =
12 s of audio), FLOPs per patch, achieved GFLOP/s and its share of the
float32 matmul ceiling measured in the same run.

FLOPs per patch are counted from the layer shapes of the built model, one
multiply-add = 2 FLOPs, convolutions only:
    Conv2D:          2 * k * k * c_in * c_out * H_out * W_out
    Conv2DTranspose: 2 * k * k * c_in * c_out * H_in * W_in
(H, W the padded frequency and time sizes seen by the layer, so the zero
rows that pad 513 bins to a multiple of 2**depth are counted.) Bias adds,
activations, batch norm, padding and concatenation are not counted: they
are under 1% of the convolution FLOPs for both presets. A training step
counts the forward pass, the weight gradient (the same FLOPs as the
forward pass, layer by layer) and the input gradient (the same again,
except for the first encoder layer, whose input needs no gradient):
3 x forward - first layer. The optimizer update is not counted.

Ceiling: a float32 (2048 x 2048) @ (2048 x 2048) `tf.linalg.matmul`,
2 * 2048**3 FLOPs per product; dense matmul is the best case of the same
oneDNN/Eigen kernels, so "% ceiling" says how much of what the machine can
practically do the model gets.

Method: inference runs `model(x, training=False)` in a `tf.function` with a
fixed input signature (traced once); training runs `train_on_batch` of the
compiled `MaskModel` (Adam). Inputs are random magnitudes made once. Every
case (and the matmul) is built and warmed up first (untimed calls), then
all are timed in `--repeats` rounds, one repeat of each case per round,
each repeat enough calls to last about `--repeat-seconds`; figures are
medians over the rounds (benchmarks/common.py). Interleaving keeps the
ratios (bf16 / float32, achieved / ceiling) fair when other processes come
and go. "CPU ms/patch" is the process's CPU time per patch, all threads:
on a shared machine the wall-clock rates drop but it hardly moves. Run
from the repository root:

    python -m benchmarks.model            # full table (about 3 minutes on 2 cores)
    python -m benchmarks.model --quick    # seed preset only, under a minute
"""

import argparse
import sys

from benchmarks.common import (add_timing_arguments, calls_for, configure_threads,
                               describe_machine, format_table, matmul_function,
                               time_interleaved, usable_cores)
from keras_unet.core.config import PRECISIONS, PRESETS

MODES = ("inference", "training")
# float16 is emulated on CPUs (no float16 matmul): measured where it pays, on GPUs.
POLICIES = tuple(precision for precision in PRECISIONS
                 if precision not in ("auto", "mixed_float16"))


def conv_flops(model) -> tuple:
    """FLOPs of one patch through the model's convolutions (see module docstring).

    Args:
        model: a built functional Keras model.

    Returns:
        (forward FLOPs, FLOPs of the first convolution) per batch element.
    """
    import keras

    total, first = 0, None
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, height, width, _ = layer.input.shape  # (batch, bins, frames, c_in)
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = layer.output.shape  # (batch, bins, frames, c_out)
        else:
            continue
        kernel_h, kernel_w, c_in, c_out = layer.kernel.shape
        flops = 2 * kernel_h * kernel_w * c_in * c_out * height * width
        first = flops if first is None else first
        total += flops
    return total, first


def training_flops(model) -> int:
    """FLOPs of one patch through a training step: 3 x forward - first layer."""
    forward, first = conv_flops(model)
    return 3 * forward - first


def build_case(preset: str, precision: str, mode: str, batch: int, jit: bool) -> dict:
    """One case: its blocking callable and what one call does.

    Returns:
        dict with "function" (one call = one batch), "batch", "flops" (per
        patch) and "patch_seconds" (audio seconds in a patch).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_unet.core.config import ModelConfig, RunConfig
    from keras_unet.core.model import build_model

    run_config = RunConfig(model=ModelConfig.from_preset(preset))
    model = build_model(run_config, dtype_policy=precision)
    shape = (batch, run_config.stft.n_bins, run_config.stft.patch_frames)
    rng = np.random.default_rng(0)
    mix = tf.constant(rng.random(shape, dtype=np.float32))
    if mode == "inference":
        forward = tf.function(lambda x: model(x, training=False),
                              input_signature=[tf.TensorSpec(shape, tf.float32)],
                              jit_compile=jit)
        function = lambda: forward(mix).numpy()  # noqa: E731 - the timed call
        flops = conv_flops(model)[0]
    else:
        vocals = tf.constant(rng.random(shape, dtype=np.float32) * 0.5)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit)
        function = lambda: model.train_on_batch(mix, vocals)  # noqa: E731 - the timed call
        flops = training_flops(model)
    return {"preset": preset, "precision": precision, "mode": mode, "batch": batch,
            "function": function, "flops": flops,
            "patch_seconds": run_config.stft.patch_seconds}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.model",
        description="U-Net throughput (patches/s, x real time, GFLOP/s) against the "
                    "machine's float32 matmul ceiling. Figures are medians of repeats.")
    parser.add_argument("--presets", nargs="+", choices=PRESETS,
                        default=list(PRESETS), help="model presets (default: both)")
    parser.add_argument("--precisions", nargs="+", choices=POLICIES,
                        default=list(POLICIES), help="dtype policies (default: both)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="forward pass and/or training step (default: both)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8],
                        help="patches per call (default 8)")
    parser.add_argument("--jit", action="store_true",
                        help="XLA-compile the model function (slower on CPU; for comparison)")
    parser.add_argument("--matmul-size", type=int, default=2048,
                        help="side of the square matmul that measures the ceiling "
                             "(default 2048)")
    parser.add_argument("--repeat-seconds", type=float, default=1.0,
                        help="approximate length of one timed repeat (default 1.0)")
    add_timing_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:  # seed preset, 3 rounds of half-second repeats: ~30 s on 2 quiet cores
        args.presets, args.repeats, args.repeat_seconds = ["seed"], min(args.repeats, 3), 0.5
    problem = _check(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2

    configure_threads(args.intra_threads, args.inter_threads)
    cases = {(preset, precision, mode, batch): build_case(preset, precision, mode, batch,
                                                           args.jit)
             for preset in args.presets for mode in args.modes
             for batch in args.batch_sizes for precision in args.precisions}
    timed = {}
    matmul_dtypes = ["float32"] + (["bfloat16"] if "mixed_bfloat16" in args.precisions else [])
    for dtype in matmul_dtypes:
        matmul = matmul_function(args.matmul_size, dtype)
        matmul()
        timed[dtype] = (matmul, calls_for(matmul, args.repeat_seconds))
    for key, case in cases.items():
        for _ in range(args.warmup):
            case["function"]()
        timed[key] = (case["function"], calls_for(case["function"], args.repeat_seconds))
    timings = time_interleaved(timed, warmup=0, repeats=args.repeats)

    matmul_gflops = {dtype: 2.0 * args.matmul_size**3 / timings[dtype].median / 1e9
                     for dtype in matmul_dtypes}
    ceiling = matmul_gflops["float32"]
    # GFLOP per CPU-second of the matmul: the ceiling in CPU time, robust to other load.
    cpu_ceiling = 2.0 * args.matmul_size**3 / timings["float32"].median_cpu / 1e9
    rows = []
    for key, case in cases.items():
        timing = timings[key]
        patches_per_s = timing.rate(case["batch"])
        rows.append({**case, "patches_per_s": patches_per_s,
                     "realtime": patches_per_s * case["patch_seconds"],
                     "gflops": patches_per_s * case["flops"] / 1e9,
                     "cpu_ms": 1e3 * timing.median_cpu / case["batch"],
                     "cpu_share": case["flops"] * case["batch"] / timing.median_cpu / 1e9
                     / cpu_ceiling,
                     "spread": timing.spread()})
    print(f"machine: {describe_machine()}")
    print(f"ceiling: float32 matmul {args.matmul_size}^2 = {ceiling:.1f} GFLOP/s"
          f" (spread {timings['float32'].spread()})")
    if "bfloat16" in matmul_gflops:
        print(f"for reference: bfloat16 matmul = {matmul_gflops['bfloat16']:.1f} GFLOP/s"
              f" (spread {timings['bfloat16'].spread()}); % ceiling is always of float32")
    headers = ("preset", "precision", "mode", "batch", "patches/s", "x realtime",
               "GFLOP/patch", "GFLOP/s", "% ceiling", "CPU ms/patch", "% ceiling CPU",
               "spread")
    print(format_table(headers, [
        (r["preset"], r["precision"], r["mode"], r["batch"], f"{r['patches_per_s']:.1f}",
         f"{r['realtime']:.0f}", f"{r['flops'] / 1e9:.2f}", f"{r['gflops']:.1f}",
         f"{100 * r['gflops'] / ceiling:.0f}%", f"{r['cpu_ms']:.1f}",
         f"{100 * r['cpu_share']:.0f}%", r["spread"])
        for r in rows]))
    print(_summary(rows, ceiling, args, usable_cores()))
    return 0


def _check(args) -> str:
    """The first problem with the numeric flags, as one line ("" when none)."""
    limits = {"--repeats": (args.repeats, 1), "--warmup": (args.warmup, 0),
              "--matmul-size": (args.matmul_size, 1),
              "--batch-sizes": (min(args.batch_sizes), 1),
              "--intra-threads": (args.intra_threads, 0),
              "--inter-threads": (args.inter_threads, 0)}
    for flag, (value, lowest) in limits.items():
        if value < lowest:
            return f"{flag}: must be >= {lowest}, got {value}"
    if args.repeat_seconds <= 0:
        return f"--repeat-seconds: must be positive, got {args.repeat_seconds}"
    return ""


def _summary(rows, ceiling: float, args, cores: int) -> str:
    """One line: the first inference row, its share of the ceiling, the bf16 speed-up."""
    def find(precision, like=None):
        return next((r for r in rows if r["mode"] == "inference" and r["precision"] == precision
                     and (like is None or (r["preset"], r["batch"]) == (like["preset"],
                                                                         like["batch"]))),
                    None)

    base = find("float32") or find("mixed_bfloat16") or rows[0]
    line = (f"summary: {base['preset']} {base['precision']} {base['mode']} batch {base['batch']}:"
            f" {base['patches_per_s']:.1f} patches/s ({base['realtime']:.0f}x real time),"
            f" {100 * base['gflops'] / ceiling:.0f}% of the {ceiling:.0f} GFLOP/s matmul ceiling"
            f" ({100 * base['cpu_share']:.0f}% by CPU time)")
    bf16 = find("mixed_bfloat16", like=base)
    if bf16 is not None and base["precision"] == "float32":
        line += f"; mixed_bfloat16 {bf16['patches_per_s'] / base['patches_per_s']:.2f}x float32"
    return line + (f" (medians of {args.repeats} interleaved rounds, {cores} cores"
                   f"{', XLA' if args.jit else ''})")


if __name__ == "__main__":
    sys.exit(main())
