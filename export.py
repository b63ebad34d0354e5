"""Export a trained checkpoint as a SavedModel: `python export.py --help`
(keras_unet/cli/export.py)."""

import sys

from keras_unet.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
