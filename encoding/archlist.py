"""The challenge's architecture-list JSON: `{"archN": {"acc": float, "arch": CODE}, ...}`.

Key order is the submission order, so it is kept; duplicate ids (which `json.load` would
silently collapse) are an error.
"""

import json
import math
from dataclasses import dataclass

from infra.atomic import atomic_write_text
from infra.errors import KitError

from .errors import ArchListError


@dataclass(frozen=True)
class ArchEntry:
    id: str
    code: str
    acc: float = 0.0


def _pairs_no_duplicates(path):
    def hook(pairs):
        seen = set()
        for key, value in pairs:
            if key in seen:
                # Entries are objects; a repeated key among object-valued pairs is a repeated id.
                kind = "id" if isinstance(value, dict) else "key"
                raise ArchListError(f"{path}: duplicate {kind} {key!r}")
            seen.add(key)
        return dict(pairs)

    return hook


def loads_arch_list(text, source="<string>"):
    try:
        data = json.loads(text, object_pairs_hook=_pairs_no_duplicates(source))
    except json.JSONDecodeError as e:
        raise ArchListError(f"{source}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise ArchListError(f"{source}: expected a JSON object of id -> {{'acc', 'arch'}}, got {type(data).__name__}")
    entries = []
    for key, value in data.items():
        if not isinstance(value, dict):
            raise ArchListError(f"{source}: entry {key!r} is not an object")
        if "arch" not in value:
            raise ArchListError(f"{source}: entry {key!r} has no 'arch' key")
        if not isinstance(value["arch"], str):
            raise ArchListError(f"{source}: entry {key!r} has a non-string 'arch': {value['arch']!r}")
        entries.append(ArchEntry(id=key, code=value["arch"], acc=value.get("acc", 0.0)))
    return entries


def read_text(path, error=ArchListError):
    """A UTF-8 file's text; a missing, unreadable or non-UTF-8 file raises `error` naming the path."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None


def read_arch_list(path):
    """Entries of an architecture list, in file order. `acc` is kept as written (not checked)."""
    return loads_arch_list(read_text(path), source=str(path))


def dumps_arch_list(entries):
    data = {}
    for e in entries:
        if e.id in data:
            raise ArchListError(f"duplicate id {e.id!r}")
        acc = e.acc
        if isinstance(acc, float) and not math.isfinite(acc):
            raise ArchListError(f"entry {e.id!r}: acc {acc!r} is not finite")
        data[e.id] = {"acc": acc, "arch": e.code}
    return json.dumps(data) + "\n"


def write_arch_list(path, entries):
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    atomic_write_text(path, dumps_arch_list(entries))


def seeded_subset(entries, n, seed):
    """`n` of `entries` drawn without replacement by a generator seeded with `seed`, kept in list
    order: the kit's one way to pick a sample of an architecture list (fidelity, latency)."""
    import numpy as np

    keep = np.sort(np.random.default_rng(int(seed)).choice(len(entries), size=int(n), replace=False))
    return [entries[i] for i in keep]


def check_codes(entries, source, outcome="evaluated"):
    """The Arch of every entry (parsed, residual ties checked); a KitError naming the first 20 invalid ones
    and the count, before anything runs ('nothing was OUTCOME')."""
    from .arch import parse
    from .errors import CodeError
    from .space import check_ties

    archs, bad = [], []
    for e in entries:
        try:
            arch = parse(e.code)
            check_ties(arch, e.code)
            archs.append(arch)
        except CodeError as err:
            bad.append(f"{e.id}: {err}")
    if bad:
        shown = "\n  ".join(bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise KitError(f"{len(bad)} of {len(entries)} codes in {source} are invalid; nothing was {outcome}:\n"
                       f"  {shown}{more}")
    return archs
