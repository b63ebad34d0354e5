"""The web page's server (keras_unet.web.webapp, .jobs, keras_unet.app) through Flask's test client.

A tiny random model keeps separations fast. What the page shows is checked
against what `separate.py` writes for the same song and model, byte for
byte; progress against the separator's blocks; the queue by an instrumented
separation that records when each one runs.
"""

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import soundfile

from keras_unet.cli import separate
from keras_unet.separation import song_files
from keras_unet.web.files import display_name, download_name
from keras_unet.web.jobs import FILES, Job, JobQueue, _waiting_words
from keras_unet.separation.separator import BLOCK_SECONDS
from keras_unet.web.webapp import WEB_FOLDER, create_app, host_allowed
from keras_unet.core.config import ModelConfig, RunConfig
from keras_unet.core.model import build_model
from keras_unet.core.saving import save_keras

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_UPLOAD_BYTES = 1 << 20
RATE_HZ = 8192  # the model's rate: a block is BLOCK_SECONDS * RATE_HZ samples exactly


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A models folder: "tiny" (a random 2-layer model), "empty" (no model) and a stray file."""
    folder = tmp_path_factory.mktemp("models")
    model = build_model(RunConfig(model=ModelConfig(depth=2, base_channels=4)))
    os.makedirs(folder / "tiny")
    save_keras(model, str(folder / "tiny" / "model.keras"))
    os.makedirs(folder / "empty")
    (folder / "notes.txt").write_text("not a model\n")
    return folder


@pytest.fixture
def tiny(models_dir):
    return str(models_dir / "tiny")


@pytest.fixture
def server(tmp_path, models_dir, tiny):
    """(test client, job queue, its work folder); the queue is closed afterwards."""
    work = tmp_path / "work"
    work.mkdir()
    queue = JobQueue(str(work), precision="float32")
    app = create_app(queue, str(models_dir), tiny, MAX_UPLOAD_BYTES)
    yield app.test_client(), queue, work
    queue.close()


def _tone(seconds, rate=RATE_HZ, channels=2, seed=0):
    """Harmonics and a little noise, float32 (samples, channels)."""
    rng = np.random.default_rng(seed)
    time_s = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * time_s + k)
               for k, f in enumerate(np.geomspace(110.0, 0.4 * rate, 8))) / 8
    return np.stack([0.5 * tone + 0.01 * rng.standard_normal(len(time_s))
                     for _ in range(channels)], axis=1).astype(np.float32)


def _wav_bytes(samples, rate=RATE_HZ):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _post(client, data: bytes, name: str, model):
    """Uploads one file: (status code, JSON body)."""
    response = client.post("/api/jobs", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(data), name), "model": str(model)})
    return response.status_code, response.get_json()


def _wait(client, job_id, states=("done", "failed"), timeout_seconds=120.0):
    """Polls a job as the page does until it reaches one of `states`; returns it."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").get_json()["job"]
        if job["state"] in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {job['state']} ({job['stage']})")


def _in_steps(data: bytes):
    """An audio file's samples as 16-bit integers, int64 (samples, channels)."""
    samples, _ = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return samples.astype(np.int64)


def test_the_page_its_files_and_the_models_offered(server, tiny):
    client, _, _ = server
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for needed in ('id="drop"', 'type="file" multiple', '<select id="model">',
                   'src="/static/app.js"', 'href="/static/style.css"', "<progress"):
        assert needed in html
    for name in os.listdir(WEB_FOLDER):  # nothing the page loads comes from elsewhere
        text = client.get(f"/static/{name}").get_data(as_text=True)
        assert text == open(os.path.join(WEB_FOLDER, name), encoding="utf-8").read()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
    config = client.get("/api/config").get_json()
    assert config == {"models": [{"name": "tiny", "path": tiny}], "default": tiny,
                      "max_upload_bytes": MAX_UPLOAD_BYTES, "max_upload_text": "1 MB"}


