"""`python -m keras_unet.app`: a web page on this machine for separating songs.

    python -m keras_unet.app                   # then open http://127.0.0.1:8000/
    python -m keras_unet.app --port 8080 --max-upload-mb 500

Drop or choose audio files on the page; each is separated in turn (one at a
time, with a progress bar), then shows the spectrograms of the mix, the mask
and the vocals, plays the mix, the vocals and the accompaniment, and offers
them as WAV and FLAC. The files are those `separate.py` writes with its
defaults, bit for bit. Uploads and results live in a temporary folder,
removed when the server stops (Ctrl-C); a result is removed earlier,
--keep-minutes after its separation. Needs Flask: pip install -e '.[app]'.
"""

import argparse
import logging
import signal
import sys
import tempfile

from keras_unet.cli import (DEFAULT_MODEL, ArgumentParser, add_precision_flag, fail,
                            import_tensorflow_quietly)
from keras_unet.core.config import MODELS_DIR

LOCAL_HOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m keras_unet.app", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=LOCAL_HOST,
                        help="address to listen on (default: 127.0.0.1, this machine only; "
                             "0.0.0.0 lets other machines upload files); the page answers "
                             "only requests addressed to it")
    parser.add_argument("--port", type=int, default=8000,
                        help="port to listen on; 0 picks a free one (default: 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0,
                        help="largest audio file accepted, in MB (default: 200)")
    parser.add_argument("--max-waiting", type=int, default=20,
                        help="songs that may wait their turn at once; more uploads are "
                             "refused until some are done (default: 20)")
    parser.add_argument("--keep-minutes", type=float, default=60.0,
                        help="how long results stay after their separation (default: 60)")
    parser.add_argument("--models-dir", default=MODELS_DIR,
                        help="folder whose model folders the page offers "
                             "(default: the shipped saved_models); the only folder models "
                             "may come from")
    parser.add_argument("--any-model-path", action="store_true",
                        help="let the page's model field load any model file or folder this "
                             "user can read, not only those in --models-dir")
    add_precision_flag(parser)
    return parser


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _stop(signal_number, _frame):
    """SIGTERM ends the server like Ctrl-C, so the temporary folder is removed."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"argument --port: must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        parser.error(f"argument --max-upload-mb: must be positive, got {args.max_upload_mb:g}")
    if args.max_waiting < 1:
        parser.error(f"argument --max-waiting: must be >= 1, got {args.max_waiting}")
    if args.keep_minutes <= 0:
        parser.error(f"argument --keep-minutes: must be positive, got {args.keep_minutes:g}")
    try:
        import flask  # noqa: F401  (the optional dependency, checked before TensorFlow loads)
    except ImportError:
        fail("the web page needs Flask, an optional dependency: pip install -e '.[app]'")

    import_tensorflow_quietly()
    from werkzeug.serving import make_server

    from keras_unet.web.jobs import JobQueue
    from keras_unet.web.webapp import create_app

    work_dir = tempfile.mkdtemp(prefix="keras-unet-vocals-app-")
    jobs = JobQueue(work_dir, precision=args.precision, keep_seconds=60 * args.keep_minutes,
                    max_waiting=args.max_waiting)
    try:
        app = create_app(jobs, args.models_dir, DEFAULT_MODEL,
                         max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
                         listen_address=args.host, any_model_path=args.any_model_path)
        try:
            server = make_server(args.host, args.port, app, threaded=True)
        except (OSError, OverflowError) as error:
            fail(f"--host {args.host} --port {args.port}: cannot listen there "
                 f"({getattr(error, 'strerror', None) or error})")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        signal.signal(signal.SIGTERM, _stop)
        print(f"Separating songs at {_url(args.host, server.server_port)} "
              f"(files in {work_dir}, removed on exit; Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()  # Werkzeug's returns on Ctrl-C (KeyboardInterrupt)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        print("stopped", flush=True)
    finally:
        jobs.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
