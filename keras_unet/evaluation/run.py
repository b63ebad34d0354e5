"""Every track through every method, scored; BSS Eval in worker processes when asked.

A track that cannot be read, estimated or scored is left out and named in
the failures, so one broken file does not cost the scores of the others.
"""

import concurrent.futures
import contextlib
import multiprocessing
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from keras_unet.core.audio_io import AudioError
from keras_unet.core.messages import last_line
from keras_unet.evaluation.scoring import score_methods
from pipelines.reference_tracks import Track, TrackError

_BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_blas():
    """Environment under which spawned workers start with one BLAS/OpenMP thread each.

    BSS Eval is dominated by linear solves; `jobs` processes each running a
    multithreaded BLAS would oversubscribe the cores and run slower than one.
    The variables are read when a worker starts, so they stay set while the
    pool lives, and are restored afterwards.
    """
    saved = {name: os.environ.get(name) for name in _BLAS_THREAD_VARIABLES}
    os.environ.update({name: "1" for name in _BLAS_THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def _failure(error: Exception) -> str:
    """Why a track failed, in one line: the message of our own errors, else the type too."""
    line = last_line(str(error))
    if isinstance(error, (TrackError, AudioError)) and line:  # they say why
        return line
    return f"evaluation failed ({type(error).__name__}{': ' + line if line else ''})"


def evaluate_tracks(loaders: List[Tuple[str, Callable[[], Track]]],
                    estimators: Dict[str, Callable[[Track], Dict[str, np.ndarray]]],
                    jobs: int = 1, progress: Optional[bool] = None,
                    bss_eval_v3: bool = False
                    ) -> Tuple[Dict[str, dict], Dict[str, float], Dict[str, str]]:
    """Estimates every track with every method and scores them.

    Estimation (the model, the baselines) runs here, one track at a time;
    with `jobs > 1` the BSS Eval scoring, the slow part, runs in `jobs`
    worker processes (spawned, so a model in this process is never forked),
    with at most `2 * jobs` tracks waiting for them. A track that cannot be
    read, estimated or scored is left out and named in the failures, so one
    broken file does not cost the scores of the others.

    Args:
        loaders: (name, loader) pairs from `pipelines.reference_tracks`.
        estimators: {method: function(track) -> {source: (samples, channels)}}.
        jobs: scoring processes; 1 scores in this process.
        progress: show a tqdm bar (None: only on a terminal).
        bss_eval_v3: also score with BSS Eval v3 (`score_v3`).

    Returns:
        ({track name: {method: {source: {metric: dB}}}}, {track name:
        seconds}, {failed track name: why}), each in the order of `loaders`;
        the first two hold the scored tracks only.

    Raises:
        TrackError: two tracks have the same name.
    """
    from tqdm import tqdm

    seconds = {}

    def estimate(name, loader):
        track = loader()
        estimates = {method: estimator(track) for method, estimator in estimators.items()}
        seconds[name] = len(track.mixture) / track.sample_rate_hz
        return (track.references, estimates, track.sample_rate_hz,
                track.mixture if bss_eval_v3 else None)

    names = [name for name, _ in loaders]
    if len(set(names)) != len(names):
        raise TrackError(f"track names are not unique: {sorted(names)}")
    scores, failures = {}, {}
    bar = tqdm(total=len(loaders), unit="track", desc="evaluating",
               disable=None if progress is None else not progress)
    if jobs <= 1:
        for name, loader in loaders:
            bar.set_postfix_str(name)
            try:
                scores[name] = score_methods(*estimate(name, loader))
            except Exception as error:  # one broken track must not stop the others
                failures[name] = _failure(error)
            bar.update()
    else:
        _score_in_workers(loaders, estimate, jobs, bar, scores, failures)
    bar.close()
    scored = [name for name in names if name in scores]
    return ({name: scores[name] for name in scored}, {name: seconds[name] for name in scored},
            {name: failures[name] for name in names if name in failures})


def _score_in_workers(loaders, estimate, jobs: int, bar, scores: dict, failures: dict) -> None:
    """`evaluate_tracks` with `jobs` scoring processes: fills `scores` and `failures`."""
    context = multiprocessing.get_context("spawn")
    with _single_threaded_blas(), concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=context) as pool:
        pending = {}

        def collect(future):
            name = pending.pop(future)
            try:
                scores[name] = future.result()
            except Exception as error:  # a track BSS Eval cannot score
                failures[name] = _failure(error)
            bar.update()

        for name, loader in loaders:
            while len(pending) >= 2 * jobs:
                done, _ = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    collect(future)
            bar.set_postfix_str(name)
            try:
                arguments = estimate(name, loader)
            except Exception as error:  # one broken track must not stop the others
                failures[name] = _failure(error)
                bar.update()
                continue
            pending[pool.submit(score_methods, *arguments)] = name
        for future in concurrent.futures.as_completed(list(pending)):
            collect(future)
