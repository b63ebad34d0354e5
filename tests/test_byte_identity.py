"""The shipped model's outputs on the bundled clip, bit for bit as recorded.

A guard for refactoring: `separate.py` and the `separate` signature of a
fresh `export.py` SavedModel must write exactly the bytes they wrote when
the hashes below were recorded (first at commit 95a93c3, before the
packages were split by capability; again when the `voices` model was
shipped, with this file's commands). Both run in a subprocess, as a user runs them, at
float32 (`auto` would pick the arithmetic by the machine).

The hashes hold for one machine's float arithmetic: a CPU with other
vector instructions or another TensorFlow may round differently. Where
that is so, record them again from the commit above with this file's
commands, then refactor.
"""

import hashlib
import os
import subprocess
import sys

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(REPOSITORY, "saved_models", "default")

SEPARATED = {  # separate.py --precision float32, default format (wav16) and clip mode
    "vocals.wav": "8ab5aac9a955bff3dbcda65ba0672cd1957a016e95ec42186b721013f9592a88",
    "accompaniment.wav": "d8cf31b79c59002498b1b721460bde38df96856ba77924653e2923e0fc7ca4c5",
}
EXPORTED_VOCALS = "da294880a837dfee592d28bb072119db85ead2c282456bd9bc740ee484460a69"  # sha256 of the float32 bytes of `separate`'s vocals
EXPORTED_ACCOMPANIMENT = "6e4863b11cc9509de2a47e11022916a162b49cdc73ecb7c6aac8c445192d154c"

# The bundled clip's mixture, mono (mean of the channels), at the model's 8192 Hz
# through soxr, fed to the exported graph; prints the two outputs' hashes.
_EXPORTED_SCRIPT = """
import hashlib, sys
import numpy as np, soxr, stempeg, tensorflow as tf
stems, rate = stempeg.read_stems(stempeg.example_stem_path(), stem_id=0)
mono = soxr.resample(stems.mean(axis=-1).astype("float32"), rate, 8192).astype("float32")
outputs = tf.saved_model.load(sys.argv[1]).signatures["separate"](waveform=tf.constant(mono))
for name in ("vocals", "accompaniment"):
    data = np.ascontiguousarray(outputs[name].numpy(), dtype="<f4").tobytes()
    print(name, hashlib.sha256(data).hexdigest())
"""


def _sha256(path) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def _run(*command):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, *command], cwd=REPOSITORY, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def separated_hashes(output_dir) -> dict:
    import stempeg

    clip = stempeg.example_stem_path()
    _run("separate.py", clip, "-o", str(output_dir), "--precision", "float32")
    (folder,) = os.listdir(output_dir)
    return {name: _sha256(os.path.join(output_dir, folder, name)) for name in SEPARATED}


def exported_hashes(export_dir) -> dict:
    _run("export.py", os.path.join(MODEL, "model.keras"), "-o", str(export_dir),
         "--kind", "separator")
    lines = _run("-c", _EXPORTED_SCRIPT, str(export_dir)).split("\n")
    return dict(line.split() for line in lines if line.strip())


def test_separate_py_writes_the_recorded_bytes(tmp_path):
    assert separated_hashes(tmp_path / "separated") == SEPARATED


def test_exported_separate_signature_gives_the_recorded_bytes(tmp_path):
    assert exported_hashes(tmp_path / "export") == {"vocals": EXPORTED_VOCALS,
                                                    "accompaniment": EXPORTED_ACCOMPANIMENT}


if __name__ == "__main__":  # records the hashes: python tests/test_byte_identity.py DIR
    print(separated_hashes(os.path.join(sys.argv[1], "separated")))
    print(exported_hashes(os.path.join(sys.argv[1], "export")))
