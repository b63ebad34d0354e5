"""Audio files in and out: decode, resample, write atomically.

soundfile (libsndfile) reads WAV, FLAC, OGG and MP3; anything else (M4A,
MUSDB's `.stem.mp4`) goes through ffmpeg via stempeg. soxr resamples.
Waveforms are float32 numpy arrays shaped (samples, channels), in [-1, 1]
full scale.
"""

import os
import shutil
import tempfile

import numpy as np
import soundfile
import soxr

FFMPEG_HINT = "ffmpeg is not installed; install it with `apt-get install -y ffmpeg`"


class AudioError(ValueError):
    """An audio file cannot be read or written; the message names it and why."""


def require_ffmpeg(path: str) -> None:
    """Raises AudioError naming `path` when ffmpeg is not on the PATH."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise AudioError(f"{path}: {FFMPEG_HINT}")


def _check_readable(path: str) -> None:
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
    _check_readable(path)
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


def write_audio(path: str, samples: np.ndarray, sample_rate_hz: int,
                subtype: str = "PCM_16") -> None:
    """Writes (samples, channels) audio atomically: a temporary file, then rename.

    The format follows the extension (.wav, .flac); `subtype` is soundfile's
    (PCM_16, PCM_24, FLOAT). A killed process never leaves a truncated file.

    Raises:
        AudioError: the folder cannot be written.
    """
    folder = os.path.dirname(os.path.abspath(path))
    extension = os.path.splitext(path)[1]
    try:
        descriptor, temporary = tempfile.mkstemp(suffix=extension + ".part", dir=folder)
        os.close(descriptor)
    except OSError as error:
        raise AudioError(f"{path}: cannot write ({error.strerror})") from None
    try:
        soundfile.write(temporary, samples, sample_rate_hz, subtype=subtype,
                        format=extension.lstrip(".").upper() or "WAV")
        os.replace(temporary, path)
    except Exception as error:
        os.unlink(temporary)
        raise AudioError(f"{path}: cannot write ({_first_line(error)})") from None
