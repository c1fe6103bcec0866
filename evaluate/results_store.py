"""Per-rank JSON-lines shards of subnet results, resumable after a kill, merged once complete.

A 45,000-subnet run takes hours and may be killed at any moment, so every finished subnet is
one line appended (flushed and fsynced) to its rank's shard. A restart reads every shard,
skips the ids already there and drops a torn last line (a record cut off mid-write: no final
newline, or not JSON). The merge into `results.json` (list order, atomic rename) happens only
when every id has a record; since it always re-reads the shards, running it twice, from any
rank or any later invocation, writes the same file and never duplicates a record.

A `manifest.json` beside the shards pins the architecture list and evaluation settings (and the device
kind with its float32 math, when the caller pins it), so a directory can never mix results of two
different runs, nor CPU and GPU shards.
"""

import glob
import hashlib
import json
import os

from encoding import KitError
from infra.atomic import atomic_write_text
from infra.config import differences
from infra.jsonl import JsonLines

RESULT_KEYS = ("id", "code", "top1", "top5", "loss", "calibration", "seconds")
SHARD_GLOB = "shard-*.jsonl"
MANIFEST = "manifest.json"
RESULTS = "results.json"


LEGACY_DEVICE = {"kind": "cpu"}


def describe_device(facts):
    """'cpu', or 'gpu (TF32 off)' / 'gpu (TF32 cuDNN on, cuBLAS off)', of runtime.device.precision_facts."""
    kind = facts.get("kind", "?")
    if kind != "gpu":
        return kind
    cudnn, cublas = facts.get("cudnn_tf32"), facts.get("cublas_tf32")
    if cudnn == cublas:
        return f"gpu (TF32 {'on' if cudnn else 'off'})"
    return f"gpu (TF32 cuDNN {'on' if cudnn else 'off'}, cuBLAS {'on' if cublas else 'off'})"


class ResultsStoreError(KitError):
    """A results directory is corrupt or belongs to a different list or setting."""


def rank_share(items, rank, world):
    """This rank's strided share of `items` (items[rank::world]): balanced in cost when a list is
    sorted by size, and every item lands on exactly one rank."""
    if world < 1 or not 0 <= rank < world:
        raise KitError(f"rank {rank} is not in range for world size {world}")
    return list(items)[rank::world]


