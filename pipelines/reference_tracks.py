"""Songs with their true sources at their own rate, to score a separation against.

Where `pipelines.sources` gives training audio at the model's rate, these
are the tracks `evaluate.py` scores, read one at a time, as they are on
disk: the bundled clip, MUSDB18's test or train subset (the mixture stream
itself, the accompaniment the sum of the other stems, in `sources`' stem
order), a folder of track folders, or MIR-1K's clips (`pipelines.mir1k`).
"""

import dataclasses
import functools
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from keras_unet.core.audio_io import read_audio, song_name
from keras_unet.core.config import SUBSETS, DataConfig
from keras_unet.core.messages import error_line
from pipelines import mir1k
from pipelines.sources import ACCOMPANIMENT_STEMS, MIXTURE_STEM, STEM_IDS

MIXTURE_FILE = "mixture.wav"
SOURCE_FILES = {"vocals": "vocals.wav", "accompaniment": "accompaniment.wav"}


class TrackError(ValueError):
    """A track folder or dataset cannot be evaluated; the message names it and why."""


@dataclasses.dataclass(frozen=True)
class Track:
    """One song with its true sources, at its own rate.

    Args:
        name: the name reported in the table and the JSON.
        mixture: float32 (samples, channels).
        vocals: float32 (samples, channels), the true vocals.
        accompaniment: float32 (samples, channels), the true accompaniment.
        sample_rate_hz: the rate of all three.
    """

    name: str
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate_hz: int

    @property
    def references(self) -> Dict[str, np.ndarray]:
        """{source: float32 (samples, channels)}, the true sources."""
        return {"vocals": self.vocals, "accompaniment": self.accompaniment}


def bundled_clip_name() -> str:
    """The bundled clip's song name ("The Easton Ellises - Falcon 69")."""
    import stempeg

    return song_name(stempeg.example_stem_path())


def bundled_clip() -> Track:
    """The MUSDB18 clip stempeg ships (about 6 s, 44.1 kHz stereo), at its full rate.

    The accompaniment is drums + bass + other.
    """
    import stempeg

    stems, rate = stempeg.read_stems(stempeg.example_stem_path(),
                                     dtype=np.float32)  # (5, samples, 2)
    accompaniment_ids = [STEM_IDS[stem] for stem in ACCOMPANIMENT_STEMS]
    return Track(name=bundled_clip_name(), mixture=stems[MIXTURE_STEM],
                 vocals=stems[STEM_IDS["vocals"]],
                 accompaniment=stems[accompaniment_ids].sum(axis=0),
                 sample_rate_hz=int(rate))


def track_folders(root: str) -> List[str]:
    """The track folders under `root`, sorted.

    Every subfolder is a track and must hold `mixture.wav` and `vocals.wav`
    (`accompaniment.wav` is optional); one that lacks them fails alone when
    it loads (`load_track_folder`), named and left out like any unreadable
    track.

    Raises:
        TrackError: `root` is missing or not a folder, or holds no folders.
    """
    if not os.path.isdir(root):
        raise TrackError(f"--tracks {root}: no such folder")
    folders = sorted(os.path.join(root, name) for name in os.listdir(root)
                     if os.path.isdir(os.path.join(root, name)))
    if not folders:
        raise TrackError(f"--tracks {root}: holds no track folders "
                         f"(expected <track>/{MIXTURE_FILE} and <track>/vocals.wav)")
    return folders


def load_track_folder(folder: str) -> Track:
    """Reads `mixture.wav`, `vocals.wav` and `accompaniment.wav` (else mixture - vocals).

    Files of different lengths are cut to the shortest.

    Raises:
        AudioError: a file cannot be read.
        TrackError: `mixture.wav` or `vocals.wav` is missing, or the files
            differ in sample rate or channel count.
    """
    paths = {"mixture": os.path.join(folder, MIXTURE_FILE),
             "vocals": os.path.join(folder, SOURCE_FILES["vocals"])}
    for path in paths.values():
        if not os.path.isfile(path):
            raise TrackError(f"{path}: no such file")
    accompaniment_path = os.path.join(folder, SOURCE_FILES["accompaniment"])
    if os.path.exists(accompaniment_path):
        paths["accompaniment"] = accompaniment_path
    audio = {part: read_audio(path) for part, path in paths.items()}
    rate, channels = audio["mixture"][1], audio["mixture"][0].shape[1]
    for part, (samples, part_rate) in audio.items():
        if part_rate != rate or samples.shape[1] != channels:
            raise TrackError(f"{paths[part]}: {part_rate} Hz x {samples.shape[1]} channels, "
                             f"but {MIXTURE_FILE} is {rate} Hz x {channels} channels")
    length = min(samples.shape[0] for samples, _ in audio.values())
    mixture, vocals = audio["mixture"][0][:length], audio["vocals"][0][:length]
    if "accompaniment" in audio:
        accompaniment = audio["accompaniment"][0][:length]
    else:
        accompaniment = mixture - vocals
    return Track(name=os.path.basename(os.path.normpath(folder)), mixture=mixture,
                 vocals=vocals, accompaniment=accompaniment, sample_rate_hz=rate)


