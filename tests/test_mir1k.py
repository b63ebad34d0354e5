"""MIR-1K as a training source, on a small fake tree of the official layout.

Known answers: the right channel is the voice and the left the band; the
training singers are abjones and amy and nobody else; validation songs are
whole songs, disjoint from training; a song's clips are joined in order,
short ones included.
"""

import numpy as np
import pytest
import soundfile

from keras_unet.core.config import DataConfig, RunConfig, StftConfig
from pipelines import datasets, mir1k, sources
from pipelines.sources import DataError

RATE_HZ = 16000
VOICE_HZ, BAND_HZ = 700.0, 300.0
# singer -> {song number: clip lengths in seconds}; 3-5 s clips, shorter than a 12 s patch.
LAYOUT = {"abjones": {1: (3.0, 4.0), 2: (3.5,)},
          "amy": {1: (3.0,), 2: (4.0, 3.0), 3: (5.0,), 10: (3.0,)},
          "bobon": {1: (3.0, 3.0)}}


def _tone(frequency_hz, seconds, phase=0.0):
    time_s = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    return 0.3 * np.sin(2 * np.pi * frequency_hz * time_s + phase)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """MIR-1K/Wavfile/<singer>_<song>_<clip>.wav: left = band, right = voice * (clip number)."""
    top = tmp_path_factory.mktemp("MIR-1K")
    folder = top / "Wavfile"
    folder.mkdir()
    for singer, songs in LAYOUT.items():
        for song, lengths in songs.items():
            for number, seconds in enumerate(lengths, start=1):
                voice = number * _tone(VOICE_HZ, seconds) / 2  # the clip number, as a level
                stereo = np.stack([_tone(BAND_HZ, seconds), voice], axis=1)
                soundfile.write(folder / f"{singer}_{song}_{number:02d}.wav", stereo, RATE_HZ,
                                subtype="FLOAT")
    (folder / "readme.txt").write_text("not a clip")
    return top


def _config(root, **data) -> RunConfig:
    return RunConfig(data=DataConfig(mir1k_root=str(root), **data))


def _level_at(samples, frequency_hz, rate_hz):
    spectrum = np.abs(np.fft.rfft(samples))
    return spectrum[int(round(frequency_hz * len(samples) / rate_hz))] / len(samples)


def test_the_split_is_by_singer(root):
    train = mir1k.list_clips(str(root), "train")
    test = mir1k.list_clips(str(root / "Wavfile"), "test")  # the Wavfile folder works too
    assert {clip.singer for clip in train} == {"abjones", "amy"}
    assert [clip.name for clip in test] == ["bobon_1_01", "bobon_1_02"]
    assert [clip.song for clip in train][:3] == ["abjones_1", "abjones_1", "abjones_2"]
    assert [clip.song for clip in train][-1] == "amy_10"  # songs in numeric order


def test_validation_holds_out_whole_songs_of_each_singer():
    names = [f"abjones_{n}" for n in range(1, 6)] + [f"amy_{n}" for n in range(1, 17)]
    train, validation = mir1k.split_songs(names, 0.15)
    assert validation == ["abjones_3", "amy_5", "amy_13"]
    assert sorted(train + validation) == sorted(names)
    assert mir1k.split_songs(names, 0.0) == (names, [])


def test_validation_clips_are_those_of_the_songs_training_holds_out(root):
    _, validation = sources.load_tracks(_config(root, validation_share=0.3))
    clips = mir1k.validation_clips(str(root), 0.3)
    assert {clip.song for clip in clips} == {track.name for track in validation}
    assert [clip.name for clip in clips] == ["abjones_2_01", "amy_3_01"]
    with pytest.raises(mir1k.Mir1kError, match="holds out no song"):
        mir1k.validation_clips(str(root), 0.0)


