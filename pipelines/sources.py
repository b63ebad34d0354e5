"""Training audio: MUSDB18, MUSDB18-HQ, MIR-1K or the bundled clip -> vocals and accompaniment waveforms.

Every track is decoded once, resampled with soxr to the model's rate and
reduced to two stems: the vocals and the accompaniment (the sum of the other
stems: drums, bass, other), so that mix = vocals + accompaniment holds
exactly, also after augmentation. Unless `DataConfig.stereo_as_examples` is
set the stems are downmixed to mono right here, which halves the memory and
loses nothing: the model sees mono, and a channel swap does not change a
channel mean.

Sources, chosen by `DataConfig.musdb_root` and `DataConfig.mir1k_root`:
    neither: the MUSDB clip that stempeg ships (`stempeg.example_stem_path()`,
        6 s), split in time: its last `validation_seconds` validate, the rest
        trains. Runs on a fresh machine with no download.
    a folder: MUSDB18 (`train/*.stem.mp4`) or, with `is_wav`, MUSDB18-HQ
        (`train/<track>/{vocals,drums,bass,other}.wav`), listed by `musdb`
        with its own train / validation split of the train subset (the test
        subset is for evaluation only). The first `n_songs` tracks of each
        split, in musdb's (sorted) order. If the validation split is empty
        (a folder that lacks musdb's 14 validation tracks), the last
        `validation_seconds` of every training track validate instead, and a
        warning says so.
    a MIR-1K folder (`mir1k_root`): the clips of MIR-1K's training singers
        (`pipelines.mir1k`), right channel vocals, left accompaniment. The
        clips of each song are joined in order into one track, so a 12 s
        patch lies inside music instead of a 4-13 s clip inside padding.
        Whole songs validate (`validation_share` of each singer's songs);
        `n_songs` counts training songs.

Tracks decode in parallel threads (decoders and ffmpeg release the GIL),
with a progress bar.

Caches: decoded tracks stay in memory for the life of the process (a second
`load_tracks` does not decode again), and with `DataConfig.cache_dir` also on
disk, one `.npy` per track keyed by its name, a digest of its path, the rate
and the channel mode, so a second run does not decode either.

Memory of the cache, float32:
    bytes = seconds x sample_rate_hz x channels x stems x 4
MUSDB18's train subset (100 tracks, about 6.5 h) at 8192 Hz, mono, 2 stems:
    23,400 s x 8192 x 1 x 2 x 4 = 1.5 GB (3.1 GB with stereo_as_examples).
"""

import concurrent.futures
import dataclasses
import functools
import hashlib
import logging
import os
import re

import numpy as np
import tqdm

from keras_unet.core import audio_io
from keras_unet.core.config import RunConfig
from keras_unet.core.files import atomic_path
from keras_unet.core.messages import error_line
from pipelines import mir1k

_LOGGER = logging.getLogger(__name__)

ACCOMPANIMENT_STEMS = ("drums", "bass", "other")
# Stream order of MUSDB18 `.stem.mp4` files (and of the bundled clip): the mixture, then
# the stems.
MIXTURE_STEM = 0
STEM_IDS = {"drums": 1, "bass": 2, "other": 3, "vocals": 4}

# (source path, rate, mono) -> (vocals, accompaniment), kept for the process.
_DECODED = {}


class DataError(ValueError):
    """Training data cannot be found or decoded; one line naming the path and the cause."""


@dataclasses.dataclass(frozen=True, eq=False)
class Track:
    """One track's stems at the model's rate.

    Args:
        name: the track's name (MUSDB's "Artist - Title").
        vocals: float32 (samples, channels).
        accompaniment: float32 (samples, channels), the sum of the other stems.
            channels is 1 when the run downmixes (the default), 2 for a
            stereo source with `stereo_as_examples`.
    """

    name: str
    vocals: np.ndarray
    accompaniment: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.vocals.shape[0]

    @property
    def mix(self) -> np.ndarray:
        """vocals + accompaniment, float32 (samples, channels)."""
        return self.vocals + self.accompaniment


def load_tracks(config: RunConfig):
    """Decodes (or reads from the caches) the training and validation tracks.

    Args:
        config: the run; `config.data` says where the audio is, `config.stft`
            the sample rate.

    Returns:
        (train_tracks, validation_tracks): two non-empty lists of `Track`.

    Raises:
        DataError: the root does not exist or holds no tracks, a stem cannot
            be decoded, ffmpeg is missing, the cache folder cannot be written,
            or a track is too short to hold out `validation_seconds`.
    """
    if config.data.mir1k_root is not None:
        return _load_mir1k(config)
    if config.data.musdb_root is not None:
        return _load_musdb(config)
    return _load_bundled_clip(config)