def test_a_song_separates_as_separate_py_does_with_real_progress(server, tiny, tmp_path,
                                                                 monkeypatch):
    """2.5 blocks of song: progress at each block's end; every file equals separate.py's."""
    client, queue, work = server
    reported = []
    on_progress = queue._on_progress

    def record(job, done, total):
        on_progress(job, done, total)
        reported.append((done, total, queue.snapshot(job.id)["progress"]))

    monkeypatch.setattr(queue, "_on_progress", record)
    song = _tone(2.5 * BLOCK_SECONDS)
    data = _wav_bytes(song)
    status, body = _post(client, data, "My Song.wav", tiny)
    assert status == 202 and body["job"]["name"] == "My Song.wav"
    job = _wait(client, body["job"]["id"])
    assert job["state"] == "done" and job["error"] is None and job["warning"] is None

    block, total = int(BLOCK_SECONDS * RATE_HZ), len(song)
    assert reported == [(block, total, 0.4), (2 * block, total, 0.8), (total, total, 1.0)]
    assert job["progress"] == 1.0 and job["files"] == sorted(FILES)
    assert job["model"] == (f"{tiny}: seed U-Net (2 layers, 4 base channels) at 8192 Hz, "
                            "n_fft 1024, hop 768; float32")

    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "My Song.wav"
    path.write_bytes(data)
    assert separate.main([str(path), "-o", str(tmp_path / "cli"), "--model", tiny,
                          "--precision", "float32", "--plot"]) == 0
    cli = tmp_path / "cli" / "My Song"
    served = {file: client.get(f"/api/jobs/{job['id']}/{file}").get_data() for file in FILES}
    assert served["vocals.wav"] == (cli / "vocals.wav").read_bytes()
    assert served["accompaniment.wav"] == (cli / "accompaniment.wav").read_bytes()
    assert served["spectrograms.png"] == (cli / separate.PLOT_NAME).read_bytes()
    vocals, accompaniment = _in_steps(served["vocals.wav"]), _in_steps(served["accompaniment.wav"])
    assert np.abs(vocals).max() > 100
    np.testing.assert_array_equal(_in_steps(served["vocals.flac"]), vocals)
    np.testing.assert_array_equal(_in_steps(served["accompaniment.flac"]), accompaniment)
    np.testing.assert_array_equal(_in_steps(served["mix.wav"]), _in_steps(data))
    np.testing.assert_array_equal(vocals + accompaniment, _in_steps(data))

    download = client.get(f"/api/jobs/{job['id']}/vocals.flac?download=1")
    assert download.headers["Content-Disposition"] == (
        'attachment; filename="My Song - vocals.flac"')
    assert download.mimetype == "audio/flac"
    assert sorted(os.listdir(work / job["id"])) == sorted(FILES)  # the upload is gone


def test_bad_input_is_one_clear_message(server, models_dir, tiny, tmp_path):
    client, _, work = server
    song = _wav_bytes(_tone(0.5))
    broken = tmp_path / "broken.keras"
    broken.write_text("not a zip archive")
    broken = models_dir / "broken.keras"
    broken.write_text("not a zip archive")
    refused = [  # (model, what the message says), refused before anything queues
        (models_dir / "absent.keras", f"model {models_dir / 'absent.keras'}: no such model file"),
        (models_dir / "empty", "not a model folder of this project (no model.keras)"),
        ("  ", "model: none chosen; pick one or type the path of a .keras file")]
    for model, message in refused:
        status, body = _post(client, song, "song.wav", model)
        assert status == 400 and message in body["error"], body
    response = client.post("/api/jobs", data={"model": tiny})
    assert response.status_code == 400
    assert response.get_json() == {"error": 'no file in the upload (form field "file")'}
    assert os.listdir(work) == []

    status, not_audio = _post(client, b"just some text\n" * 100, "notes.mp3", tiny)
    status_model, bad_model = _post(client, song, "song.wav", broken)
    assert status == status_model == 202
    not_audio, bad_model = (_wait(client, job["job"]["id"]) for job in (not_audio, bad_model))
    assert not_audio["state"] == "failed"
    assert not_audio["error"].startswith("notes.mp3: not a readable audio file")
    assert str(work) not in not_audio["error"]  # names the song, not the folder
    assert bad_model["state"] == "failed"
    assert bad_model["error"].startswith(f"model {broken}: not a readable .keras model (")
    for job in (not_audio, bad_model):
        assert os.listdir(work / job["id"]) == []  # nothing half-written stays
        response = client.get(f"/api/jobs/{job['id']}/vocals.wav")
        assert response.status_code == 404
        assert response.get_json()["error"].endswith("no results: its separation failed")

    unknown = client.get("/api/jobs/0123456789abcdef")
    assert unknown.status_code == 404 and "no such song" in unknown.get_json()["error"]
    stray = client.get(f"/api/jobs/{not_audio['id']}/input.mp3")
    assert stray.status_code == 404 and stray.get_json()["error"].startswith("input.mp3: no such")
    assert client.get("/api/nothing").status_code == 404


