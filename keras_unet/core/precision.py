"""Numeric precision of the model: which one this machine should use, and how to switch.

"mixed_bfloat16" runs the hidden layers in bfloat16 (weights stay float32,
the mask is float32). It pays only where the hardware multiplies bfloat16
natively: x86 CPUs with AVX512-BF16 or AMX-BF16 (through TensorFlow's oneDNN
kernels), and GPUs of compute capability 8.0 or more (A100, RTX 30xx, L4,
H100...). "mixed_float16" is the same in float16, whose narrow range needs
loss scaling in training (`keras.optimizers.LossScaleOptimizer`, which
`keras_unet.training.run` adds): the fast choice on older GPUs (T4, V100),
which have float16 tensor cores but no bfloat16. "auto" picks by the device:
bfloat16 on new GPUs, float16 on older ones, bfloat16 on CPUs that have it,
float32 elsewhere, also where oneDNN is turned off (TensorFlow's plain
Eigen kernels emulate bfloat16, far slower than float32). The measured
speeds are in the README; `benchmarks/model.py` measures them again.
"""

import os

import keras

from keras_unet.core.config import PRECISIONS
from keras_unet.core.model import build_unet
from keras_unet.core.saving import run_config_of
from keras_unet.core.steps import MaskModel

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO_PATH = "/proc/cpuinfo"


def cpu_flags(path: str = CPUINFO_PATH) -> frozenset:
    """The feature flags of the first CPU in `/proc/cpuinfo` (empty where unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        return frozenset()
    return frozenset()


BF16_GPU_CAPABILITY = (8, 0)  # Ampere and later multiply bfloat16 natively


def gpu_compute_capability():
    """(major, minor) CUDA compute capability of the first GPU; None without a GPU.

    (0, 0) for a GPU that does not report one.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return tuple(details.get("compute_capability") or (0, 0))


def onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN CPU kernels are on (TF_ENABLE_ONEDNN_OPTS, default on)."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


def auto_precision() -> str:
    """The fastest precision this machine runs at the same quality (module docstring)."""
    capability = gpu_compute_capability()
    if capability is not None:
        return "mixed_bfloat16" if capability >= BF16_GPU_CAPABILITY else "mixed_float16"
    if set(BF16_CPU_FLAGS) & cpu_flags() and onednn_enabled():
        return "mixed_bfloat16"
    return "float32"


def resolve_precision(name: str) -> str:
    """The Keras dtype policy for a precision setting.

    Args:
        name: "auto", "float32", "mixed_bfloat16" or "mixed_float16".

    Returns:
        The name itself, or for "auto" `auto_precision()`.

    Raises:
        ValueError: `name` is not one of `keras_unet.core.config.PRECISIONS`.
    """
    if name not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: {name!r}")
    if name == "auto":
        return auto_precision()
    return name


def policy_of(model: keras.Model) -> str:
    """The dtype policy name of a model's hidden layers ("float32", "mixed_bfloat16", ...)."""
    for layer in model.layers:
        if layer.weights:
            return layer.dtype_policy.name
    return "float32"


def model_for_precision(model: MaskModel, precision: str) -> MaskModel:
    """The same network and weights under another precision.

    The model is rebuilt from its `run_config` (architecture) and its own
    input shape (bins, frames), with the hidden layers under the resolved
    dtype policy, and its weights copied over (weights are float32 under
    both policies, so the copy is exact). The mask stays float32.

    Args:
        model: a `MaskModel` from `keras_unet.core.model`, any precision.
        precision: "auto", "float32" or "mixed_bfloat16".

    Returns:
        `model` itself when it already has that precision, else a new `MaskModel`
        carrying the same `run_config`.

    Raises:
        ValueError: unknown `precision`.
    """
    policy = resolve_precision(precision)
    if policy_of(model) == policy:
        return model
    _, n_bins, n_frames = model.input_shape  # (batch, bins, frames)
    rebuilt = build_unet(run_config_of(model).model, n_bins=n_bins, n_frames=n_frames,
                         dtype_policy=policy)
    rebuilt.set_weights(model.get_weights())
    rebuilt.run_config = model.run_config
    return rebuilt
