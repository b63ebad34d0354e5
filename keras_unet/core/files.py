"""Atomic file writes: a temporary file beside the target, renamed when complete.

A process killed mid-write leaves the previous file (or none), never a
truncated one. The temporary name holds `.part` (ignored by git) and the
final file gets the usual permissions (0666 less the umask), not mkstemp's
private 0600.
"""

import contextlib
import os
import shutil
import tempfile

from keras_unet.core.messages import error_line

FULL_BYTES = 1 << 20
"""Free space under which a write that failed without a reason is blamed on a full device."""


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
    try:
        os.close(descriptor)
        os.chmod(temporary, 0o666 & ~_umask())
    except BaseException:  # a signal too: the caller never learns the name to delete
        discard(temporary)
        raise
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


def publish_together(pairs) -> None:
    """Renames finished temporary files to their paths: all of them, or none.

    Files already at those paths are first moved aside, and put back if any
    rename fails or is interrupted (a signal raises in the middle of it), so
    the paths hold either every old file or every new one, never a mix.

    Args:
        pairs: (temporary, path) for each file.

    Raises:
        OSError: a rename failed; the old files are back in place.
    """
    moved_aside, placed = [], []
    try:
        for _, path in pairs:
            if os.path.lexists(path):
                aside = temporary_beside(path, ".old")
                os.replace(path, aside)
                moved_aside.append((aside, path))
        for temporary, path in pairs:
            os.replace(temporary, path)
            placed.append(path)
    except BaseException:
        for path in placed:
            discard(path)
        for aside, path in moved_aside:
            os.replace(aside, path)
        raise
    for aside, _ in moved_aside:
        discard(aside)


def folder_problem(path: str):
    """Why files cannot be written in the folder `path` (made when missing), or None.

    Checked before long work starts, so a read-only place or a file where a
    folder should be is refused at once rather than after it. Nothing is
    created: for a missing folder, its nearest existing parent is checked.
    """
    path = os.path.abspath(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        return "exists and is not a folder"
    existing = path
    while not os.path.isdir(existing):
        parent = os.path.dirname(existing)
        if os.path.lexists(existing) or parent == existing:
            return f"cannot be created ({existing} is not a folder)"
        existing = parent
    if not os.access(existing, os.W_OK | os.X_OK):
        return "is not writable" if existing == path else f"cannot be created in {existing}"
    return None


def reason(error: Exception, folder: str = None) -> str:
    """What went wrong, in words, for an error from writing (never "None").

    Some writers raise without an errno (an OSError whose strerror is None)
    or with libsndfile's "System error."; for those the free space of
    `folder` (default: that of the error's file) decides whether to say the
    device is full.
    """
    strerror = getattr(error, "strerror", None)
    text = strerror or error_line(error)
    filename = getattr(error, "filename", None)
    folder = folder or (os.path.dirname(os.path.abspath(filename)) if filename else None)
    if (strerror is None or "System error" in text) and folder and _is_full(folder):
        return "no space left on the device"
    return text


def _is_full(folder: str) -> bool:
    try:
        return shutil.disk_usage(folder).free < FULL_BYTES
    except OSError:
        return False
