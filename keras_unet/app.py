"""`python -m keras_unet.app`: the web page's server (its command is `keras_unet.cli.serve`)."""

import sys

from keras_unet.cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