def test_a_file_name_never_chooses_a_path(server, tiny, tmp_path):
    client, _, work = server
    song = _tone(0.5)
    names = {"../../etc/passwd.wav": "passwd.wav", f"{tmp_path}/abs.wav": "abs.wav",
             "": "upload"}
    ids = {}
    for sent, shown in names.items():
        status, body = _post(client, _wav_bytes(song), sent, tiny)
        assert status == 202 and body["job"]["name"] == shown
        ids[body["job"]["id"]] = shown
    for job_id, shown in ids.items():
        job = _wait(client, job_id)
        assert job["state"] == "done", job
        stem = shown[:-4] if shown.endswith(".wav") else shown
        assert job["downloads"]["vocals.wav"] == f"{stem} - vocals.wav"
    assert sorted(os.listdir(work)) == sorted(ids)
    for job_id in ids:
        assert re.fullmatch(r"[0-9a-f]{16}", job_id)
        assert sorted(os.listdir(work / job_id)) == sorted(FILES)
    assert not os.path.exists(work / ".." / ".." / "etc" / "passwd.wav")
    assert not os.path.exists(tmp_path / "abs.wav")
    outside = {name for folder, _, files in os.walk(tmp_path.parent) for name in files
               if not folder.startswith(str(work))}
    assert not outside & {"passwd.wav", "abs.wav"}


@pytest.mark.parametrize("sent, shown", [("..\\..\\boot.ini.wav", "boot.ini.wav"),
                                         ("C:\\Users\\me\\song.mp3", "song.mp3"),
                                         ("a/b\\c.flac", "c.flac"), (" / ", "upload")])
def test_a_browser_file_name_is_shown_without_its_folders(sent, shown):
    """Windows paths too: their backslashes do not survive the test client's multipart encoding."""
    assert display_name(sent) == shown


def test_download_names_drop_the_known_suffix_and_unsafe_characters():
    assert download_name("song.stem.mp4", "vocals", "wav") == "song - vocals.wav"
    assert download_name('a<b>:"c".mp3', "accompaniment", "flac") == \
        "a_b___c_ - accompaniment.flac"


