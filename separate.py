"""Separate songs into vocals and accompaniment: `python separate.py --help`
(keras_unet/cli/separate.py)."""

from keras_unet.cli import exit_at_once
from keras_unet.cli.separate import main

if __name__ == "__main__":
    exit_at_once(main())
