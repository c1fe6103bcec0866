"""Atomic file writes: a crash mid-write must never leave a half-written result behind."""

import json
import os
import tempfile


def _default_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(directory):
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_replace(path, write):
    """Call `write(tmp_path)` on a temporary file beside `path`, fsync it, rename it over `path`.

    A killed process leaves either the old file or the new one, never half of one. `write` may
    be any serializer that takes a path (json, paddle.save, ...).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    os.fchmod(fd, _default_mode())  # mkstemp makes 0600 files; results should be as readable as open()'s
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def atomic_write_bytes(path, data: bytes):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_replace(path, write)


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, indent=None):
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")
