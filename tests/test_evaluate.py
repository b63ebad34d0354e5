"""evaluate.py and keras_unet.evaluation: baselines with known scores, the report, bad input."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import soundfile

from keras_unet.cli import evaluate
from keras_unet.evaluation import estimates
from pipelines import reference_tracks
from keras_unet.evaluation import run
from keras_unet.evaluation import scoring
from keras_unet.core.config import DataConfig, ModelConfig, RunConfig, StftConfig

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RUN = RunConfig(stft=StftConfig(patch_frames=16),
                     model=ModelConfig(depth=2, base_channels=4))


def _band_noise(rng, n_samples, channels, rate, low_hz, high_hz):
    """Unit-variance noise with energy only in [low_hz, high_hz]. (samples, channels)."""
    spectrum = np.fft.rfft(rng.standard_normal((n_samples, channels)), axis=0)
    hertz = np.fft.rfftfreq(n_samples, 1 / rate)
    spectrum[(hertz < low_hz) | (hertz > high_hz)] = 0
    noise = np.fft.irfft(spectrum, n_samples, axis=0)
    return noise / noise.std()


def disjoint_track(rate=16000, seconds=2.0, seed=0, channels=2) -> reference_tracks.Track:
    """Vocals below 1 kHz (harmonics and noise, 2 Hz tremolo), accompaniment in 2-3.5 kHz.

    Each source also gets independent white noise 60 dB below it: BSS Eval
    fits 512-tap filters to the references, and strictly band-limited
    references make that fit ill-conditioned (SIR/SAR become meaningless).
    Mono scores several times faster than stereo (BSS Eval solves a system of
    sources * channels * 512 unknowns).
    """
    rng = np.random.default_rng(seed)
    n_samples = int(rate * seconds)
    time = np.arange(n_samples)[:, None] / rate
    harmonics = sum(np.sin(2 * np.pi * hertz * time + rng.uniform(0, 2 * np.pi, (1, channels)))
                    for hertz in (220, 330, 440, 660, 880))
    vocals = (0.05 * harmonics + 0.1 * _band_noise(rng, n_samples, channels, rate, 100, 900)) \
        * (1 + 0.5 * np.sin(2 * np.pi * 2 * time))
    accompaniment = 0.1 * _band_noise(rng, n_samples, channels, rate, 2000, 3500)
    vocals += 1e-3 * rng.standard_normal(vocals.shape)
    accompaniment += 1e-3 * rng.standard_normal(accompaniment.shape)
    vocals, accompaniment = vocals.astype(np.float32), accompaniment.astype(np.float32)
    return reference_tracks.Track("disjoint", vocals + accompaniment, vocals, accompaniment, rate)


def write_track(folder, track, accompaniment=True):
    folder.mkdir(parents=True)
    soundfile.write(folder / "mixture.wav", track.mixture, track.sample_rate_hz, subtype="FLOAT")
    soundfile.write(folder / "vocals.wav", track.vocals, track.sample_rate_hz, subtype="FLOAT")
    if accompaniment:
        soundfile.write(folder / "accompaniment.wav", track.accompaniment,
                        track.sample_rate_hz, subtype="FLOAT")


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    from keras_unet.core.model import build_model
    from keras_unet.core.saving import save_keras

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_keras(build_model(TINY_RUN), str(path))
    return str(path)


# === Baselines and aggregation ===

def test_ideal_ratio_mask_values():
    vocals = np.array([0.0, 1.0, 3.0, 0.0])
    accompaniment = np.array([0.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(estimates.ideal_ratio_mask(vocals, accompaniment),
                               [0.0, 0.5, 0.75, 0.0])


def test_oracle_reaches_high_sdr_where_the_sources_do_not_overlap():
    track = disjoint_track()
    stft_config = StftConfig()
    scores = {method: scoring.score(track.references, estimate(track), track.sample_rate_hz)
              for method, estimate in estimates.estimators(None, stft_config).items()}
    for source in scoring.SOURCES:
        assert scores["oracle"][source]["SDR"] > 20, scores
        assert scores["oracle"][source]["SIR"] > 20, scores
        assert scores["mixture"][source]["SDR"] < 10, scores
        assert scores["oracle"][source]["SDR"] - scores["mixture"][source]["SDR"] > 15
    oracle = estimates.oracle_estimates(track, stft_config)
    np.testing.assert_allclose(oracle["vocals"] + oracle["accompaniment"], track.mixture,
                               atol=1e-6)


def test_full_rate_oracle_at_the_models_rate_is_the_model_rate_oracle():
    track = disjoint_track(rate=8192, seconds=1.0)
    stft_config = StftConfig()
    model_rate = estimates.oracle_estimates(track, stft_config)
    full_rate = estimates.oracle_full_rate_estimates(track, stft_config)
    for source in scoring.SOURCES:
        np.testing.assert_allclose(model_rate[source], full_rate[source], atol=1e-5)


def test_median_over_tracks_skips_undefined_values():
    def scores(vocals_sdr):
        values = {metric: 1.0 for metric in scoring.METRICS}
        return {"oracle": {"vocals": {**values, "SDR": vocals_sdr}, "accompaniment": values}}

    median = scoring.median_over_tracks({"a": scores(1.0), "b": scores(5.0),
                                            "c": scores(3.0), "d": scores(None)})
    assert median["oracle"]["vocals"]["SDR"] == 3.0
    assert median["oracle"]["accompaniment"]["SIR"] == 1.0


def test_track_folder_without_accompaniment_uses_mixture_minus_vocals(tmp_path):
    track = disjoint_track(rate=8000, seconds=0.5)
    write_track(tmp_path / "song", track, accompaniment=False)
    loaded = reference_tracks.load_track_folder(str(tmp_path / "song"))
    assert loaded.name == "song" and loaded.sample_rate_hz == 8000
    np.testing.assert_allclose(loaded.accompaniment, track.mixture - track.vocals, atol=1e-6)


def test_track_folder_with_mismatched_rates_is_refused(tmp_path):
    track = disjoint_track(rate=8000, seconds=0.5)
    write_track(tmp_path / "song", track)
    soundfile.write(tmp_path / "song" / "vocals.wav", track.vocals, 16000)
    with pytest.raises(reference_tracks.TrackError, match="vocals.wav: 16000 Hz"):
        reference_tracks.load_track_folder(str(tmp_path / "song"))


def test_musdb_hq_tracks_are_listed_and_read(tmp_path):
    rng = np.random.default_rng(0)
    stems = {name: rng.uniform(-0.2, 0.2, (4410, 2)).astype(np.float32)
             for name in ("vocals", "drums", "bass", "other")}
    for track in ("B - Two", "A - One"):
        folder = tmp_path / "test" / track
        folder.mkdir(parents=True)
        for name, samples in stems.items():
            soundfile.write(folder / f"{name}.wav", samples, 44100, subtype="FLOAT")
        soundfile.write(folder / "mixture.wav", sum(stems.values()), 44100, subtype="FLOAT")
    loaders = reference_tracks.track_loaders(musdb_root=str(tmp_path), subset="test", is_wav=True)
    assert [name for name, _ in loaders] == ["A - One", "B - Two"]
    track = loaders[0][1]()
    assert track.name == "A - One" and track.sample_rate_hz == 44100
    np.testing.assert_allclose(track.vocals, stems["vocals"], atol=1e-4)  # musdb: 16 bit
    np.testing.assert_allclose(track.accompaniment,
                               stems["drums"] + stems["bass"] + stems["other"], atol=3e-4)
    with pytest.raises(reference_tracks.TrackError, match="no MUSDB18-HQ WAV folders in train/"):
        reference_tracks.track_loaders(musdb_root=str(tmp_path), subset="train", is_wav=True)


# === The command line ===

def test_cli_writes_table_json_and_plot(tmp_path, tiny_model_path, capsys):
    tracks = tmp_path / "tracks"
    write_track(tracks / "one", disjoint_track(rate=8000, seconds=1.5, seed=1, channels=1))
    write_track(tracks / "two", disjoint_track(rate=8000, seconds=1.5, seed=2, channels=1),
                accompaniment=False)
    output = tmp_path / "out"
    assert evaluate.main(["--model", tiny_model_path, "--tracks", str(tracks),
                          "-o", str(output), "--oracle-full-rate"]) == 0

    document = json.loads((output / evaluate.SCORES_FILE).read_text())
    assert set(document) == {"model", "precision", "stft", "bss_eval", "methods", "sources",
                             "metrics", "tracks", "median", "seconds", "failed"}
    assert document["seconds"] == {"one": 1.5, "two": 1.5}
    assert document["failed"] == {}
    assert document["model"] == tiny_model_path
    assert document["stft"] == {**vars(TINY_RUN.stft)}
    methods = ["model", "mixture", "oracle", "oracle-full-rate"]
    assert document["methods"] == methods
    assert document["sources"] == ["vocals", "accompaniment"]
    assert document["metrics"] == ["SDR", "SIR", "SAR", "ISR"]
    assert list(document["tracks"]) == ["one", "two"]
    for scores in [*document["tracks"].values(), document["median"]]:
        assert list(scores) == methods
        for method in methods:
            for source in scoring.SOURCES:
                assert set(scores[method][source]) == set(scoring.METRICS)
                assert all(math.isfinite(value) for value in scores[method][source].values())
    for method in methods:  # the median of two tracks is their mean
        for source in scoring.SOURCES:
            both = [document["tracks"][name][method][source]["SDR"] for name in ("one", "two")]
            assert document["median"][method][source]["SDR"] == pytest.approx(np.mean(both))
    for name in ("one", "two"):
        scores = document["tracks"][name]
        assert scores["oracle"]["vocals"]["SDR"] > 20
        assert scores["oracle"]["vocals"]["SDR"] > scores["mixture"]["vocals"]["SDR"] + 15

    table = capsys.readouterr().out
    assert "median of 2" in table and "oracle-full-rate" in table
    assert len([line for line in table.splitlines() if line.startswith("one ")]) == 8

    import matplotlib.image

    image = matplotlib.image.imread(output / evaluate.PLOT_FILE)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert sorted(path.name for path in output.iterdir()) == [evaluate.SCORES_FILE,
                                                               evaluate.PLOT_FILE]


def test_parallel_scoring_gives_the_same_scores_and_the_same_failures(tmp_path):
    tracks = tmp_path / "tracks"
    for seed in (1, 2):
        write_track(tracks / f"t{seed}",
                    disjoint_track(rate=8000, seconds=1.0, seed=seed, channels=1))
    write_track(tracks / "t0", disjoint_track(rate=8000, seconds=1.0, channels=1))
    (tracks / "t0" / "mixture.wav").write_text("not audio\n")
    loaders = reference_tracks.track_loaders(tracks_dir=str(tracks))
    methods = {"mixture": estimates.mixture_estimates}
    serial, seconds, failed = run.evaluate_tracks(loaders, methods, jobs=1,
                                                         progress=False)
    parallel, _, failed_parallel = run.evaluate_tracks(loaders, methods, jobs=2,
                                                              progress=False)
    assert list(parallel) == list(serial) == list(seconds) == ["t1", "t2"]
    assert list(failed) == ["t0"] and "mixture.wav: not a readable audio file" in failed["t0"]
    assert failed_parallel == failed
    for name in serial:  # BLAS thread counts differ between the processes: rounding only
        for source in scoring.SOURCES:
            assert parallel[name]["mixture"][source] == pytest.approx(
                serial[name]["mixture"][source], rel=1e-9)


def _error_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_missing_or_broken_model_is_one_line_and_exit_2(tmp_path, capsys):
    missing = str(tmp_path / "nope.keras")
    assert f"--model {missing}: no such model" in _error_line(
        capsys, ["--model", missing, "-o", str(tmp_path / "out")])
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    assert f"{broken}: not a readable .keras model" in _error_line(
        capsys, ["--model", str(broken), "-o", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_missing_or_empty_tracks_dir_is_one_line_and_exit_2(tmp_path, tiny_model_path, capsys):
    missing = str(tmp_path / "missing")
    output = ["-o", str(tmp_path / "out")]
    assert "no such folder" in _error_line(
        capsys, ["--model", tiny_model_path, "--tracks", missing, *output])
    (tmp_path / "empty").mkdir()
    assert "holds no track folders" in _error_line(
        capsys, ["--model", tiny_model_path, "--tracks", str(tmp_path / "empty"), *output])


def test_track_folders_without_a_file_are_named_and_left_out(tmp_path, tiny_model_path, capsys):
    """Issue 22, item 8: as --help promises, the other tracks are still scored and saved."""
    tracks = tmp_path / "tracks"
    write_track(tracks / "good", disjoint_track(rate=8000, seconds=0.5))
    (tracks / "no_mixture").mkdir()
    soundfile.write(tracks / "no_mixture" / "vocals.wav", np.zeros((800, 2)), 8000)
    (tracks / "no_vocals").mkdir()
    soundfile.write(tracks / "no_vocals" / "mixture.wav", np.zeros((800, 2)), 8000)
    code = evaluate.main(["--model", tiny_model_path, "--tracks", str(tracks),
                          "-o", str(tmp_path / "out")])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(errors) == 2
    assert "no_mixture/mixture.wav: no such file" in errors[0]
    assert "no_vocals/vocals.wav: no such file" in errors[1]
    document = json.loads((tmp_path / "out" / evaluate.SCORES_FILE).read_text())
    assert list(document["tracks"]) == ["good"]
    assert sorted(document["failed"]) == ["no_mixture", "no_vocals"]


def test_a_failing_track_is_named_skipped_and_the_others_saved(tmp_path, tiny_model_path,
                                                               capsys):
    tracks = tmp_path / "tracks"
    write_track(tracks / "good", disjoint_track(rate=8000, seconds=1.0, channels=1))
    write_track(tracks / "bad", disjoint_track(rate=8000, seconds=1.0, channels=1))
    (tracks / "bad" / "vocals.wav").write_bytes(b"RIFF but not a wave file")
    output = tmp_path / "out"
    code = evaluate.main(["--model", tiny_model_path, "--tracks", str(tracks),
                          "-o", str(output), "--precision", "mixed_bfloat16"])
    assert code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "track bad:" in errors[0] and "bad/vocals.wav" in errors[0]
    document = json.loads((output / evaluate.SCORES_FILE).read_text())
    assert list(document["tracks"]) == ["good"] and list(document["seconds"]) == ["good"]
    assert list(document["failed"]) == ["bad"]
    assert document["precision"] == "mixed_bfloat16"
    assert (output / evaluate.PLOT_FILE).exists()


def test_the_default_model_is_found_from_any_folder(tmp_path, monkeypatch, capsys):
    from benchmarks import full_band

    write_track(tmp_path / "tracks" / "one", disjoint_track(rate=8000, seconds=0.5, channels=1))
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["--tracks", "tracks", "-o", "out", "--precision", "float32"]) == 0
    document = json.loads((tmp_path / "out" / evaluate.SCORES_FILE).read_text())
    assert os.path.samefile(document["model"], os.path.join(REPOSITORY, "saved_models",
                                                            "default"))
    assert document["precision"] == "float32"
    assert full_band.build_parser().parse_args([]).model == document["model"]


def test_bundled_clip_oracle_above_model_and_mixture(tmp_path, tiny_model_path):
    output = tmp_path / "out"
    assert evaluate.main(["--model", tiny_model_path, "-o", str(output)]) == 0
    document = json.loads((output / evaluate.SCORES_FILE).read_text())
    vocals_sdr = {method: document["median"][method]["vocals"]["SDR"]
                  for method in document["methods"]}
    assert vocals_sdr["oracle"] > vocals_sdr["model"]
    assert vocals_sdr["oracle"] > vocals_sdr["mixture"]
    assert list(document["tracks"]) == [reference_tracks.bundled_clip_name()]


# === MIR-1K: BSS Eval v3, GNSDR ===

def _rms(samples):
    return float(np.sqrt(np.mean(np.square(samples))))


def _mir1k_clip(folder, name, seconds, accompaniment_gain, seed):
    """A MIR-1K-style stereo clip (left accompaniment, right vocals) with disjoint bands.

    The accompaniment is `accompaniment_gain` times as loud as the vocals (RMS).
    """
    track = disjoint_track(rate=16000, seconds=seconds, seed=seed, channels=1)
    vocals, accompaniment = track.vocals, track.accompaniment
    accompaniment = accompaniment_gain * _rms(vocals) / _rms(accompaniment) * accompaniment
    stereo = np.concatenate([accompaniment, vocals], axis=1)
    soundfile.write(folder / f"{name}.wav", stereo, 16000, subtype="FLOAT")


@pytest.fixture(scope="module")
def mir1k_root(tmp_path_factory):
    """Two test-singer clips (1 s at 0 dB, 3 s with the band 6 dB louder), two training songs."""
    root = tmp_path_factory.mktemp("MIR-1K")
    (root / "Wavfile").mkdir()
    _mir1k_clip(root / "Wavfile", "bobon_1_01", 1.0, 1.0, seed=1)
    _mir1k_clip(root / "Wavfile", "bobon_1_02", 3.0, 2.0, seed=2)
    _mir1k_clip(root / "Wavfile", "amy_1_01", 1.0, 1.0, seed=3)
    _mir1k_clip(root / "Wavfile", "amy_2_01", 1.0, 1.0, seed=4)
    return root


def _error_20_db_below_the_vocals(track):
    """Each source plus the other scaled to 20 dB below it: SDR 20 dB, whatever the clip."""
    vocals, accompaniment = track.vocals, track.accompaniment
    return {"vocals": vocals + 0.1 * _rms(vocals) / _rms(accompaniment) * accompaniment,
            "accompaniment": accompaniment + 0.1 * _rms(accompaniment) / _rms(vocals) * vocals}


def test_gnsdr_is_the_length_weighted_sdr_gain_over_the_mixture(mir1k_root):
    loaders = reference_tracks.mir1k_loaders(str(mir1k_root), "test")
    assert [name for name, _ in loaders] == ["bobon_1_01", "bobon_1_02"]
    tracks, seconds, _ = run.evaluate_tracks(
        loaders, {"known": _error_20_db_below_the_vocals, "mixture": estimates.mixture_estimates},
        progress=False, bss_eval_v3=True)
    assert seconds == {"bobon_1_01": 1.0, "bobon_1_02": 3.0}
    first, second = (tracks[name]["known"]["vocals"] for name in seconds)
    assert first["SDR_v3"] == pytest.approx(20.0, abs=0.3)
    assert second["SDR_v3"] == pytest.approx(20.0, abs=0.3)
    # The mixture's vocals SDR is 0 dB in the first clip, -6.02 dB in the second.
    assert first["NSDR_v3"] == pytest.approx(20.0, abs=0.3)
    assert second["NSDR_v3"] == pytest.approx(26.02, abs=0.3)
    assert tracks["bobon_1_02"]["mixture"]["vocals"]["SDR_v3"] == pytest.approx(-6.02, abs=0.3)

    known = scoring.global_v3(tracks, seconds)["known"]["vocals"]
    assert known["GNSDR"] == pytest.approx((20.0 + 3 * 26.02) / 4, abs=0.3)  # not the mean, 23
    assert known["GSIR"] == pytest.approx(20.0, abs=0.5)
    assert known["GSDR"] == pytest.approx(20.0, abs=0.3)


def test_cli_reports_gnsdr_on_mir1k(tmp_path, mir1k_root, tiny_model_path, capsys):
    output = tmp_path / "out"
    assert evaluate.main(["--model", tiny_model_path, "--mir1k-root", str(mir1k_root),
                          "-o", str(output)]) == 0
    document = json.loads((output / evaluate.SCORES_FILE).read_text())
    assert list(document["tracks"]) == ["bobon_1_01", "bobon_1_02"]
    global_scores = document["bss_eval_v3"]["global"]
    assert global_scores["mixture"]["vocals"]["GNSDR"] == pytest.approx(0.0, abs=1e-6)
    assert global_scores["oracle"]["vocals"]["GNSDR"] > 10.0
    assert "GNSDR" in capsys.readouterr().out
    train = tmp_path / "train"
    assert evaluate.main(["--model", tiny_model_path, "--mir1k-root", str(mir1k_root),
                          "--subset", "train", "-o", str(train)]) == 0
    assert list(json.loads((train / evaluate.SCORES_FILE).read_text())["tracks"]) == [
        "amy_1_01", "amy_2_01"]


def test_cli_scores_the_validation_songs_the_models_run_held_out(tmp_path, mir1k_root,
                                                               tiny_model_path, capsys):
    """amy's two songs: a share of 0.15 holds out one (at least one of two), the second."""
    from keras_unet.core.model import build_model
    from keras_unet.core.saving import save_keras

    trained_on_mir1k = str(tmp_path / "mir1k.keras")
    save_keras(build_model(dataclasses.replace(
        TINY_RUN, data=DataConfig(mir1k_root=str(mir1k_root)))), trained_on_mir1k)
    output = tmp_path / "validation"
    assert evaluate.main(["--model", trained_on_mir1k, "--mir1k-root", str(mir1k_root),
                          "--subset", "validation", "-o", str(output)]) == 0
    assert list(json.loads((output / evaluate.SCORES_FILE).read_text())["tracks"]) == [
        "amy_2_01"]
    for other in ([], ["--musdb-root", str(tmp_path)]):
        assert _error_line(capsys, ["--model", tiny_model_path, "--subset", "validation",
                                    *other, "-o", str(output)]).startswith(
            "error: --subset validation needs --mir1k-root")
    assert "was not trained on MIR-1K" in _error_line(  # a model of the bundled clip
        capsys, ["--model", tiny_model_path, "--mir1k-root", str(mir1k_root),
                 "--subset", "validation", "-o", str(output)])


def test_mir1k_root_without_clips_is_one_line_and_exit_2(tmp_path, tiny_model_path, capsys):
    assert "no MIR-1K clips" in _error_line(
        capsys, ["--model", tiny_model_path, "--mir1k-root", str(tmp_path),
                 "-o", str(tmp_path / "out")])
