"""Full-band separation against the naive "separate at the model's rate, resample up".

Method: the bundled MUSDB clip (44.1 kHz stereo) is separated twice with the
same model: `Separator.separate` (the model's mask mapped onto the input's own
STFT grid and extended above the model's band, as separate.py does) and
`Separator.model_rate_separate` (separate at 8192 Hz, resample the vocals up,
accompaniment = mix - vocals, so everything above 4096 Hz lands in the
accompaniment). Both are scored with museval (BSS Eval v4, median over 1 s
windows), exactly as evaluate.py scores. The scores are deterministic, so
one run is enough.

    python benchmarks/full_band.py [--model PATH] [--precision float32]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import format_table  # noqa: E402
from keras_unet.cli import (ArgumentParser, add_model_flag, add_precision_flag,  # noqa: E402
                            fail, import_tensorflow_quietly)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python benchmarks/full_band.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flag(parser)
    add_precision_flag(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import_tensorflow_quietly()

    from pipelines import reference_tracks
    from keras_unet.evaluation import scoring
    from keras_unet.separation.separator import Separator
    from keras_unet.core.saving import ModelFileError, load_model

    try:
        separator = Separator(load_model(args.model), precision=args.precision)
    except ModelFileError as error:
        fail(str(error))
    track = reference_tracks.bundled_clip()
    methods = {"full band (separate.py)": separator.separate,
               "naive: 8192 Hz, resampled up": separator.model_rate_separate}
    rows, sdr = [], {}
    for name, separate in methods.items():
        vocals, accompaniment = separate(track.mixture, track.sample_rate_hz)
        scores = scoring.score(track.references,
                                  {"vocals": vocals, "accompaniment": accompaniment},
                                  track.sample_rate_hz)
        sdr[name] = (scores["vocals"]["SDR"], scores["accompaniment"]["SDR"])
        rows.append([name, f"{sdr[name][0]:.2f}", f"{sdr[name][1]:.2f}"])
    print(f"model: {args.model}; clip: {reference_tracks.bundled_clip_name()}, "
          f"{track.sample_rate_hz} Hz; BSS Eval v4 SDR (dB), median over 1 s windows")
    print(format_table(["method", "vocals SDR", "accompaniment SDR"], rows))
    (full, naive) = sdr.values()
    print(f"summary: full band minus naive: vocals {full[0] - naive[0]:+.2f} dB, "
          f"accompaniment {full[1] - naive[1]:+.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
