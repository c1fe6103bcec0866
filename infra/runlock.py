"""One writer per run folder: an exclusive lock held for the whole life of the writing process.

Every command that writes a run folder (`pretrain.py run`/`gt`, supernet training, `evaluate
run`) takes the lock first, then sweeps the temporary files a killed writer left
(`encoding.atomic.sweep_temp_files`). A second writer fails at once with one line naming the
folder and the holder's pid and host. The lock is `flock` on `<folder>/.lock`: the kernel drops
it when the holding process dies, however it dies, so a killed run never blocks its rerun (a
stale `.lock` file is harmless). Under `paddle.distributed.launch` only rank 0 takes it, one
lock per run (`runtime.device.claim_run_folder`).

`flock` is exact on a local filesystem. On NFS, Linux maps it to POSIX locks, which hold across
machines only where the server's lock manager works; some cluster filesystems keep it local to
one machine or refuse it (then the run goes on with a warning). A run folder on a shared
filesystem should therefore be written by one launch at a time, whatever the lock says.
"""

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import time

from .errors import KitError, failing_to

LOCK_NAME = ".lock"
# flock is not available on this filesystem: go on without it (warned once per lock file)
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_held = {}  # lock file path -> [fd or None, times acquired by this process]


class FolderInUse(KitError):
    """Another live process holds the folder's lock."""


def lock_path(folder, name=LOCK_NAME):
    return os.path.join(os.path.abspath(os.fspath(folder)), name)


def _holder(path):
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    since = f", since {info['since']}" if info.get("since") else ""
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}{since}"


def _in_use(what, path):
    return FolderInUse(f"{what} is in use by another run ({_holder(path)}): wait for it to finish or stop it; "
                       f"the lock goes with its process, so a killed run never blocks the rerun")


def _try_lock(fd, tries=3):
    """flock(LOCK_EX | LOCK_NB); a few quick retries ride out another process's probe (check_free)."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(0.05)
    return False


def acquire(folder, name=LOCK_NAME, what=None):
    """Lock `folder` (created if needed) for this process until `release` or its death.

    Re-entrant within a process (flock would otherwise refuse a second descriptor of our own).
    Raises FolderInUse, naming `what` (default: the folder) and the holder, when another process
    has it. Returns the lock file's path.
    """
    path = lock_path(folder, name)
    held = _held.get(path)
    if held is not None:
        held[1] += 1
        return path
    what = what or os.fspath(folder)
    with failing_to("write to", folder):
        os.makedirs(folder, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = _try_lock(fd)
            except OSError as e:
                os.close(fd)
                if e.errno not in _UNSUPPORTED:
                    raise
                print(f"warning: cannot lock {what} ({os.strerror(e.errno)}): this filesystem has no working "
                      f"file locks, so make sure no other run writes to it", file=sys.stderr, flush=True)
                _held[path] = [None, 1]
                return path
            if not locked:
                os.close(fd)
                raise _in_use(what, path)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                break
            os.close(fd)  # the holder removed this file while we opened it: lock the file there now
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
    _held[path] = [fd, 1]
    return path


def release(folder, name=LOCK_NAME):
    """Undo one `acquire`; the last one removes the lock file and unlocks."""
    path = lock_path(folder, name)
    held = _held.get(path)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _held[path]
    fd = held[0]
    if fd is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiting process re-checks the inode it locked
        os.close(fd)


@contextlib.contextmanager
def holding(folder, name=LOCK_NAME, what=None):
    acquire(folder, name, what)
    try:
        yield
    finally:
        release(folder, name)


def check_free(folder, name=LOCK_NAME, what=None):
    """Raise FolderInUse if another process holds the lock now; writes nothing (a launcher's
    early check: the run itself still takes the lock)."""
    path = lock_path(folder, name)
    if path in _held:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file (or unreadable): the run itself will find out
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(what or os.fspath(folder), path) from None
    except OSError:
        pass
    finally:
        os.close(fd)


def exit_with_launcher():
    """Under `paddle.distributed.launch`, have the kernel kill this worker when the launcher dies.

    The launcher starts each worker in its own session, so a launcher killed by SIGKILL (or a
    whole process group killed) would leave workers training on, writing a folder a rerun then
    shares. Linux only; elsewhere a no-op.
    """
    if not sys.platform.startswith("linux") or "PADDLE_TRAINER_ID" not in os.environ:
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher died before the request was in place
        os.kill(os.getpid(), signal.SIGKILL)
