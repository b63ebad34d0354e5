"""Training input, on `keras_unet.core`: audio files -> waveforms -> tf.data batches of patches.

    sources.py    MUSDB18, MUSDB18-HQ, MIR-1K or the bundled clip -> vocals and accompaniment
    mir1k.py      MIR-1K's clips, singers, songs and standard split
    patches.py    where a training patch lies, the crop that makes it, its normalised spectra
    augment.py    gain, remix, channel swap: small pure functions of uniform draws
    datasets.py   the tf.data datasets from those stages: make_train_dataset,
                  make_validation_dataset, and the validation tiles
    reference_tracks.py  songs with their true sources at their own rate, for scoring
"""