def test_another_sites_page_cannot_upload_or_remove(server, tiny):
    """A page elsewhere can make the browser post here; its `Origin` names it."""
    client, _, work = server
    form = {"file": (io.BytesIO(_wav_bytes(_tone(0.5))), "song.wav"), "model": tiny}
    response = client.post("/api/jobs", data=form, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403
    assert response.get_json()["error"].startswith(
        "refused: a request from another site (http://evil.example)")
    assert os.listdir(work) == []
    form = {"file": (io.BytesIO(_wav_bytes(_tone(0.5))), "song.wav"), "model": tiny}
    response = client.post("/api/jobs", data=form, headers={"Origin": "http://localhost"})
    assert response.status_code == 202  # the page itself (the test client's host)
    job_id = response.get_json()["job"]["id"]
    refused = client.delete(f"/api/jobs/{job_id}", headers={"Origin": "http://127.0.0.1:1"})
    assert refused.status_code == 403 and os.listdir(work) == [job_id]


ROUTES = [("get", "/"), ("get", "/static/app.js"), ("get", "/api/config"),
          ("get", "/api/jobs"), ("post", "/api/jobs"), ("get", "/api/jobs/0123456789abcdef"),
          ("delete", "/api/jobs/0123456789abcdef"),
          ("get", "/api/jobs/0123456789abcdef/vocals.wav"), ("get", "/api/nothing")]


@pytest.mark.parametrize("host", ["rebind.example:8767", "rebind.example", "127.0.0.1.nip.io",
                                  "localhost.example:80", "192.168.1.20"])
def test_a_host_of_another_name_gets_403_from_every_route(server, tiny, host):
    """Issue 22, item 9: a DNS-rebound name passes the Origin check, which compares with Host."""
    client, _, work = server
    for method, route in ROUTES:
        headers = {"Host": host, "Origin": f"http://{host}"}
        data = ({"file": (io.BytesIO(_wav_bytes(_tone(0.2))), "song.wav"), "model": tiny}
                if method == "post" else None)
        response = getattr(client, method)(route, headers=headers, data=data)
        assert response.status_code == 403, (method, route)
        assert "answers only to the address it listens on" in response.get_json()["error"]
    assert os.listdir(work) == []


def test_hosts_the_server_answers_to():
    assert all(host_allowed(host, "127.0.0.1")
               for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"))
    assert host_allowed("[::1]:8000", "::1") and host_allowed("localhost", "::1")
    assert host_allowed("192.168.1.20:8000", "192.168.1.20")
    assert not host_allowed("localhost:8000", "192.168.1.20")
    assert host_allowed("192.168.1.20:8000", "0.0.0.0") and host_allowed("localhost", "::")
    assert not any(host_allowed(host, "0.0.0.0") for host in ("rebind.example", "", "a.b:1"))


def test_a_model_outside_the_models_folder_is_refused_without_saying_if_it_exists(
        server, models_dir, tiny, tmp_path):
    """Item 10: /etc/hostname, a folder, a missing path and a link out all read the same."""
    client, _, work = server
    link = models_dir / "link_out"
    if not link.exists():
        link.symlink_to(tmp_path)
    answers = set()
    for model in ("/etc/hostname", os.path.expanduser("~"), tmp_path / "absent.keras",
                  "/nonexistent/x.keras", link, models_dir / ".." / "elsewhere.keras",
                  f"{models_dir}-twin/tiny"):
        status, body = _post(client, _wav_bytes(_tone(0.2)), "song.wav", model)
        assert status == 400
        assert str(model) not in body["error"] and "hostname" not in body["error"]
        answers.add(body["error"])
    assert answers == {"model: only the models folder's models can be used here (the "
                       "server's owner can allow others with --any-model-path)"}
    assert os.listdir(work) == []


def test_answers_say_nosniff_and_allow_nothing_from_elsewhere(server):
    client, _, _ = server
    for route in ("/", "/static/app.js", "/api/config", "/api/nothing"):
        headers = client.get(route).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_an_oversize_upload_is_refused_with_413(server, tiny):
    """Refused past the limit, whether the request's length or the file's size shows it."""
    client, _, work = server
    message = {"error": "file too large: uploads are limited to 1 MB (start the server with "
                        "a larger --max-upload-mb to accept it)"}
    for size in (MAX_UPLOAD_BYTES + 1, 2 * MAX_UPLOAD_BYTES):
        assert _post(client, b"x" * size, "long.wav", tiny) == (413, message)
        assert os.listdir(work) == []
    status, body = _post(client, b"x" * MAX_UPLOAD_BYTES, "at the limit.wav", tiny)
    assert status == 202  # accepted, then refused as audio
    assert os.path.getsize(work / body["job"]["id"] / "input.wav") == MAX_UPLOAD_BYTES
    assert "not a readable audio file" in _wait(client, body["job"]["id"])["error"]


class _OneAtATime:
    """Wraps `song_files.separate_file` to record when each separation runs.

    The first one waits for `release`, so the test can look at the queue
    while a separation runs.
    """

    def __init__(self, separate_file):
        self.separate_file = separate_file
        self.lock, self.release, self.started = threading.Lock(), threading.Event(), []
        self.active = self.most_active = 0
        self.spans = []  # (input path, start, end)

    def __call__(self, separator, path, *args, **kwargs):
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            first = not self.started
            self.started.append(path)
        began = time.monotonic()
        if first:
            assert self.release.wait(60)
        try:
            return self.separate_file(separator, path, *args, **kwargs)
        finally:
            with self.lock:
                self.active -= 1
                self.spans.append((path, began, time.monotonic()))


def test_uploads_queue_and_never_separate_at_once(server, tiny, monkeypatch):
    client, _, work = server
    probe = _OneAtATime(song_files.separate_file)
    monkeypatch.setattr(song_files, "separate_file", probe)
    songs = [_tone(1.0, seed=seed) for seed in range(3)]
    ids = [_post(client, _wav_bytes(song), f"song{index}.wav", tiny)[1]["job"]["id"]
           for index, song in enumerate(songs)]
    first = _wait(client, ids[0], states=("running",))
    deadline = time.monotonic() + 60
    while not probe.started and time.monotonic() < deadline:
        time.sleep(0.01)
    second, third = (client.get(f"/api/jobs/{job_id}").get_json()["job"] for job_id in ids[1:])
    assert first["state"] == "running"
    assert (second["state"], second["stage"]) == ("queued", "waiting for 1 song ahead of it")
    assert _waiting_words(0) == "next in line"
    assert (third["state"], third["stage"]) == ("queued", "waiting for 2 songs ahead of it")
    assert [job["name"] for job in client.get("/api/jobs").get_json()["jobs"]] == [
        "song0.wav", "song1.wav", "song2.wav"]
    time.sleep(0.3)  # the worker must not start the others meanwhile
    assert len(probe.started) == 1
    probe.release.set()

    for job_id, song in zip(ids, songs):
        job = _wait(client, job_id)
        assert job["state"] == "done"
        vocals, accompaniment = (_in_steps(client.get(f"/api/jobs/{job_id}/{part}.wav").data)
                                 for part in ("vocals", "accompaniment"))
        np.testing.assert_array_equal(vocals + accompaniment, _in_steps(_wav_bytes(song)))
    assert probe.most_active == 1
    assert [os.path.dirname(path) for path in probe.started] == [str(work / i) for i in ids]
    spans = sorted(probe.spans, key=lambda span: span[1])
    assert all(earlier[2] <= later[1] for earlier, later in zip(spans, spans[1:]))


def test_a_failed_job_removed_as_it_ends_and_any_failure_leave_the_queue_working(
        server, tiny, tmp_path, monkeypatch):
    client, queue, _ = server
    # The page's Remove can delete a failed job's folder between the failure
    # being recorded and its clean-up (`JobQueue._end`, outside the lock).
    gone = Job(id="0" * 16, name="broken.wav", folder=str(tmp_path / "removed"),
               input_path=str(tmp_path / "removed" / "input.wav"), model_path=tiny)
    queue._end(gone, state="failed", error="broken.wav: not audio")
    assert gone.state == "failed"
    # Whatever a job raises, the worker thread goes on with the next one.
    run = queue._run
    calls = []

    def fails_once(job):
        calls.append(job.name)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        run(job)

    monkeypatch.setattr(queue, "_run", fails_once)
    _, first = _post(client, _wav_bytes(_tone(0.5)), "first.wav", tiny)
    _, second = _post(client, _wav_bytes(_tone(0.5)), "second.wav", tiny)
    assert _wait(client, second["job"]["id"])["state"] == "done"
    assert calls == ["first.wav", "second.wav"]
    first = client.get(f"/api/jobs/{first['job']['id']}").get_json()["job"]
    assert (first["state"], first["error"]) == ("failed",
                                                "first.wav: separation failed (RuntimeError)")


def _held_queue(tmp_path, models_dir, tiny, monkeypatch, **options):
    """A queue of its own whose first separation waits for `probe.release`.

    Returns:
        (test client, queue, its work folder, the `_OneAtATime` probe).
    """
    work = tmp_path / "work"
    work.mkdir()
    queue = JobQueue(str(work), precision="float32", **options)
    client = create_app(queue, str(models_dir), tiny, MAX_UPLOAD_BYTES).test_client()
    probe = _OneAtATime(song_files.separate_file)
    monkeypatch.setattr(song_files, "separate_file", probe)
    return client, queue, work, probe


def test_uploads_past_max_waiting_are_refused_and_not_stored(tmp_path, models_dir, tiny,
                                                             monkeypatch):
    client, queue, work, probe = _held_queue(tmp_path, models_dir, tiny, monkeypatch,
                                             max_waiting=1)
    try:
        running = _post(client, _wav_bytes(_tone(0.5)), "running.wav", tiny)[1]["job"]["id"]
        _wait(client, running, states=("running",))
        waiting = _post(client, _wav_bytes(_tone(0.5)), "waiting.wav", tiny)[1]["job"]["id"]
        status, body = _post(client, _wav_bytes(_tone(0.5)), "one too many.wav", tiny)
        assert status == 429
        assert body["error"].startswith("the queue is full (1 waiting their turn)")
        assert sorted(os.listdir(work)) == sorted([running, waiting])  # nothing stored
        probe.release.set()
        assert _wait(client, waiting)["state"] == "done"
        status, body = _post(client, _wav_bytes(_tone(0.5)), "later.wav", tiny)
        assert status == 202  # room again
    finally:
        probe.release.set()
        queue.close()


def test_removing_stops_a_running_job_and_results_expire(tmp_path, models_dir, tiny,
                                                         monkeypatch):
    client, queue, work, probe = _held_queue(tmp_path, models_dir, tiny, monkeypatch,
                                             keep_seconds=0.5)
    blocks = []
    on_progress = queue._on_progress

    def record(job, done, total):
        blocks.append(done)
        on_progress(job, done, total)

    monkeypatch.setattr(queue, "_on_progress", record)
    rmtree = shutil.rmtree

    def slow_rmtree(path, **kwargs):  # a request must not see a job gone and its files there
        time.sleep(0.3)
        rmtree(path, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", slow_rmtree)
    long_id = _post(client, _wav_bytes(_tone(3 * BLOCK_SECONDS)), "long.wav", tiny)[1]["job"]["id"]
    _wait(client, long_id, states=("running",))
    while not probe.started:
        time.sleep(0.01)
    assert client.delete(f"/api/jobs/{long_id}").get_json() == {"removed": long_id}
    probe.release.set()
    next_id = _post(client, _wav_bytes(_tone(0.5)), "next.wav", tiny)[1]["job"]["id"]
    assert _wait(client, next_id)["state"] == "done"
    assert blocks[:1] == [int(BLOCK_SECONDS * RATE_HZ)] and blocks[1:] == [int(0.5 * RATE_HZ)]
    assert client.get(f"/api/jobs/{long_id}").status_code == 404
    assert os.listdir(work) == [next_id]

    time.sleep(0.6)  # the worker expires old jobs after each job it runs
    last_id = _post(client, _wav_bytes(_tone(0.5)), "last.wav", tiny)[1]["job"]["id"]
    _wait(client, last_id)
    deadline = time.monotonic() + 30
    while client.get(f"/api/jobs/{next_id}").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    expired = client.get(f"/api/jobs/{next_id}")
    assert expired.status_code == 404
    assert "expired 0.00833333 minutes after its separation" in expired.get_json()["error"]
    assert next_id not in os.listdir(work)
    queue.close()
    assert not work.exists()


def _start_server(*flags):
    return subprocess.Popen([sys.executable, "-m", "keras_unet.app", *flags],
                            cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_the_command_line_serves_on_localhost_and_cleans_up(models_dir, tiny):
    process = _start_server("--port", "0", "--models-dir", str(models_dir))
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"Separating songs at (http://127\.0\.0\.1:(\d+)/) \(files in "
                             r"(\S+), removed on exit; Ctrl-C stops\)\n", line)
        assert match, line or process.stderr.read()
        url, work = match.group(1), match.group(3)
        assert os.path.isdir(work)
        with urllib.request.urlopen(url + "api/config", timeout=30) as response:
            assert b'"name":"tiny"' in response.read().replace(b" ", b"")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out == "stopped\n" and err == ""
    assert not os.path.exists(work)


@pytest.mark.parametrize("flags, message", [
    (["--port", "70000"], "argument --port: must be in 0..65535, got 70000"),
    (["--max-upload-mb", "0"], "argument --max-upload-mb: must be positive, got 0"),
    (["--keep-minutes", "-1"], "argument --keep-minutes: must be positive, got -1"),
    (["--max-waiting", "0"], "argument --max-waiting: must be >= 1, got 0")])
def test_bad_flags_are_one_line(flags, message):
    done = subprocess.run([sys.executable, "-m", "keras_unet.app", *flags], cwd=REPOSITORY,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: python -m keras_unet.app: {message}\n"
