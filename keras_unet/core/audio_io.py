"""Audio files in and out: decode, resample, write atomically.

soundfile (libsndfile) reads WAV, FLAC, OGG and MP3; anything else (M4A,
MUSDB's `.stem.mp4`: its first audio stream) goes through an ffmpeg
subprocess that writes raw float32 to a pipe. soxr resamples. Waveforms are
float32 numpy arrays shaped (samples, channels), in [-1, 1] full scale.

For long files, `open_audio` reads any range of samples on demand in memory
that does not grow with the file: WAV, FLAC and AIFF straight from the file;
compressed formats, whose seeking is not sample-exact, decoded forward in
blocks with a bounded look-back (`StreamedAudioReader`). `AudioWriter`
writes in blocks to a temporary name that `commit` renames.
"""

import collections
import json
import os
import shutil
import subprocess
import tempfile
from typing import Callable, Iterator, Optional, Tuple

import numpy as np
import soundfile
import soxr

from keras_unet.core import files
from keras_unet.core.messages import error_line, last_line

STREAM_BLOCK_SAMPLES = 1 << 16
"""Samples per channel decoded at a time from a compressed file (1.5 s at 44.1 kHz)."""

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


def _probe_with_ffmpeg(path: str) -> Tuple[int, int]:
    """(sample_rate_hz, channels) of the first audio stream, by ffprobe.

    Raises:
        AudioError: ffmpeg is missing, or the file holds no decodable audio.
    """
    require_ffmpeg(path)
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate,channels", "-of", "json", path],
        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    streams = json.loads(done.stdout or "{}").get("streams") if done.returncode == 0 else None
    if not streams:
        cause = last_line(done.stderr) or "no audio stream"
        raise AudioError(f"{path}: not a readable audio file ({cause})")
    return int(streams[0]["sample_rate"]), int(streams[0]["channels"])


def _ffmpeg_blocks(path: str, n_channels: int) -> Iterator[np.ndarray]:
    """Decodes the first audio stream from its start: float32 (samples, channels) blocks.

    ffmpeg writes raw float32 at the stream's own rate and channel count to a
    pipe; closing the generator early stops it.

    Raises:
        AudioError: ffmpeg fails to decode the file.
    """
    frame_bytes = 4 * n_channels
    with tempfile.TemporaryFile() as errors:  # a file, so a chatty ffmpeg cannot block
        process = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "f32le",
             "-acodec", "pcm_f32le", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        try:
            while True:
                data = process.stdout.read(STREAM_BLOCK_SAMPLES * frame_bytes)
                if not data:
                    break
                yield np.frombuffer(data, np.float32).reshape(-1, n_channels)
            if process.wait() != 0:
                errors.seek(0)
                cause = last_line(errors.read().decode("utf-8", "replace"))
                raise AudioError(f"{path}: not a readable audio file ({cause or 'ffmpeg failed'})")
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()


def _soundfile_blocks(path: str) -> Iterator[np.ndarray]:
    """Decodes a file libsndfile opens from its start: float32 (samples, channels) blocks.

    Raises:
        AudioError: the decoder fails part way.
    """
    try:
        yield from soundfile.blocks(path, blocksize=STREAM_BLOCK_SAMPLES, dtype="float32",
                                    always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"{path}: read failed ({error_line(error)})") from None


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
        rate, n_channels = _probe_with_ffmpeg(path)
        samples = np.concatenate([np.zeros((0, n_channels), np.float32),
                                  *_ffmpeg_blocks(path, n_channels)])
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


STEM_SUFFIXES = (".stem.mp4", ".stem.m4a")
"""Whole suffixes of multitrack files (MUSDB18, Native Instruments Stems)."""