def test_right_is_voice_left_is_band_and_clips_join_in_order(root):
    train, validation = sources.load_tracks(_config(root, validation_share=0.3))
    names = [track.name for track in train + validation]
    assert sorted(names) == ["abjones_1", "abjones_2", "amy_1", "amy_10", "amy_2", "amy_3"]
    assert {track.name for track in validation} == {"abjones_2", "amy_3"}

    song = {track.name: track for track in train}["amy_2"]  # clips of 4 s then 3 s
    rate = 8192
    assert abs(song.n_samples - 7.0 * rate) <= 2
    first, second = song.vocals[:int(3.5 * rate), 0], song.vocals[int(4.5 * rate):, 0]
    for part, clip_number in ((first, 1), (second, 2)):
        assert _level_at(part, VOICE_HZ, rate) == pytest.approx(0.3 / 4 * clip_number, rel=0.05)
        assert _level_at(part, BAND_HZ, rate) < 1e-3
    assert _level_at(song.accompaniment[:, 0], BAND_HZ, rate) == pytest.approx(0.15, rel=0.05)
    assert _level_at(song.accompaniment[:, 0], VOICE_HZ, rate) < 1e-3


def test_songs_shorter_than_a_patch_make_weighted_patches(root):
    config = _config(root, patches_per_epoch=16)
    train, _ = sources.load_tracks(config)
    assert all(track.n_samples < 12 * 8192 for track in train)
    mix, vocals, weights = next(iter(datasets.make_train_dataset(train, config, 16, seed=0)))
    real = weights.numpy()[:, 0, :] > 0
    assert 0.1 < real.mean() < 0.9  # the songs fill part of each 12 s patch, padding the rest
    assert np.all(mix.numpy().max(axis=(1, 2)) == pytest.approx(1.0))


def test_n_songs_counts_training_songs(root):
    train, validation = sources.load_tracks(_config(root, n_songs=2, validation_share=0.3))
    assert [track.name for track in train] == ["abjones_1", "amy_1"]
    assert len(validation) == 2


def test_a_folder_without_clips_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no MIR-1K clips of abjones or amy"):
        sources.load_tracks(_config(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        sources.load_tracks(_config(tmp_path / "nowhere"))


def test_a_mono_clip_is_a_data_error_naming_it(tmp_path):
    for song in (1, 2):  # one to train on, one to validate
        soundfile.write(tmp_path / f"amy_{song}_01.wav", _tone(VOICE_HZ, 1.0), RATE_HZ)
    with pytest.raises(DataError, match="amy_1_01.wav: has 1 channel"):
        sources.load_tracks(_config(tmp_path))


@pytest.mark.parametrize("clips", [["amy_1_01"], ["amy_1_01", "amy_1_02"]])
def test_one_song_is_a_data_error_not_an_empty_track_list(tmp_path, clips):
    """Issue 22, item 5: one clip or one song cannot both train and validate."""
    for name in clips:
        soundfile.write(tmp_path / f"{name}.wav", np.stack([_tone(BAND_HZ, 1.0)] * 2, axis=1),
                        RATE_HZ)
    with pytest.raises(DataError, match="1 song.*needs at least two"):
        sources.load_tracks(_config(tmp_path))


def test_musdb_and_mir1k_roots_exclude_each_other(root):
    with pytest.raises(ValueError, match="cannot both be set"):
        DataConfig(musdb_root="/somewhere", mir1k_root=str(root))


def test_a_validation_singer_holds_out_every_song_of_that_singer(root):
    names = [f"abjones_{n}" for n in range(1, 6)] + [f"amy_{n}" for n in range(1, 17)]
    train, validation = mir1k.split_songs(names, 0.15, validation_singer="abjones")
    assert validation == [f"abjones_{n}" for n in range(1, 6)]
    assert train == [f"amy_{n}" for n in range(1, 17)]
    train_tracks, validation_tracks = sources.load_tracks(_config(root, validation_singer="amy"))
    assert [track.name for track in validation_tracks] == ["amy_1", "amy_2", "amy_3", "amy_10"]
    assert [track.name for track in train_tracks] == ["abjones_1", "abjones_2"]
    assert {clip.singer for clip in mir1k.validation_clips(str(root), 0.15, "amy")} == {"amy"}
    with pytest.raises(DataError, match="bobon"):
        sources.load_tracks(_config(root, validation_singer="bobon"))