def list_fingerprint(entries):
    """sha256 over the ordered (id, code) pairs of an architecture list."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.id}\t{e.code}\n".encode())
    return h.hexdigest()


def read_shard(path):
    """(records, valid_bytes): the complete records of a shard and the byte length they occupy.

    Only the last line may be torn; a bad line followed by more lines means the file was edited
    or corrupted in some other way, and is an error rather than something to skip silently.
    """
    with open(path, "rb") as f:
        data = f.read()
    records, pos = [], 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break  # no newline: torn tail
        line = data[pos:end]
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "id" not in rec:
                raise ValueError("not a record")
        except ValueError:
            if end + 1 < len(data):
                raise ResultsStoreError(f"{path}: line {len(records) + 1} is not a valid record and is not the "
                                        f"last line; the shard is corrupt (remove it to recompute its subnets)"
                                        ) from None
            break  # a complete-looking but unparsable last line: torn as well
        records.append(rec)
        pos = end + 1
    return records, pos


def drop_torn_tail(path):
    """Truncate a JSONL file (a shard, a score cache) after its last whole record: a process killed mid-write
    leaves a torn line. Returns the bytes dropped (0 when the file is whole or absent). Only the file's one
    writer may call it."""
    if not os.path.exists(path):
        return 0
    _, valid = read_shard(path)
    size = os.path.getsize(path)
    if valid < size:
        with open(path, "r+b") as f:
            f.truncate(valid)
            f.flush()
            os.fsync(f.fileno())
    return size - valid


class ResultsStore:
    """The results directory of one architecture list (`entries`: ArchEntry-like with .id, .code);
    `keys`: the fields each record keeps (evaluate run's by default; the proxy run names its own)."""

    def __init__(self, out_dir, entries, keys=RESULT_KEYS):
        self.out_dir = os.fspath(out_dir)
        self.entries = list(entries)
        self.keys = tuple(keys)
        self.index = {e.id: i for i, e in enumerate(self.entries)}
        if len(self.index) != len(self.entries):
            raise ResultsStoreError("architecture list has duplicate ids")
        self._file = None

    # --- paths --------------------------------------------------------------------------
    def shard_path(self, rank):
        return os.path.join(self.out_dir, f"shard-{rank:05d}.jsonl")

    @property
    def results_path(self):
        return os.path.join(self.out_dir, RESULTS)

    @property
    def manifest_path(self):
        return os.path.join(self.out_dir, MANIFEST)

    # --- setup --------------------------------------------------------------------------
    def check_manifest(self, settings):
        """Write the manifest, or check that an existing one names the same list and settings.

        A manifest without any record behind it (a run that failed before its first subnet) is
        simply replaced. Every rank may call this: the content is a function of the inputs only,
        so concurrent atomic writes of it are harmless.
        """
        os.makedirs(self.out_dir, exist_ok=True)
        manifest = {"list_sha256": list_fingerprint(self.entries), "count": len(self.entries),
                    "settings": settings}
        manifest = json.loads(json.dumps(manifest))  # normalise tuples etc. for comparison
        if os.path.exists(self.manifest_path) and self._has_records():
            with open(self.manifest_path, encoding="utf-8") as f:
                try:
                    old = json.load(f)
                except ValueError:
                    raise ResultsStoreError(f"{self.manifest_path} is not valid JSON") from None
            if old.get("list_sha256") != manifest["list_sha256"]:
                raise ResultsStoreError(f"{self.out_dir} holds results of a different architecture list "
                                        f"({old.get('count')} codes); use another --out directory")
            old_settings = dict(old.get("settings", {}))
            if "device" in manifest["settings"]:
                # manifests from before the device was pinned were written by CPU runs
                old_settings.setdefault("device", LEGACY_DEVICE)
                was, now = old_settings["device"], manifest["settings"]["device"]
                if was != now:
                    raise ResultsStoreError(f"{self.out_dir} holds results computed on {describe_device(was)}, this "
                                            f"run computes on {describe_device(now)}: their numbers differ, so they "
                                            f"do not mix; use another --out directory or the same device")
            changed = differences(old_settings, manifest["settings"])
            if changed:
                raise ResultsStoreError(f"{self.out_dir} holds results computed with other settings "
                                        f"({'; '.join(changed)}); use another --out directory or restore the settings")
            return
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    def _has_records(self):
        return any(read_shard(p)[0] for p in glob.glob(os.path.join(self.out_dir, SHARD_GLOB)))

    def repair(self, rank):
        """Truncate a torn last line of this rank's own shard (only its owner ever writes it)."""
        return drop_torn_tail(self.shard_path(rank))

    # --- reading ------------------------------------------------------------------------
    def records(self):
        """{id: record} over all shards; first occurrence wins (shards in name order)."""
        found = {}
        for path in sorted(glob.glob(os.path.join(self.out_dir, SHARD_GLOB))):
            recs, _ = read_shard(path)
            for rec in recs:
                ident = rec["id"]
                if ident not in self.index:
                    raise ResultsStoreError(f"{path}: record for id {ident!r}, which is not in the architecture list")
                code = self.entries[self.index[ident]].code
                if rec.get("code") != code:
                    raise ResultsStoreError(f"{path}: record for {ident!r} has code {rec.get('code')!r} but the "
                                            f"list has {code!r}")
                found.setdefault(ident, rec)
        return found

    def pending(self, rank, world, done=None):
        """Entries of this rank's share that have no record yet, in list order."""
        done = self.records() if done is None else done
        return [e for e in rank_share(self.entries, rank, world) if e.id not in done]

    def resume(self, rank, world):
        """(done records, this rank's share, its pending entries) after repairing this rank's shard; a torn
        last record dropped is said on stderr (a run killed mid-write)."""
        import sys

        dropped = self.repair(rank)
        if dropped:
            print(f"rank {rank}: dropped a torn last record ({dropped} bytes) from {self.shard_path(rank)}",
                  file=sys.stderr)
        done = self.records()
        return done, rank_share(self.entries, rank, world), self.pending(rank, world, done)

    def missing(self, done=None):
        done = self.records() if done is None else done
        return [e for e in self.entries if e.id not in done]

    # --- writing ------------------------------------------------------------------------
    def open(self, rank):
        self._file = JsonLines(self.shard_path(rank), fsync=True, action="append a result to")
        return self

    def append(self, record):
        """One record, one line, on disk before this returns (flush + fsync)."""
        if self._file is None:
            raise RuntimeError("ResultsStore.append before open()")
        self._file.write({k: record[k] for k in self.keys})

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def merge(self):
        """Write results.json (records in list order) if every id is done; return its path or None."""
        done = self.records()
        if len(done) < len(self.entries):
            return None
        lines = [json.dumps({k: done[e.id][k] for k in self.keys}) for e in self.entries]
        atomic_write_text(self.results_path, "[\n" + ",\n".join(lines) + "\n]\n")
        return self.results_path