def song_name(path: str) -> str:
    """The file name without its suffix: "song" for song.mp3 and for song.stem.mp4."""
    name = os.path.basename(path)
    for suffix in STEM_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return os.path.splitext(name)[0]


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Channel mean. (samples, channels) -> (samples,)."""
    return np.asarray(samples, np.float32).mean(axis=1)


OUTPUT_FORMATS = {"wav16": ("wav", "PCM_16"), "wav-float": ("wav", "FLOAT"),
                  "flac": ("flac", "PCM_24")}
"""Output format name -> (file extension, soundfile subtype)."""

_INTEGER_BITS = {"PCM_16": 16, "PCM_24": 24}


def integer_steps(output_format: str) -> Optional[int]:
    """Integer steps per unit of full scale of an integer output format, None for float.

    2**15 for 16 bits: a sample x in [-1, 1) is stored as round(x * 2**15),
    an integer in [-2**15, 2**15 - 1], and read back as that integer / 2**15.
    """
    bits = _INTEGER_BITS.get(OUTPUT_FORMATS[output_format][1])
    return None if bits is None else 1 << (bits - 1)


def quantise(samples: np.ndarray, steps: int) -> np.ndarray:
    """The nearest integer step of each sample, unclipped: the one rounding to integer formats.

    float (samples, channels) -> int64, same shape; `steps` from `integer_steps`.
    """
    return np.rint(np.asarray(samples, np.float64) * steps).astype(np.int64)


_SEEKABLE_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "CAF")


class AudioReader:
    """Samples of a file libsndfile seeks exactly (WAV, FLAC, AIFF, ...), any range on demand.

    Attributes:
        path: the file.
        n_samples: samples per channel.
        n_channels: channels.
        sample_rate_hz: rate.
    """

    def __init__(self, path: str, sound_file: soundfile.SoundFile):
        self.path, self._file = path, sound_file
        self.n_samples, self.n_channels = sound_file.frames, sound_file.channels
        self.sample_rate_hz = int(sound_file.samplerate)

    def read(self, start: int, stop: int) -> np.ndarray:
        """float32 (stop - start, channels) for 0 <= start <= stop <= n_samples.

        Raises:
            AudioError: the file cannot be read there.
        """
        try:
            self._file.seek(start)
            samples = self._file.read(stop - start, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{self.path}: read failed ({error_line(error)})") from None
        if len(samples) != stop - start:
            raise AudioError(f"{self.path}: file is truncated (expected {self.n_samples} "
                             "samples)")
        return samples

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class StreamedAudioReader:
    """Samples of a compressed file (OGG, MP3, M4A, ...), decoded forward, any range on demand.

    Seeking in these formats is not sample-exact, so the file is decoded from
    its start, block by block. Kept in memory are only the samples from
    `look_back_samples` before the furthest sample read so far and what the
    current read needs: fewer than max(look_back_samples, the read's length)
    + 2 decoded blocks per channel, however long the file. A read that starts
    before what is kept decodes the file again from its start: exact, only
    slower (`restarts` counts those).

    Args:
        path: the file.
        open_blocks: returns a fresh iterator of float32 (samples, channels)
            blocks decoding the file from its start.
        n_samples: samples per channel of the whole file.
        n_channels: channels.
        sample_rate_hz: rate.
        look_back_samples: samples kept before the furthest sample read.

    Attributes:
        restarts: decodes started again from the file's start.
        max_held_samples: the most samples per channel held at once.
    """

    def __init__(self, path: str, open_blocks: Callable[[], Iterator[np.ndarray]],
                 n_samples: int, n_channels: int, sample_rate_hz: int,
                 look_back_samples: int = 0):
        self.path, self._open_blocks = path, open_blocks
        self.n_samples, self.n_channels = n_samples, n_channels
        self.sample_rate_hz = int(sample_rate_hz)
        self.look_back_samples = max(0, int(look_back_samples))
        self.restarts, self.max_held_samples = 0, 0
        self._blocks = open_blocks()
        self._held = collections.deque()  # decoded blocks, in order
        self._held_start = self._held_end = self._furthest = 0  # global sample indices

    def read(self, start: int, stop: int) -> np.ndarray:
        """float32 (stop - start, channels) for 0 <= start <= stop <= n_samples.

        Raises:
            AudioError: the file cannot be decoded up to `stop`.
        """
        if start < self._held_start:
            self._restart()
        # Kept after this read: what it returns and the look-back behind the furthest sample.
        keep_from = min(start, max(self._furthest, stop) - self.look_back_samples)
        self._forget_before(keep_from)
        while self._held_end < stop:
            block = next(self._blocks, None)
            if block is None:
                raise AudioError(f"{self.path}: file is truncated (expected {self.n_samples} "
                                 f"samples, decoded {self._held_end})")
            self._held.append(block)
            self._held_end += len(block)
            self.max_held_samples = max(self.max_held_samples, self._held_end - self._held_start)
            self._forget_before(keep_from)
        self._furthest = max(self._furthest, stop)
        pieces, position = [], self._held_start
        for block in self._held:
            lo, hi = max(start, position), min(stop, position + len(block))
            if lo < hi:
                pieces.append(block[lo - position:hi - position])
            position += len(block)
        return np.concatenate([np.zeros((0, self.n_channels), np.float32), *pieces])

    def _forget_before(self, sample: int) -> None:
        """Drops the held blocks that end at or before `sample`."""
        while self._held and self._held_start + len(self._held[0]) <= sample:
            self._held_start += len(self._held.popleft())

    def _restart(self) -> None:
        self._blocks.close()
        self._blocks = self._open_blocks()
        self._held.clear()
        self._held_start = self._held_end = self._furthest = 0
        self.restarts += 1

    def close(self) -> None:
        self._blocks.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def open_audio(path: str, look_back_seconds: float = 0.0):
    """Opens an audio file for reading ranges of samples.

    Args:
        path: any file `read_audio` decodes.
        look_back_seconds: for compressed files, how far before the furthest
            sample read so far a later read may start without decoding the
            file again (`StreamedAudioReader`); memory holds this much audio.

    Returns:
        An `AudioReader` (exact seeking) or a `StreamedAudioReader`, with
        `read(start, stop)`, `n_samples`, `n_channels` and `sample_rate_hz`;
        close it (or use it in a `with`). For a file only ffmpeg decodes,
        opening it decodes it once to count its samples exactly.

    Raises:
        AudioError: as `read_audio`.
    """
    path = os.fspath(path)
    check_readable(path)
    try:
        sound_file = soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        sound_file = None
    if sound_file is not None:
        n_samples, n_channels = sound_file.frames, sound_file.channels
        rate = int(sound_file.samplerate)
        if sound_file.format in _SEEKABLE_FORMATS and sound_file.seekable() and n_samples:
            return AudioReader(path, sound_file)
        sound_file.close()
        open_blocks = lambda: _soundfile_blocks(path)  # noqa: E731
    else:
        rate, n_channels = _probe_with_ffmpeg(path)
        open_blocks = lambda: _ffmpeg_blocks(path, n_channels)  # noqa: E731
        n_samples = sum(len(block) for block in open_blocks())  # exact, unlike the header's
    if n_samples == 0:
        raise AudioError(f"{path}: holds no audio samples")
    return StreamedAudioReader(path, open_blocks, n_samples, n_channels, rate,
                               look_back_samples=round(look_back_seconds * rate))


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
        bits = _INTEGER_BITS.get(subtype)
        self._shift = None if bits is None else 32 - bits  # to libsndfile's 32-bit integers
        try:
            self.temporary = files.temporary_beside(self.path, suffix=f".{extension}")
        except OSError as error:
            raise AudioError(f"{self.path}: cannot write ({files.reason(error)})") from None
        opened = False
        try:
            self._file = soundfile.SoundFile(self.temporary, mode="w",
                                             samplerate=sample_rate_hz, channels=n_channels,
                                             subtype=subtype, format=extension.upper())
            opened = True
        except Exception as error:  # libsndfile refuses some rate/channel/format mixes
            raise AudioError(f"{self.path}: cannot write ({self._reason(error)})") from None
        finally:
            if not opened:  # a signal too: nobody else knows the temporary's name yet
                files.discard(self.temporary)

    def write(self, samples: np.ndarray) -> None:
        """Appends (samples, channels): float32 full scale, or, for an integer format,
        integers in its steps (`integer_steps`), written exactly as they are.

        Raises:
            ValueError: integers for a float format.
            AudioError: the file cannot be written.
        """
        if np.issubdtype(samples.dtype, np.integer):
            if self._shift is None:
                raise ValueError(f"{self.path}: integer samples for a float format")
            samples = np.left_shift(samples.astype(np.int32), self._shift)
        try:
            self._file.write(samples)
        except Exception as error:
            self.abort()
            raise AudioError(f"{self.path}: cannot write ({self._reason(error)})") from None

    def finish(self) -> None:
        """Closes the file, complete, under its temporary name (`temporary`).

        For files that must appear together (`keras_unet.core.files.publish_together`).
        """
        try:
            self._file.close()
        except Exception as error:
            self.abort()
            raise AudioError(f"{self.path}: cannot write ({self._reason(error)})") from None

    def commit(self) -> None:
        """Closes the file and renames it to `path`."""
        self.finish()
        try:
            files.publish(self.temporary, self.path)
        except OSError as error:
            self.abort()
            raise AudioError(f"{self.path}: cannot write ({self._reason(error)})") from None

    def abort(self) -> None:
        """Closes and deletes the temporary file."""
        if not self._file.closed:
            self._file.close()
        files.discard(self.temporary)

    def _reason(self, error: Exception) -> str:
        return files.reason(error, folder=os.path.dirname(os.path.abspath(self.path)))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.abort()  # nothing left to do after `commit`
