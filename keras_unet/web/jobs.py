"""Separations queued and run one at a time by one worker thread: the web page's engine.

A job is one uploaded song. It waits in a first-in, first-out queue; the one
worker thread then loads its model (the last model loaded is kept for the
next job), separates the song with `keras_unet.separation.song_files.separate_file`
as `separate.py` does by default (16-bit WAV, clip mode "rescale": the same
files, bit for bit), writes FLAC copies of the two outputs (the same 16-bit
samples, compressed without loss) and the mix as a 16-bit WAV for the page's
player, and draws the spectrogram figure (`song_files.write_plot`). One
worker means two separations never run at once, however many songs are
uploaded together: on a small machine they would only slow each other down
and double the memory.

Progress is the separator's own: after every block
(`Separator.separate_blocks`'s `on_progress`) the job's share of samples
done is updated, and a removed job stops there.

Files live in a temporary folder, one subfolder per job named by a random
id: the browser's file name is shown on the page and names the downloads,
but never chooses a path on disk. A job's folder goes when the job is
removed, when it expires (`keep_seconds` after it finished), and the whole
folder when the queue closes.
"""

import dataclasses
import functools
import os
import queue
import secrets
import shutil
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from keras_unet.core.audio_io import AudioError
from keras_unet.core.config import INFERENCE_BATCH_SIZE
from keras_unet.core.messages import last_line
from keras_unet.core.saving import ModelFileError, load_model, model_file
from keras_unet.separation import song_files
from keras_unet.separation.separator import Separator
from keras_unet.web.files import display_name, download_name, flac_copy, input_suffix, write_mix
from keras_unet.web.models import describe_model

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_STATE_WORDS = {QUEUED: "is waiting its turn", RUNNING: "is running", FAILED: "failed"}

FILES = {"mix.wav": "audio/wav", "vocals.wav": "audio/wav", "accompaniment.wav": "audio/wav",
         "vocals.flac": "audio/flac", "accompaniment.flac": "audio/flac",
         "spectrograms.png": "image/png"}
"""The files a finished job holds, by name, with their media types: the only names served."""

_INPUT = "input"
_EXPIRY_CHECK_SECONDS = 60.0


class JobError(ValueError):
    """A request about a job cannot be met; the message says why."""


class QueueFullError(Exception):
    """An upload refused because `max_waiting` songs already wait their turn."""


class JobCancelled(Exception):
    """Raised in the worker when its job was removed or the queue is closing."""


@dataclasses.dataclass
class Job:
    """One song through the queue.

    Args:
        id: random hex, the job's name in URLs and its folder's name.
        name: the file name the browser sent, without folders: shown and
            used for download names, never for paths.
        folder: the job's own folder.
        input_path: the upload, in `folder`.
        model_path: the model chosen (a `.keras` file or an export folder).
        state: QUEUED, RUNNING, DONE or FAILED.
        stage: what the job is doing, in words.
        progress: share of the song separated, 0 to 1.
        error: why it failed (one line).
        warning: what fitting the 16-bit format did (`song_files.fit_warning`).
        model: the model used, in words.
        finished: time.time() when it ended (results expire from then).
        cancelled: set when the job is removed.
    """

    id: str
    name: str
    folder: str
    input_path: str
    model_path: str
    state: str = QUEUED
    stage: str = "waiting for its turn"
    progress: float = 0.0
    error: Optional[str] = None
    warning: Optional[str] = None
    model: Optional[str] = None
    finished: Optional[float] = None
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)


def _waiting_words(ahead: int) -> str:
    """A queued job's stage: how many songs run or wait before it."""
    if ahead == 0:
        return "next in line"
    return f"waiting for {ahead} song{'s' if ahead > 1 else ''} ahead of it"


