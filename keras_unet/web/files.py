"""The web page's files: names safe to show and save, the mix for the player, FLAC copies."""

import os
import re

import numpy as np
import soundfile

from keras_unet.core.audio_io import STEM_SUFFIXES, integer_steps, open_audio, quantise
from keras_unet.core.files import atomic_path
from keras_unet.separation.writing import WRITE_BLOCK_SAMPLES


def display_name(name: str) -> str:
    """The last part of a browser's file name ("../../x.wav" and "C:\\x.wav" give "x.wav")."""
    return re.split(r"[\\/]", name or "")[-1].strip() or "upload"


def download_name(name: str, part: str, extension: str) -> str:
    """A download's file name, "<song> - <part>.<extension>", safe in any file system."""
    stem = name
    for suffix in STEM_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[:-len(suffix)]
            break
    else:
        stem = os.path.splitext(stem)[0]
    stem = re.sub(r"[^\w .,()&+-]", "_", stem).strip(" .") or "song"
    return f"{stem} - {part}.{extension}"


def input_suffix(name: str) -> str:
    """The upload's extension if it is a plain one (".mp3"), else "": a hint for decoders."""
    suffix = os.path.splitext(name)[1].lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def write_mix(input_path: str, mix_path: str, scale: float) -> None:
    """The mix as the outputs saw it (times the rescale factor), in 16 bits, for the player.

    Where the decoded mix exceeds full scale (a decoder's overshoot) it is
    clipped here only; the outputs keep it.
    """
    steps = integer_steps("wav16")
    with open_audio(input_path) as reader, atomic_path(mix_path, suffix=".wav") as temporary, \
            soundfile.SoundFile(temporary, "w", reader.sample_rate_hz, reader.n_channels,
                                subtype="PCM_16", format="WAV") as out:
        for start in range(0, reader.n_samples, WRITE_BLOCK_SAMPLES):
            samples = reader.read(start, min(reader.n_samples, start + WRITE_BLOCK_SAMPLES))
            quantised = quantise(np.float64(scale) * samples, steps)
            out.write(np.clip(quantised, -steps, steps - 1).astype(np.int16))


def flac_copy(wav_path: str, flac_path: str) -> None:
    """A 16-bit WAV compressed to FLAC without loss: the same samples, about half the size."""
    info = soundfile.info(wav_path)
    with atomic_path(flac_path, suffix=".flac") as temporary, \
            soundfile.SoundFile(temporary, "w", info.samplerate, info.channels,
                                subtype="PCM_16", format="FLAC") as out:
        for block in soundfile.blocks(wav_path, blocksize=WRITE_BLOCK_SAMPLES, dtype="int16",
                                      always_2d=True):
            out.write(block)
