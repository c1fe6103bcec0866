"""The kit's one append-only JSON-lines writer: training logs, result shards, cost ledgers."""

import json
import os

from .errors import failing_to


class JsonLines:
    """Append-only JSON lines. Each record is one write() on an O_APPEND descriptor, so lines of
    several writers never interleave and a crash loses at most the record being written; with
    `fsync` every record is on disk before write() returns (results that must survive a power cut).
    A system error names the file and `action` ("cannot append a result to PATH: ...")."""

    def __init__(self, path, fsync=False, action="write"):
        path = os.fspath(path)
        with failing_to("create", os.path.dirname(os.path.abspath(path))):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with failing_to("open", path):
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.path, self.fsync, self.action = path, fsync, action

    def write(self, record):
        with failing_to(self.action, self.path):
            os.write(self.fd, (json.dumps(record) + "\n").encode("utf-8"))
            if self.fsync:
                os.fsync(self.fd)

    @property
    def closed(self):
        return self.fd is None

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
