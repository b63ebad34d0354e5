"""Atomic file writes: a temporary file beside the target, renamed when complete.

A process killed mid-write leaves the previous file (or none), never a
truncated one. The temporary name holds `.part` (ignored by git) and the
final file gets the usual permissions (0666 less the umask), not mkstemp's
private 0600.
"""

import contextlib
import os
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: str, suffix: str = "") -> str:
    """Creates an empty temporary file in `path`'s folder (made if missing); returns its path.

    Raises:
        OSError: the folder cannot be created or written.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=f".part{suffix}", dir=folder)
    os.close(descriptor)
    os.chmod(temporary, 0o666 & ~_umask())
    return temporary


def publish(temporary: str, path: str) -> None:
    """Renames a finished temporary file to its final name (atomic on one filesystem)."""
    os.replace(temporary, path)


def discard(temporary: str) -> None:
    """Deletes a temporary file if it is still there."""
    if os.path.exists(temporary):
        os.unlink(temporary)


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yields a temporary path to write; it becomes `path` when the block ends without error.

    Args:
        path: the final file.
        suffix: ending of the temporary name after `.part`, for writers that
            pick the format from the extension (for example ".keras").

    Raises:
        OSError: the folder cannot be written; whatever the block raises
            (the temporary file is deleted).
    """
    temporary = temporary_beside(path, suffix)
    try:
        yield temporary
        publish(temporary, path)
    finally:
        discard(temporary)
