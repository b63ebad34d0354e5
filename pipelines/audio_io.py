"""Audio files in and out: decode, resample, write atomically.

soundfile (libsndfile) reads WAV, FLAC, OGG and MP3; anything else (M4A,
MUSDB's `.stem.mp4`) goes through ffmpeg via stempeg. soxr resamples.
Waveforms are float32 numpy arrays shaped (samples, channels), in [-1, 1]
full scale.

For long files, `open_audio` reads any range of samples on demand (WAV,
FLAC and AIFF straight from the file; compressed formats are decoded whole
first, as their seeking is not sample-exact), and `AudioWriter` writes in
blocks to a temporary name that `commit` renames.
"""

import os
import shutil
from typing import Optional

import numpy as np
import soundfile
import soxr

from keras_unet import files

FFMPEG_HINT = "ffmpeg is not installed; install it with `apt-get install -y ffmpeg`"


class AudioError(ValueError):
    """An audio file cannot be read or written; the message names it and why."""


def require_ffmpeg(path: str) -> None:
    """Raises AudioError naming `path` when ffmpeg is not on the PATH."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise AudioError(f"{path}: {FFMPEG_HINT}")


def check_readable(path: str) -> None:
    """Raises AudioError when `path` is missing, a directory or empty (a cheap first check)."""
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty")


def _read_with_ffmpeg(path: str):
    import stempeg

    require_ffmpeg(path)
    try:
        info = stempeg.Info(path)
        rate = int(info.sample_rate(0))
        samples, _ = stempeg.read_stems(path, stem_id=0, dtype=np.float32,
                                        sample_rate=rate, always_3d=False)
    except Exception as error:  # ffmpeg's failures surface as many types
        raise AudioError(f"{path}: not a readable audio file ({_first_line(error)})") from None
    return np.asarray(samples, np.float32).reshape(len(samples), -1), rate


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[-1][:200]


def read_audio(path: str):
    """Decodes an audio file.

    Args:
        path: any file soundfile or ffmpeg can decode.

    Returns:
        (samples, sample_rate_hz): float32 (samples, channels) and an int.

    Raises:
        AudioError: missing, empty, a directory, or not decodable audio.
    """
    path = os.fspath(path)
    check_readable(path)
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        samples, rate = _read_with_ffmpeg(path)
    if samples.size == 0:
        raise AudioError(f"{path}: holds no audio samples")
    return samples, int(rate)


def resample(samples: np.ndarray, rate_in_hz: int, rate_out_hz: int) -> np.ndarray:
    """Resamples with soxr (high quality). float32 (samples, channels) -> (n_out, channels)."""
    if rate_in_hz == rate_out_hz:
        return np.asarray(samples, np.float32)
    return soxr.resample(samples, rate_in_hz, rate_out_hz, quality="HQ").astype(np.float32)


def resampled_length(n_samples: int, rate_in_hz: int, rate_out_hz: int) -> int:
    """Length soxr gives for `n_samples` resampled from `rate_in_hz` to `rate_out_hz`."""
    return int(round(n_samples * rate_out_hz / rate_in_hz))


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Channel mean. (samples, channels) -> (samples,)."""
    return np.asarray(samples, np.float32).mean(axis=1)


OUTPUT_FORMATS = {"wav16": ("wav", "PCM_16"), "wav-float": ("wav", "FLOAT"),
                  "flac": ("flac", "PCM_24")}
"""Output format name -> (file extension, soundfile subtype)."""

_SEEKABLE_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "CAF")


