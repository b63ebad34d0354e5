"""The core: what a trained model needs to run, importing nothing above it.

    config.py      every setting, frozen dataclasses; names of shared files and choices
    files.py       atomic file writes
    audio_io.py    decode, resample, write audio files (soundfile, ffmpeg, soxr)
    transforms.py  STFT, inverse STFT, magnitude, phase; the frame geometry
    model.py       the U-Net built from a config
    steps.py       the masked L1 loss and `MaskModel` with its train and test steps
    masking.py     the model on spectrograms of any length: patches, normalisation,
                   batches, cross-faded overlap-add (TensorFlow)
    saving.py      `.keras` files saved and loaded with their config

The input pipeline (`pipelines`) builds on it, the applications
(`keras_unet.apps`) on both, the command lines on top; the import-linter
contract in setup.cfg checks that no import goes the other way.
"""
