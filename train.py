"""Train the U-Net vocal separator: `python train.py --help` (keras_unet/cli/train.py)."""

import sys

from keras_unet.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
