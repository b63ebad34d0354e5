"""The core: what a trained model needs to run, importing nothing above it.

    config.py      every setting, frozen dataclasses; names of shared files and choices
    files.py       atomic file writes
    messages.py    one line of an error message
    audio_io.py    decode, resample, quantise, write audio files (soundfile, ffmpeg, soxr)
    transforms.py  STFT, inverse STFT, magnitude, phase; the frame geometry
    model.py       the U-Net built from a config
    steps.py       the masked L1 loss and `MaskModel` with its train and test steps
    masking.py     the model on spectrograms of any length: patches, normalisation,
                   batches, cross-faded overlap-add (TensorFlow)
    saving.py      `.keras` files saved and loaded with their config
    precision.py   which precision a machine should use; a model rebuilt under another

The input pipeline (`pipelines`) builds on it, the capabilities
(`keras_unet.separation`, `.export`, `.training`, `.evaluation`, `.web`) on
both, the command lines (`keras_unet.cli`) on top; the import-linter
contract in setup.cfg checks that no import goes the other way.
"""
