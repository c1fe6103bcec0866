"""Scores on disk, keyed by code and by the evaluation setting that produced them, so no code is ever
scored twice under one setting: not across generations, not across reruns, not across searches that
share the file (`search.cache`).

The setting is the digest of what an oracle pins (`Oracle.pinned()`: weights' sha256, model, images,
calibration batches, precision). Records are JSON lines (infra.jsonl, fsynced) of the form
`{"id": CODE, "setting": DIGEST, "top1": ..., "top5": ..., "loss": ...}`, read as result shards are
(evaluate.results_store.read_shard): a torn last line from a kill is dropped and truncated away.
"""

import hashlib
import json
import os

from evaluate.results_store import drop_torn_tail, read_shard
from infra.jsonl import JsonLines

SCORE_KEYS = ("top1", "top5", "loss")


def setting_digest(pinned):
    """sha256 (16 hex digits) of an oracle's pinned setting."""
    return hashlib.sha256(json.dumps(pinned, sort_keys=True).encode()).hexdigest()[:16]


class ScoreCache:
    """{(setting, code): scores}, loaded from `path`; `writer` (one process) appends new scores."""

    def __init__(self, path, writer=True):
        self.path, self.writer = os.fspath(path), writer
        self.scores = {}
        self.settings = {}
        if writer:
            drop_torn_tail(self.path)  # a torn last record from a kill
        if os.path.exists(self.path):
            for r in read_shard(self.path)[0]:
                if r.get("type") == "setting":
                    self.settings[r["setting"]] = r["pinned"]
                else:
                    self.scores[(r["setting"], r["id"])] = {k: r[k] for k in SCORE_KEYS if k in r}
        self._file = None

    def _append(self, record):
        if not self.writer:
            return
        if self._file is None:
            self._file = JsonLines(self.path, fsync=True, action="append a score to")
        self._file.write(record)

    def add_setting(self, digest, pinned):
        if digest not in self.settings:
            self.settings[digest] = pinned
            self._append({"id": "", "type": "setting", "setting": digest, "pinned": pinned})

    def get(self, digest, code):
        return self.scores.get((digest, code))

    def missing(self, digest, codes):
        """`codes` without a score under `digest`, first occurrence order, no repeats."""
        out, seen = [], set()
        for c in codes:
            if c not in seen and (digest, c) not in self.scores:
                out.append(c)
                seen.add(c)
        return out

    def put(self, digest, code, scores):
        scores = {k: float(scores[k]) for k in SCORE_KEYS}
        self.scores[(digest, code)] = scores
        self._append({"id": code, "setting": digest, **scores})

    def count(self, digest):
        return sum(1 for (d, _) in self.scores if d == digest)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
