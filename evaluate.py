"""Score a model's separation with BSS Eval: `python evaluate.py --help`
(keras_unet/cli/evaluate.py)."""

import sys

from keras_unet.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
