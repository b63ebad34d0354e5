"""MIR-1K (Hsu & Jang 2010): its clips, its singers, its songs and its standard split.

MIR-1K is 1000 clips of Chinese karaoke (4-13 s, 16 kHz, stereo WAV) sung by
19 amateur singers. In each file the left channel is the accompaniment and
the right channel the singing voice; the mixture is their sum (0 dB). File
names are `<singer>_<song>_<clip>.wav`, and the clips of one song are
consecutive pieces of it.

The split the field uses (Huang et al. 2014, Park et al. 2018): the singers
`abjones` and `amy` (175 clips) train, the other 17 singers (825 clips)
test. Validation must be held out by song, never by clip, as consecutive
clips of one song share voice, band and key: `split_songs` keeps whole songs
apart, a share of each training singer's songs.

A user passes the folder they unzipped (`MIR-1K/`, which holds `Wavfile/`)
or the `Wavfile/` folder itself.
"""

import dataclasses
import math
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from keras_unet.core import audio_io
from keras_unet.core.config import SUBSETS

TRAIN_SINGERS = ("abjones", "amy")
WAV_FOLDER = "Wavfile"
_CLIP_NAME = re.compile(r"^(?P<singer>[A-Za-z0-9]+)_(?P<song>\d+)_(?P<clip>\d+)\.wav$")


class Mir1kError(ValueError):
    """The MIR-1K folder cannot be used; the message names it and why."""


@dataclasses.dataclass(frozen=True)
class Clip:
    """One MIR-1K clip file.

    Args:
        path: the WAV file.
        singer: the singer's name ("amy").
        song: the song's name, singer and number ("amy_3").
        number: the clip's place in its song (1 for "_01").
    """

    path: str
    singer: str
    song: str
    number: int

    @property
    def name(self) -> str:
        """The file name without `.wav` ("amy_3_01")."""
        return os.path.splitext(os.path.basename(self.path))[0]


def wav_folder(root: str) -> str:
    """The folder of the clips: `root/Wavfile` when it exists, else `root` itself.

    Raises:
        Mir1kError: `root` is not a folder.
    """
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise Mir1kError(f"{root}: MIR-1K folder does not exist")
    nested = os.path.join(root, WAV_FOLDER)
    return nested if os.path.isdir(nested) else root


def list_clips(root: str, subset: str) -> List[Clip]:
    """The clips of one subset of the standard split, sorted by song then clip number.

    Args:
        root: the unzipped MIR-1K folder or its `Wavfile/` folder.
        subset: "train" (abjones, amy) or "test" (every other singer).

    Raises:
        Mir1kError: unknown subset, or no clip of that subset in the folder.
    """
    if subset not in SUBSETS:
        raise Mir1kError(f"`subset` must be one of {SUBSETS}. Received: {subset!r}")
    folder = wav_folder(root)
    clips = []
    for name in sorted(os.listdir(folder)):
        match = _CLIP_NAME.match(name)
        if match is None:
            continue
        singer = match["singer"]
        if (singer in TRAIN_SINGERS) != (subset == "train"):
            continue
        clips.append(Clip(path=os.path.join(folder, name), singer=singer,
                          song=f"{singer}_{match['song']}", number=int(match["clip"])))
    if not clips:
        singers = "abjones or amy" if subset == "train" else "singers other than abjones and amy"
        raise Mir1kError(f"{folder}: no MIR-1K clips of {singers} "
                         "(expected files named <singer>_<song>_<clip>.wav)")
    return sorted(clips, key=lambda clip: (_natural(clip.song), clip.number))


def songs(clips: List[Clip]) -> Dict[str, List[Clip]]:
    """{song: its clips in order}, songs in the order of `clips`."""
    grouped = {}
    for clip in clips:
        grouped.setdefault(clip.song, []).append(clip)
    return grouped


def split_songs(song_names: List[str], validation_share: float,
                validation_singer: Optional[str] = None) -> Tuple[List[str], List[str]]:
    """(training songs, validation songs): whole songs, a share of each singer's.

    Each singer gives round(share x its songs) songs to validation, at least
    one when it has two or more, spread evenly over its songs in order, so
    the choice is fixed and both singers are validated. With a
    `validation_singer`, every song of that singer validates and every other
    song trains: a cross-singer check, scored on a voice never heard.

    Args:
        song_names: names as `Clip.song`, in order.
        validation_share: share of each singer's songs held out, in [0, 1).
        validation_singer: a singer of `song_names`, or None.

    Raises:
        Mir1kError: `validation_singer` sings none of the songs, or all of them.
    """
    by_singer = {}
    for name in song_names:
        by_singer.setdefault(name.rsplit("_", 1)[0], []).append(name)
    if validation_singer is not None:
        if validation_singer not in by_singer or len(by_singer) < 2:
            raise Mir1kError(f"validation singer {validation_singer!r}: must be one of the "
                             f"training singers {sorted(by_singer)}, with another left to train")
        return ([name for name in song_names if name not in by_singer[validation_singer]],
                list(by_singer[validation_singer]))
    held_out = set()
    for names in by_singer.values():
        count = round(validation_share * len(names))
        if validation_share > 0 and len(names) > 1:
            count = min(max(count, 1), len(names) - 1)
        step = len(names) / max(count, 1)
        held_out.update(names[math.floor((i + 0.5) * step)] for i in range(count))
    return ([name for name in song_names if name not in held_out],
            [name for name in song_names if name in held_out])


def validation_clips(root: str, validation_share: float,
                     validation_singer: Optional[str] = None) -> List[Clip]:
    """The training singers' clips of the songs `split_songs` holds out, in order.

    The songs a run of `train.py --mir1k-root` with this `validation_share`
    (or `validation_singer`) validates on, and never trains on: what
    `evaluate.py --subset validation` scores.

    Raises:
        Mir1kError: no training clips in the folder, or no song held out.
    """
    clips = list_clips(root, "train")
    _, held_out = split_songs(list(songs(clips)), validation_share, validation_singer)
    if not held_out:
        raise Mir1kError(f"{wav_folder(root)}: a validation share of {validation_share:g} "
                         "holds out no song")
    return [clip for clip in clips if clip.song in held_out]


def read_clip(path: str) -> Tuple[np.ndarray, np.ndarray, int]:
    """One clip's sources: (vocals, accompaniment, sample_rate_hz), float32 (samples, 1).

    Raises:
        Mir1kError: the file cannot be decoded or is not stereo.
    """
    try:
        samples, rate = audio_io.read_audio(path)
    except audio_io.AudioError as error:
        raise Mir1kError(str(error)) from None
    if samples.shape[1] != 2:
        raise Mir1kError(f"{path}: has {samples.shape[1]} channel(s); a MIR-1K clip is stereo "
                         "(left accompaniment, right voice)")
    return samples[:, 1:2].copy(), samples[:, 0:1].copy(), rate


def _natural(song: str):
    """Sort key: singer, then song number as a number ("amy_2" before "amy_10")."""
    singer, number = song.rsplit("_", 1)
    return singer, int(number)