def _musdb_track(track) -> Track:
    """Reads a `musdb` track (raises TrackError naming it when it cannot be decoded)."""
    try:
        return Track(name=track.name, mixture=track.audio.astype(np.float32),
                     vocals=track.targets["vocals"].audio.astype(np.float32),
                     accompaniment=track.targets["accompaniment"].audio.astype(np.float32),
                     sample_rate_hz=int(track.rate))
    except Exception as error:  # musdb and ffmpeg fail with many exception types
        raise TrackError(f"{track.path}: cannot read ({error_line(error)})") from None


def track_loaders(tracks_dir: Optional[str] = None, musdb_root: Optional[str] = None,
                  subset: str = "test", is_wav: bool = False
                  ) -> List[Tuple[str, Callable[[], Track]]]:
    """What to evaluate, as (name, loader) pairs; each loader reads one track when called.

    Only names and files are checked here; audio is read one track at a
    time, so memory does not grow with the size of the test set.

    Args:
        tracks_dir: a folder of track folders (see `track_folders`).
        musdb_root: a MUSDB18 root (MUSDB18-HQ with `is_wav`).
        subset: the MUSDB18 subset, "train" or "test".
        is_wav: `musdb_root` holds MUSDB18-HQ WAV folders.
        With neither `tracks_dir` nor `musdb_root`: the bundled clip.

    Raises:
        TrackError: a missing or empty folder or subset, a track lacking a file.
    """
    if tracks_dir is not None and musdb_root is not None:
        raise TrackError("--tracks and --musdb-root: give one of them, not both")
    if tracks_dir is not None:
        return [(os.path.basename(folder), functools.partial(load_track_folder, folder))
                for folder in track_folders(tracks_dir)]
    if musdb_root is not None:
        if subset not in SUBSETS:
            raise TrackError(f"--subset {subset}: must be one of {SUBSETS}")
        if not os.path.isdir(musdb_root):
            raise TrackError(f"--musdb-root {musdb_root}: no such folder")
        import musdb

        database = musdb.DB(root=musdb_root, subsets=[subset], is_wav=is_wav)
        if not database.tracks:
            kind = "MUSDB18-HQ WAV folders" if is_wav else ".stem.mp4 files (add --is-wav for HQ)"
            raise TrackError(f"--musdb-root {musdb_root}: no {kind} in {subset}/")
        return [(track.name, functools.partial(_musdb_track, track))
                for track in database.tracks]
    return [(bundled_clip_name(), bundled_clip)]


def mir1k_track(clip: mir1k.Clip) -> Track:
    """One MIR-1K clip: vocals = right channel, accompaniment = left, mixture = their sum.

    Raises:
        TrackError: the clip cannot be read or is not stereo.
    """
    try:
        vocals, accompaniment, rate = mir1k.read_clip(clip.path)
    except mir1k.Mir1kError as error:
        raise TrackError(str(error)) from None
    return Track(name=clip.name, mixture=vocals + accompaniment, vocals=vocals,
                 accompaniment=accompaniment, sample_rate_hz=rate)


def mir1k_loaders(root: str, subset: str = "test",
                  validation_share: float = DataConfig.validation_share,
                  validation_singer: Optional[str] = None
                  ) -> List[Tuple[str, Callable[[], Track]]]:
    """MIR-1K's clips of a subset (standard split by singer) as (name, loader) pairs.

    Args:
        root: the unzipped MIR-1K folder or its `Wavfile/` folder.
        subset: "test" (the 17 singers other than abjones and amy), "train"
            (abjones and amy), or "validation": the songs of "train" that
            training with `validation_share` holds out
            (`pipelines.mir1k.validation_clips`).
        validation_share, validation_singer: see `subset`; a model's own
            are in its config.

    Raises:
        TrackError: no such folder, or no clip of the subset in it.
    """
    try:
        clips = (mir1k.validation_clips(root, validation_share, validation_singer)
                 if subset == "validation" else mir1k.list_clips(root, subset))
    except mir1k.Mir1kError as error:
        raise TrackError(f"--mir1k-root {error}") from None
    return [(clip.name, functools.partial(mir1k_track, clip)) for clip in clips]
