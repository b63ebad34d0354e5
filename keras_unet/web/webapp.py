"""The web page for separating songs: a Flask application over a `jobs.JobQueue`.

One page (`static/index.html`, with its script and style sheet: plain files,
no build step, nothing fetched from elsewhere) and a small JSON API that the
page's script calls:

    GET    /api/config                      the models to offer, the upload limit
    POST   /api/jobs                        one song (form fields "file", "model") -> its job
    GET    /api/jobs                        every job
    GET    /api/jobs/<id>                   one job: state, stage, progress, messages
    DELETE /api/jobs/<id>                   remove it (a running one stops)
    GET    /api/jobs/<id>/<file>            one of `jobs.FILES`; ?download=1 to save it

Every refusal is a JSON {"error": one line} with a 4xx status, which the
page shows beside the song: a file that is not audio, a model path that
holds no model, an upload over the size limit (413), one more upload
while `--max-waiting` songs wait (429), an upload or removal
sent by another site's page (403: a browser's `Origin` that is not this
server). The server never answers with a traceback.

Other sites cannot reach it through a visitor's browser: every route
answers 403 to a `Host` header that does not name the address the server
listens on (a DNS-rebound name would otherwise pass the `Origin` check,
which compares with `Host`); answers carry `X-Content-Type-Options:
nosniff` and a Content-Security-Policy that allows nothing from elsewhere.
Models come from the models folder only, unless the server's owner allows
any path (`any_model_path`).
"""

import ipaddress
import os
import urllib.parse

from flask import Flask, jsonify, request, send_file
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from keras_unet.web.jobs import FILES, JobError, JobQueue, QueueFullError
from keras_unet.web.models import check_model_path, list_models
from keras_unet.core.saving import ModelFileError

WEB_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
"""The page's files, installed with the package (setup.cfg's package_data)."""

FORM_OVERHEAD_BYTES = 1 << 16
"""Room for the multipart form around the file, on top of the upload limit."""

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Names of this machine a browser on it may use when the server listens on loopback."""

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
}
"""On every answer: the page's files are what they say, and it loads nothing from elsewhere."""


def host_allowed(host: str, listen_address: str) -> bool:
    """Whether a request's `Host` header names the address the server listens on.

    On a loopback address, the loopback names too; on every address
    (0.0.0.0, ::), any IP address and the loopback names. A name that DNS
    points here (rebinding) is never among them.

    Args:
        host: the header, with or without a port ("[::1]:8000").
        listen_address: the address given to the server.
    """
    name = (urllib.parse.urlsplit("//" + host).hostname or "").rstrip(".")
    listen = listen_address.strip("[]").lower()
    if name == listen:
        return True
    every_address = listen in ("0.0.0.0", "::")
    if name in LOOPBACK_NAMES and (every_address or _is_loopback(listen)):
        return True
    return every_address and _is_ip_address(name)


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    return name == "localhost" or (_is_ip_address(name) and ipaddress.ip_address(name).is_loopback)


