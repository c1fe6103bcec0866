"""Reading JSON without losing what `json.load` hides: duplicate keys (it keeps the last silently).

Submission and ground-truth files are `{"archN": {...}}` objects, where a repeated id is a
real mistake the leaderboard would resolve arbitrarily, so every object remembers its
repeated keys.
"""

import json

from encoding.archlist import read_text

from .errors import SubmissionError


class JsonObject(dict):
    """A JSON object plus the keys that appeared more than once in it (the last value wins, as in json)."""

    duplicates = ()


def _object(pairs):
    obj = JsonObject(pairs)
    if len(obj) != len(pairs):  # rare: find the repeats only then, so 45,000 entries load at C speed
        seen, repeats = set(), []
        for key, _ in pairs:
            (repeats.append if key in seen else seen.add)(key)
        obj.duplicates = repeats
    return obj


def loads(text, source="<string>"):
    try:
        return json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as e:
        raise SubmissionError(f"{source}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def load(path):
    return loads(read_text(path, SubmissionError), source=str(path))


def is_number(value):
    """JSON numbers only: bool is an int subclass in Python but `true` is not an accuracy."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
