"""The architecture is a checked contract: import-linter's contracts in setup.cfg.

Layers, bottom to top: `keras_unet.core`, `pipelines`, the capabilities
(`keras_unet.separation` and `.export`; `.training`, `.evaluation` and
`.web` on them), the command lines (`keras_unet.__main__`, `keras_unet.cli`,
`keras_unet.app`,
`benchmarks`; the scripts train.py, separate.py, evaluate.py and export.py
import only from below by being outside every package). No module of a
package imports another in a cycle, and the core uses no dataset, scoring,
plotting or web library.
"""

import os
import shutil
import subprocess
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint_imports(root):
    """lint-imports on the packages under `root` with its setup.cfg: (exit code, report)."""
    done = subprocess.run([LINT_IMPORTS, "--no-cache", "--no-logo", "setup.cfg"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_imports_keep_to_the_layers():
    code, report = _lint_imports(REPOSITORY)
    assert code == 0, report[-4000:]
    assert "3 kept, 0 broken" in report


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The core importing a capability, planted in a copy: all three contracts break."""
    for package in ("keras_unet", "pipelines", "benchmarks"):
        shutil.copytree(os.path.join(REPOSITORY, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(REPOSITORY, "setup.cfg"), tmp_path)
    masking = tmp_path / "keras_unet" / "core" / "masking.py"
    masking.write_text(masking.read_text() + "\nfrom keras_unet.separation import separator\n")
    code, report = _lint_imports(tmp_path)
    assert code != 0
    assert "0 kept, 3 broken" in report, report[-4000:]
    assert "keras_unet.core is not allowed to import keras_unet.separation" in report
    assert "- keras_unet.core.masking -> keras_unet.separation.separator" in report
    assert "No cycles are allowed in keras_unet" in report  # core -> separation -> core
    assert "keras_unet.core is not allowed to import tqdm" in report  # through separator
