"""Atomic file writes: a crash mid-write must never leave a half-written result behind."""

import json
import os
import tempfile

from .errors import failing_to

TMP_PREFIX = ".tmp-"  # temporary files of atomic_replace: `.tmp-XXXXXXXX-<name>` beside `<name>`


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
    with failing_to("write", path):  # an OSError names the file, not its temporary
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix="-" + os.path.basename(path), dir=directory)
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


def sweep_temp_files(*folders, target=None):
    """Remove the temporary files a killed `atomic_replace` left directly in `folders` (only those
    of the file named `target`, when given); return their paths. Call it only while owning the
    folders (encoding.runlock): a live writer's temporary would vanish under it."""
    removed = []
    for folder in folders:
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name.startswith(TMP_PREFIX) and (target is None or name.endswith("-" + target)):
                path = os.path.join(folder, name)
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed.append(path)
    return removed


def atomic_write_bytes(path, data: bytes):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_replace(path, write)


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, indent=None):
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def file_digest(path, algorithm="sha256", chunk=1 << 22):
    """Hex digest of a file's bytes, read in chunks (weights, datasets, manifests' pins)."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
