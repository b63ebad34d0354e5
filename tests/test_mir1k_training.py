"""A short training run on real MIR-1K clips: the mask must not collapse, and it must separate.

Reads MIR-1K's training split from ../shared/data/MIR-1K (or $MIR1K_ROOT);
skipped where it is absent. Research-use data: read in place, never copied.
"""

import os

import pytest

from keras_unet.cli import train
from keras_unet.training.callbacks import read_history

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIR1K_ROOT = os.environ.get("MIR1K_ROOT") or os.path.join(REPO, "..", "shared", "data", "MIR-1K")

pytestmark = pytest.mark.skipif(not os.path.isdir(MIR1K_ROOT),
                                reason=f"MIR-1K is not at {MIR1K_ROOT} (set MIR1K_ROOT)")

SHORT_RUN = ["--epochs", "8", "--patches-per-epoch", "480", "--batch-size", "16",
             "--lr-schedule", "constant", "--precision", "auto", "--cache-dir", ""]


def test_a_short_run_on_real_clips_separates_without_collapsing(tmp_path):
    """240 steps. Started at a mask of 0.5 (--no-init-mask-bias), the mask's median over
    the validation songs is 0.023 after epoch 1 and 0.000 from epoch 2 to 8 (vocals
    SI-SDR gain -54 to -63 dB); started at the best constant it never drops below 0.03
    and separates from about 200 steps on."""
    argv = ["--mir1k-root", MIR1K_ROOT, "--save-dir", str(tmp_path / "run"),
            "--export-dir", str(tmp_path / "export"), *SHORT_RUN]
    assert train.main(argv) == 0
    history = read_history(str(tmp_path / "run" / "history.csv"))
    assert len(history) == 8
    assert min(row["val_mask_median"] for row in history) > 0.01
    # Separating: the vocals estimate beats the unprocessed mixture on songs it never saw.
    assert max(row["val_vocals_si_sdr_gain"] for row in history) > 2.0