def create_app(jobs: JobQueue, models_dir: str, default_model: str, max_upload_bytes: int,
               listen_address: str = "127.0.0.1", any_model_path: bool = False) -> Flask:
    """The Flask application of the page.

    Args:
        jobs: the queue that separates the uploads (its owner closes it).
        models_dir: the folder whose export folders the model selector lists.
        default_model: the model selected at first.
        max_upload_bytes: the largest file accepted; larger ones get a 413.
        listen_address: the address the server listens on: requests whose
            `Host` names another get a 403 (`host_allowed`).
        any_model_path: accept model paths outside `models_dir`.

    Returns:
        The application: serve it with any WSGI server (`python -m
        keras_unet.app` uses Werkzeug's), or test it with `app.test_client()`.
    """
    if max_upload_bytes < 1:
        raise ValueError(f"`max_upload_bytes` must be >= 1. Received: {max_upload_bytes}")
    app = Flask(__name__, static_folder=WEB_FOLDER, static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes + FORM_OVERHEAD_BYTES
    limit_text = f"{max_upload_bytes / 2 ** 20:g} MB"
    _add_address_guard(app, listen_address)
    _add_same_site_guard(app)
    _add_routes(app, jobs, models_dir, default_model, max_upload_bytes, limit_text,
                models_from=None if any_model_path else models_dir)
    _add_error_handlers(app, limit_text)
    return app


def _refuse(message: str, status: int):
    """The JSON refusal of every error: {"error": one line}, with its status."""
    return jsonify(error=message), status


def _add_address_guard(app: Flask, listen_address: str) -> None:
    """A 403 on every route for a `Host` that is not this server's; the security headers."""
    @app.before_request
    def this_address_only():
        if not host_allowed(request.host, listen_address):
            return _refuse("refused: this server answers only to the address it listens on",
                           403)
        return None

    @app.after_request
    def security_headers(response):
        response.headers.update(SECURITY_HEADERS)
        return response


def _add_same_site_guard(app: Flask) -> None:
    @app.before_request
    def same_site_only():
        """Refuses uploads and removals that another site's page sends through the browser.

        A browser names the page behind a cross-site request in `Origin`;
        this page's own requests come from this server's address.
        """
        origin = request.headers.get("Origin")
        if request.method in ("POST", "DELETE") and origin is not None and \
                urllib.parse.urlsplit(origin).netloc != request.host:
            return _refuse(f"refused: a request from another site ({origin}); use the page "
                           "this server serves", 403)
        return None


def _add_routes(app: Flask, jobs: JobQueue, models_dir: str, default_model: str,
                max_upload_bytes: int, limit_text: str, models_from) -> None:
    """The page's routes; `models_from`: the only folder of models (None: anywhere)."""
    @app.get("/")
    def page():
        return app.send_static_file("index.html")

    @app.get("/api/config")
    def config():
        models = [{"name": name, "path": path} for name, path in list_models(models_dir)]
        return jsonify(models=models, default=default_model, max_upload_bytes=max_upload_bytes,
                       max_upload_text=limit_text)

    @app.post("/api/jobs")
    def upload():
        upload = request.files.get("file")
        if upload is None:
            return _refuse("no file in the upload (form field \"file\")", 400)
        try:
            model_path = check_model_path(request.form.get("model", ""), models_from)
        except ModelFileError as error:
            return _refuse(str(error), 400)

        def save(path):
            """Writes the upload; the whole request's limit leaves room for the form."""
            upload.save(path)
            if os.path.getsize(path) > max_upload_bytes:
                raise RequestEntityTooLarge()

        try:
            job = jobs.submit(upload.filename or "", save, model_path)
        except QueueFullError as error:
            return _refuse(str(error), 429)
        except OSError as error:
            return _refuse(f"cannot store the upload ({error.strerror})", 507)
        return jsonify(job=job), 202

    @app.get("/api/jobs")
    def all_jobs():
        return jsonify(jobs=jobs.snapshots())

    @app.get("/api/jobs/<job_id>")
    def one_job(job_id):
        return jsonify(job=jobs.snapshot(job_id))

    @app.delete("/api/jobs/<job_id>")
    def remove(job_id):
        jobs.remove(job_id)
        return jsonify(removed=job_id)

    @app.get("/api/jobs/<job_id>/<file>")
    def job_file(job_id, file):
        path = jobs.file_path(job_id, file)
        download = request.args.get("download") == "1"
        name = jobs.snapshot(job_id)["downloads"][file]
        return send_file(path, mimetype=FILES[file], as_attachment=download,
                         download_name=name, conditional=True, max_age=0)


def _add_error_handlers(app: Flask, limit_text: str) -> None:
    @app.errorhandler(JobError)
    def no_such_job(error):
        return _refuse(str(error), 404)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_):
        return _refuse(f"file too large: uploads are limited to {limit_text} (start the "
                      "server with a larger --max-upload-mb to accept it)", 413)

    @app.errorhandler(HTTPException)
    def http_error(error):
        return _refuse(f"{error.name}: {error.description}", error.code)

    @app.errorhandler(Exception)
    def unexpected(error):
        app.logger.error("%s %s failed: %s: %s", request.method, request.path,
                         type(error).__name__, error)
        return _refuse(f"the server failed ({type(error).__name__}); see its terminal", 500)