def _listdir(folder: str) -> List[str]:
    """The names in a folder; none when it is gone."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


class JobQueue:
    """Songs separated one after another by one worker thread (module docstring).

    Args:
        work_dir: an empty folder of its own; removed by `close`.
        precision: the separator's arithmetic ("auto" as `separate.py`).
        batch_size: patches per model call (as `separate.py`).
        keep_seconds: how long a finished job's files stay.
        max_waiting: songs that may wait their turn at once; more uploads are
            refused (`QueueFullError`), so uploads cannot fill the disk.
    """

    def __init__(self, work_dir: str, precision: str = "auto",
                 batch_size: int = INFERENCE_BATCH_SIZE,
                 keep_seconds: float = 3600.0, max_waiting: int = 20):
        if keep_seconds <= 0:
            raise ValueError(f"`keep_seconds` must be positive. Received: {keep_seconds}")
        if max_waiting < 1:
            raise ValueError(f"`max_waiting` must be >= 1. Received: {max_waiting}")
        self.max_waiting = max_waiting
        self.work_dir = work_dir
        self.precision, self.batch_size, self.keep_seconds = precision, batch_size, keep_seconds
        self._jobs: Dict[str, Job] = {}  # in upload order
        self._lock = threading.Lock()
        self._queue: "queue.Queue[Optional[Job]]" = queue.Queue()
        self._loaded: Optional[Tuple[tuple, Separator, str]] = None  # (key, separator, words)
        self._closing = threading.Event()
        self._worker = threading.Thread(target=self._work, name="separation-worker",
                                        daemon=True)
        self._worker.start()

    # --- requests (any thread) ---

    def submit(self, name: str, save: Callable[[str], None], model_path: str) -> dict:
        """Queues an upload.

        Args:
            name: the browser's file name (shown only).
            save: save(path) writes the upload to `path`.
            model_path: a path `check_model_path` accepted.

        Returns:
            The job's `snapshot`.

        Raises:
            QueueFullError: `max_waiting` songs wait already (checked before
                the upload is stored, and again before it queues).
        """
        with self._lock:
            self._check_room()
        job_id = secrets.token_hex(8)
        folder = os.path.join(self.work_dir, job_id)
        name = display_name(name)
        job = Job(id=job_id, name=name, folder=folder,
                  input_path=os.path.join(folder, _INPUT + input_suffix(name)),
                  model_path=model_path)
        os.mkdir(folder)
        try:
            save(job.input_path)
            with self._lock:  # the queue's order is the upload order of `_jobs`
                self._check_room()
                self._jobs[job_id] = job
                self._queue.put(job)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return self.snapshot(job_id)

    def snapshot(self, job_id: str) -> dict:
        """A job as the page sees it: its state, stage, progress, messages and files.

        Raises:
            JobError: no such job (never uploaded, removed or expired).
        """
        with self._lock:
            return self._snapshot(self._job(job_id))

    def snapshots(self) -> List[dict]:
        """Every job's `snapshot`, in upload order."""
        with self._lock:
            return [self._snapshot(job) for job in self._jobs.values()]

    def _snapshot(self, job: Job) -> dict:
        """`snapshot` of a job (call with the lock held)."""
        ahead = 0  # queued or running jobs uploaded before this one
        for other in self._jobs.values():
            if other is job:
                break
            ahead += other.state in (QUEUED, RUNNING)
        done = job.state == DONE
        return {"id": job.id, "name": job.name, "state": job.state,
                "stage": _waiting_words(ahead) if job.state == QUEUED else job.stage,
                "progress": job.progress, "error": job.error, "warning": job.warning,
                "model": job.model, "files": sorted(FILES) if done else [],
                "downloads": {file: download_name(job.name, *file.split("."))
                              for file in FILES} if done else {}}

    def file_path(self, job_id: str, file: str) -> str:
        """The path of one of a finished job's `FILES`.

        Raises:
            JobError: no such job, not finished, or not one of `FILES`.
        """
        with self._lock:
            job = self._job(job_id)
            if file not in FILES:
                raise JobError(f"{file}: no such file; a job holds {', '.join(sorted(FILES))}")
            if job.state != DONE:
                raise JobError(f"{job.name}: no results: its separation "
                               f"{_STATE_WORDS[job.state]}")
            return os.path.join(job.folder, file)

    def remove(self, job_id: str) -> None:
        """Removes a job and its files; a running one stops after its current block.

        Raises:
            JobError: no such job.
        """
        with self._lock:
            job = self._job(job_id)
            job.cancelled.set()
            if job.state != RUNNING:  # a running one: the worker removes it when it stops
                self._forget(job)

    def _forget(self, job: Job) -> None:
        """Unlists a job and deletes its folder (call with the lock held).

        Both at once, so that no request sees a job without files, nor
        files of a job that is gone.
        """
        self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def close(self, timeout_seconds: float = 30.0) -> None:
        """Stops the worker (a running job after its current block) and removes every file."""
        self._closing.set()
        with self._lock:
            for job in self._jobs.values():
                job.cancelled.set()
        self._queue.put(None)
        self._worker.join(timeout_seconds)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def _check_room(self) -> None:
        """Raises QueueFullError when `max_waiting` songs wait (call with the lock held)."""
        waiting = sum(job.state == QUEUED for job in self._jobs.values())
        if waiting >= self.max_waiting:
            raise QueueFullError(f"the queue is full ({waiting} waiting their turn); upload "
                                 "this song when some are done (the server's --max-waiting)")

    def _job(self, job_id: str) -> Job:
        """The job (call with the lock held). Raises JobError when there is none."""
        job = self._jobs.get(job_id)
        if job is None:
            raise JobError("no such song: it was removed, or expired "
                           f"{self.keep_seconds / 60:g} minutes after its separation")
        return job

    # --- the worker thread ---

    def _work(self) -> None:
        """The worker thread: runs the queue's jobs in order, expiring old ones between them.

        `close` wakes it with None.
        """
        while not self._closing.is_set():
            try:
                job = self._queue.get(timeout=_EXPIRY_CHECK_SECONDS)
            except queue.Empty:
                job = None
            try:
                if job is not None and not job.cancelled.is_set():
                    self._run(job)
                self._expire()
            except Exception as error:  # the queue must outlive any one failure
                print(f"error: the separation queue: {type(error).__name__}: {error}",
                      file=sys.stderr)
                if job is not None and job.finished is None:
                    self._end(job, state=FAILED,
                              error=f"{job.name}: separation failed ({type(error).__name__})")

    def _update(self, job: Job, **values) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(job, key, value)

    def _expire(self) -> None:
        """Removes the finished jobs older than `keep_seconds`."""
        now = time.time()
        with self._lock:
            old = [job_id for job_id, job in self._jobs.items()
                   if job.finished is not None and now - job.finished > self.keep_seconds]
        for job_id in old:
            try:
                self.remove(job_id)
            except JobError:  # removed by a request meanwhile
                continue

    def _separator_for(self, model_path: str) -> Tuple[Separator, str]:
        """The separator of a model, loading it unless it is the one loaded last.

        Raises:
            ModelFileError: the path holds no model of this project.
        """
        keras_path = os.path.realpath(model_file(model_path))
        key = (keras_path, os.path.getmtime(keras_path))
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = None  # frees the previous model before loading the next
            separator = Separator(load_model(model_path), precision=self.precision,
                                  batch_size=self.batch_size)
            self._loaded = (key, separator, describe_model(model_path, separator))
        return self._loaded[1], self._loaded[2]

    def _check(self, job: Job) -> None:
        if job.cancelled.is_set():
            raise JobCancelled(job.id)

    def _on_progress(self, job: Job, done: int, total: int) -> None:
        self._check(job)
        self._update(job, progress=done / total)

    def _run(self, job: Job) -> None:
        """Separates one job; any failure becomes its one-line `error`."""
        self._update(job, state=RUNNING, stage="loading the model")

        def path(file: str) -> str:
            return os.path.join(job.folder, file)

        try:
            separator, words = self._separator_for(job.model_path)
            self._check(job)
            self._update(job, model=words, stage="separating")
            written = song_files.separate_file(  # separate.py's defaults: 16-bit WAV, rescale
                separator, job.input_path, path("vocals.wav"), path("accompaniment.wav"),
                on_progress=functools.partial(self._on_progress, job))
            self._update(job, warning=song_files.fit_warning(job.name, written),
                         stage="writing the mix and the FLAC files")
            write_mix(job.input_path, path("mix.wav"), written.scale)
            for part in ("vocals", "accompaniment"):
                self._check(job)
                flac_copy(path(f"{part}.wav"), path(f"{part}.flac"))
            self._check(job)
            self._update(job, stage="drawing the spectrograms")
            song_files.write_plot(separator, job.input_path, path("spectrograms.png"),
                                  name=job.name)
            os.remove(job.input_path)
            self._end(job, state=DONE, stage="done", progress=1.0)
        except JobCancelled:
            self._end(job)
        except ModelFileError as error:
            self._end(job, state=FAILED, error=f"model {error}")
        except OSError as error:
            self._end(job, state=FAILED,
                      error=f"{job.name}: cannot write the results ({error.strerror})")
        except (AudioError, ValueError) as error:  # the message names the upload's path, or none
            message = str(error)
            self._end(job, state=FAILED, error=message.replace(job.input_path, job.name)
                      if job.input_path in message else f"{job.name}: {message}")
        except Exception as error:  # one broken song must not stop the queue
            print(f"error: {job.name}: separation failed "
                  f"({type(error).__name__}: {last_line(str(error))})",
                  file=sys.stderr)
            self._end(job, state=FAILED,
                      error=f"{job.name}: separation failed ({type(error).__name__})")

    def _end(self, job: Job, **values) -> None:
        """Records how a job ended; a job removed meanwhile (or cancelled) goes with its files.

        Under the lock, so `remove` either sees the job running (and leaves it
        to this) or sees it ended (and removes it itself).
        """
        with self._lock:
            removed = job.cancelled.is_set()
            if removed:
                self._forget(job)
            else:
                for key, value in values.items():
                    setattr(job, key, value)
                job.finished = time.time()
        # Nothing half-written stays; `remove` may delete the folder meanwhile.
        if not removed and job.state == FAILED:
            for file in _listdir(job.folder):
                try:
                    os.remove(os.path.join(job.folder, file))
                except FileNotFoundError:
                    continue