def _decode_all(jobs: list, what: str) -> list:
    """Runs the decoding functions `jobs` in threads, in order, with a progress bar."""
    workers = min(len(jobs), os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm.tqdm(total=len(jobs), desc=f"decoding {what}", unit="track",
                      disable=len(jobs) < 2, leave=False) as bar:
        futures = [pool.submit(job) for job in jobs]
        results = []
        for future in futures:
            results.append(future.result())
            bar.update(1)
        return results


def _load_bundled_clip(config: RunConfig):
    import stempeg

    path = stempeg.example_stem_path()
    track = _cached_track(audio_io.song_name(path), path, config,
                          lambda: _decode_stem_file(path, STEM_IDS, config.stft.sample_rate_hz))
    train, validation = _split_tail(track, path, config)
    return [train], [validation]


def _load_musdb(config: RunConfig):
    data = config.data
    root = os.path.expanduser(data.musdb_root)
    if not os.path.exists(root):
        raise DataError(f"{root}: MUSDB root does not exist")
    if not os.path.isdir(root):
        raise DataError(f"{root}: MUSDB root is not a folder")
    train, validation = _musdb_splits(root, data.is_wav)
    train, validation = train[:data.n_songs], validation[:data.n_songs]
    if not train:
        raise DataError(f"{root}: no MUSDB tracks in the training split "
                        f"({_expected_layout(root, data.is_wav)})")
    tracks = _decode_all([functools.partial(_decode_musdb_track, track, config)
                          for track in train + validation], "MUSDB tracks")
    train_tracks, validation_tracks = tracks[:len(train)], tracks[len(train):]
    if validation_tracks:
        return train_tracks, validation_tracks
    _LOGGER.warning("%s: musdb's validation split is empty; holding out the last %.1f s "
                    "of every training track for validation", root, data.validation_seconds)
    pairs = [_split_tail(track, os.path.join(root, "train", track.name), config)
             for track in train_tracks]
    return [head for head, _ in pairs], [tail for _, tail in pairs]


def _load_mir1k(config: RunConfig):
    """MIR-1K's training singers: (training songs, validation songs) as joined tracks."""
    data = config.data
    try:
        by_song = mir1k.songs(mir1k.list_clips(data.mir1k_root, "train"))
        train, validation = mir1k.split_songs(list(by_song), data.validation_share,
                                              data.validation_singer)
    except mir1k.Mir1kError as error:
        raise DataError(str(error)) from None
    train = train[:data.n_songs]
    folder = mir1k.wav_folder(data.mir1k_root)
    if not train or not validation:
        raise DataError(f"{folder}: {len(by_song)} song(s) of MIR-1K's training singers; "
                        "a run needs at least two, one to train on and one to validate "
                        "(--validation-share holds songs out)")
    tracks = _decode_all(
        [functools.partial(_cached_track, song, os.path.join(folder, song), config,
                           functools.partial(_decode_mir1k_song, by_song[song],
                                             config.stft.sample_rate_hz))
         for song in train + validation], "MIR-1K songs")
    return tracks[:len(train)], tracks[len(train):]


def _decode_mir1k_song(clips: list, rate_hz: int):
    """A song's clips, in order, joined: (vocals, accompaniment) at `rate_hz`."""
    parts = []
    for clip in clips:
        try:
            vocals, accompaniment, rate_in = mir1k.read_clip(clip.path)
        except mir1k.Mir1kError as error:
            raise DataError(str(error)) from None
        parts.append((audio_io.resample(vocals, rate_in, rate_hz),
                      audio_io.resample(accompaniment, rate_in, rate_hz)))
    return tuple(np.concatenate(stem).astype(np.float32) for stem in zip(*parts))


def _musdb_splits(root: str, is_wav: bool):
    """musdb's (training, validation) tracks of the train subset, each sorted by name.

    One listing with musdb's own validation names (`setup["validation_tracks"]`),
    the same split as `musdb.DB(split="train")` / `split="valid"` with half
    the ffprobe calls.
    """
    import musdb

    try:
        audio_io.require_ffmpeg(root)  # musdb probes every track with ffprobe
        database = musdb.DB(root=root, subsets="train", is_wav=is_wav)
    except audio_io.AudioError as error:
        raise DataError(str(error)) from None
    except Exception as error:  # musdb and ffprobe fail with many types
        raise DataError(f"{root}: cannot list MUSDB tracks ({error_line(error)})") from None
    held_out = set(database.setup["validation_tracks"])
    tracks = sorted(database.tracks, key=lambda track: track.name)
    return ([track for track in tracks if track.name not in held_out],
            [track for track in tracks if track.name in held_out])


def _expected_layout(root: str, is_wav: bool) -> str:
    if is_wav:
        return (f"expected {os.path.join(root, 'train', '<track>', 'vocals.wav')} and "
                "drums/bass/other.wav beside it")
    return (f"expected {os.path.join(root, 'train', '<track>.stem.mp4')}; "
            "for MUSDB18-HQ folders of .wav files set is_wav (--is-wav)")


def _decode_musdb_track(track, config: RunConfig) -> Track:
    rate = config.stft.sample_rate_hz
    if track.is_wav:
        folder = os.path.dirname(track.path)
        missing = [name for name in ("vocals",) + ACCOMPANIMENT_STEMS if name not in track.sources]
        if missing:
            files = ", ".join(name + ".wav" for name in missing)
            raise DataError(f"{folder}: track folder lacks {files}")
        paths = {name: source.path for name, source in track.sources.items()}
        return _cached_track(track.name, folder, config, lambda: _decode_wav_stems(paths, rate))
    stem_ids = {name: source.stem_id for name, source in track.sources.items()}
    return _cached_track(track.name, track.path, config,
                         lambda: _decode_stem_file(track.path, stem_ids, rate))


def _decode_wav_stems(paths: dict, rate_hz: int):
    """MUSDB18-HQ: one .wav per stem -> (vocals, accompaniment) at `rate_hz`."""
    stems = {}
    for name in ("vocals",) + ACCOMPANIMENT_STEMS:
        try:
            samples, rate_in = audio_io.read_audio(paths[name])
        except audio_io.AudioError as error:
            raise DataError(f"{paths[name]}: cannot decode stem ({_cause(error)})") from None
        stems[name] = audio_io.resample(samples, rate_in, rate_hz)
    return _vocals_and_accompaniment(stems)


def _decode_stem_file(path: str, stem_ids: dict, rate_hz: int):
    """A `.stem.mp4` (all streams in one file, via ffmpeg) -> (vocals, accompaniment)."""
    import stempeg

    try:
        audio_io.require_ffmpeg(path)
    except audio_io.AudioError as error:
        raise DataError(str(error)) from None
    try:
        streams, rate_in = stempeg.read_stems(path, dtype=np.float32, always_3d=True)
    except Exception as error:  # ffmpeg's failures surface as many types
        raise DataError(f"{path}: cannot decode stems ({error_line(error)})") from None
    if streams.shape[0] <= max(stem_ids.values()):
        raise DataError(f"{path}: holds {streams.shape[0]} streams, expected "
                        f"{max(stem_ids.values()) + 1} (mixture, drums, bass, other, vocals)")
    stems = {name: audio_io.resample(streams[index], int(rate_in), rate_hz)
             for name, index in stem_ids.items()}
    return _vocals_and_accompaniment(stems)


def _vocals_and_accompaniment(stems: dict):
    length = min(samples.shape[0] for samples in stems.values())
    vocals = stems["vocals"][:length]
    accompaniment = sum(stems[name][:length] for name in ACCOMPANIMENT_STEMS)
    return vocals.astype(np.float32), accompaniment.astype(np.float32)


def _cached_track(name: str, source_path: str, config: RunConfig, decode) -> Track:
    """The track from memory, else from the disk cache, else `decode()` (then cached)."""
    rate = config.stft.sample_rate_hz
    mono = not config.data.stereo_as_examples
    key = (os.path.abspath(source_path), rate, mono)
    if key not in _DECODED:
        _DECODED[key] = _from_disk_or_decode(name, key, config.data.cache_dir, decode)
    vocals, accompaniment = _DECODED[key]
    return Track(name=name, vocals=vocals, accompaniment=accompaniment)


def _from_disk_or_decode(name: str, key: tuple, cache_dir, decode):
    source_path, rate, mono = key
    cache_path = None
    if cache_dir is not None:
        digest = hashlib.sha1(source_path.encode("utf-8")).hexdigest()[:10]
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        mode = "mono" if mono else "stereo"
        cache_path = os.path.join(cache_dir, f"{safe_name}-{digest}-{rate}hz-{mode}.npy")
        if os.path.exists(cache_path):
            try:
                stems = np.load(cache_path)  # (2, samples, channels)
                return stems[0], stems[1]
            except (OSError, ValueError):
                _LOGGER.warning("%s: unreadable cache file, decoding again", cache_path)
    vocals, accompaniment = decode()
    if mono:
        vocals = audio_io.to_mono(vocals)[:, None]
        accompaniment = audio_io.to_mono(accompaniment)[:, None]
    if cache_path is not None:
        _save_atomically(cache_path, np.stack([vocals, accompaniment]))
    return vocals, accompaniment


def _save_atomically(path: str, array: np.ndarray) -> None:
    try:
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.save(handle, array)
    except OSError as error:
        raise DataError(f"{os.path.dirname(path)}: cannot write the cache "
                        f"({error.strerror})") from None


def _split_tail(track: Track, path: str, config: RunConfig):
    """(head, tail) of a track: the tail is its last `validation_seconds`."""
    tail_samples = int(round(config.data.validation_seconds * config.stft.sample_rate_hz))
    if tail_samples >= track.n_samples:
        seconds = track.n_samples / config.stft.sample_rate_hz
        raise DataError(f"{path}: track is {seconds:.2f} s long, too short to hold out "
                        f"validation_seconds={config.data.validation_seconds}")
    cut = track.n_samples - tail_samples
    head = Track(track.name, track.vocals[:cut], track.accompaniment[:cut])
    tail = Track(track.name, track.vocals[cut:], track.accompaniment[cut:])
    return head, tail


def _cause(error: audio_io.AudioError) -> str:
    """An AudioError's message without the leading "path: "."""
    return str(error).split(": ", 1)[-1]