class AudioReader:
    """Samples of one audio file, any range on demand.

    Attributes:
        path: the file.
        n_samples: samples per channel.
        n_channels: channels.
        sample_rate_hz: rate.
    """

    def __init__(self, path: str, sound_file=None, samples: Optional[np.ndarray] = None,
                 sample_rate_hz: int = 0):
        self.path = path
        self._file, self._samples = sound_file, samples
        if sound_file is not None:
            self.n_samples, self.n_channels = sound_file.frames, sound_file.channels
            self.sample_rate_hz = int(sound_file.samplerate)
        else:
            self.n_samples, self.n_channels = samples.shape
            self.sample_rate_hz = int(sample_rate_hz)

    def read(self, start: int, stop: int) -> np.ndarray:
        """float32 (stop - start, channels) for 0 <= start <= stop <= n_samples.

        Raises:
            AudioError: the file cannot be read there.
        """
        if self._file is None:
            return self._samples[start:stop]
        try:
            self._file.seek(start)
            samples = self._file.read(stop - start, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{self.path}: read failed ({_first_line(error)})") from None
        if len(samples) != stop - start:
            raise AudioError(f"{self.path}: file is truncated (expected {self.n_samples} "
                             "samples)")
        return samples

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def open_audio(path: str) -> AudioReader:
    """Opens an audio file for reading ranges of samples.

    Args:
        path: any file `read_audio` decodes.

    Returns:
        An `AudioReader`; close it (or use it in a `with`).

    Raises:
        AudioError: as `read_audio`.
    """
    path = os.fspath(path)
    check_readable(path)
    try:
        sound_file = soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        sound_file = None
    if sound_file is not None and sound_file.format in _SEEKABLE_FORMATS and sound_file.seekable():
        if sound_file.frames == 0:
            sound_file.close()
            raise AudioError(f"{path}: holds no audio samples")
        return AudioReader(path, sound_file=sound_file)
    if sound_file is not None:
        sound_file.close()
    samples, rate = read_audio(path)
    return AudioReader(path, samples=samples, sample_rate_hz=rate)


class AudioWriter:
    """Writes (samples, channels) audio block by block to a temporary file.

    `commit` renames it to `path`; `abort` (or leaving a `with` block
    without a `commit`) deletes it, so no partial file is ever left under `path`.

    Args:
        path: final file; the format follows `output_format`.
        sample_rate_hz: rate.
        n_channels: channels.
        output_format: a key of `OUTPUT_FORMATS`.

    Raises:
        AudioError: the folder cannot be written.
    """

    def __init__(self, path: str, sample_rate_hz: int, n_channels: int,
                 output_format: str = "wav16"):
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"`output_format` must be one of {sorted(OUTPUT_FORMATS)}. "
                             f"Received: {output_format!r}")
        extension, subtype = OUTPUT_FORMATS[output_format]
        self.path = os.fspath(path)
        try:
            self._temporary = files.temporary_beside(self.path, suffix=f".{extension}")
        except OSError as error:
            raise AudioError(f"{self.path}: cannot write ({error.strerror})") from None
        try:
            self._file = soundfile.SoundFile(self._temporary, mode="w",
                                             samplerate=sample_rate_hz, channels=n_channels,
                                             subtype=subtype, format=extension.upper())
        except Exception as error:  # libsndfile refuses some rate/channel/format mixes
            os.unlink(self._temporary)
            raise AudioError(f"{self.path}: cannot write ({_first_line(error)})") from None

    def write(self, samples: np.ndarray) -> None:
        """Appends float32 (samples, channels)."""
        try:
            self._file.write(samples)
        except Exception as error:
            self.abort()
            raise AudioError(f"{self.path}: cannot write ({_first_line(error)})") from None

    def commit(self) -> None:
        """Closes the file and renames it to `path`."""
        try:
            self._file.close()
            files.publish(self._temporary, self.path)
        except Exception as error:
            self.abort()
            raise AudioError(f"{self.path}: cannot write ({_first_line(error)})") from None

    def abort(self) -> None:
        """Closes and deletes the temporary file."""
        if not self._file.closed:
            self._file.close()
        files.discard(self._temporary)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.abort()  # nothing left to do after `commit`


def write_audio(path: str, samples: np.ndarray, sample_rate_hz: int,
                output_format: str = "wav16") -> None:
    """Writes a whole (samples, channels) array atomically, through `AudioWriter`.

    Raises:
        AudioError: the folder cannot be written.
    """
    samples = np.asarray(samples, np.float32).reshape(len(samples), -1)
    with AudioWriter(path, sample_rate_hz, samples.shape[1], output_format) as writer:
        writer.write(samples)
        writer.commit()
