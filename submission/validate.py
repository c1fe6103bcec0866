"""Would the leaderboard accept this submission? Every problem, each named by its id.

The leaderboard matches entries to the official list by id and correlates `acc` with the
truth, so anything that breaks the matching (missing, extra, repeated ids, changed codes) or
the correlation (non-numbers, NaN, all-equal values, fractions mixed with percents) is an
error; a different key order is only a warning.
"""

import math
from dataclasses import dataclass, field

from encoding import CodeError, parse

from . import jsonfile
from .errors import SubmissionError

ID_EXAMPLES = 10  # ids quoted in a message about a whole group (mixed units, all equal)


@dataclass(frozen=True)
class Problem:
    kind: str  # missing, extra, duplicate, bad-entry, invalid-code, changed-code, non-numeric, non-finite, ...
    id: str | None
    message: str

    def __str__(self):
        return self.message


@dataclass
class ValidationReport:
    source: str
    n_entries: int
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems


def _quote_ids(ids):
    shown = ", ".join(ids[:ID_EXAMPLES])
    return shown + (f" and {len(ids) - ID_EXAMPLES} more" if len(ids) > ID_EXAMPLES else "")


def acc_problem(ident, value, what="acc"):
    """The problem with one `acc` value, or None if it is a finite number."""
    if not jsonfile.is_number(value):
        return Problem("non-numeric", ident, f"{ident}: {what} {value!r} is not a number")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        return Problem("non-finite", ident, f"{ident}: {what} {value!r} is not finite")
    return None


def spread_problems(ids, values, what="acc", check_units=True):
    """Whole-file problems of finite values: all equal (no correlation) or fractions mixed with percents.

    Mixed means: every value lies in [0, 100] (so they look like accuracies) while some are
    <= 1 (fractions) and some > 1 (percents). The ids of the smaller group are quoted.
    """
    problems = []
    if len(values) >= 2 and min(values) == max(values):
        problems.append(Problem(
            "all-equal", None,
            f"all {len(values)} {what} values are equal ({values[0]!r}; ids {ids[0]} .. {ids[-1]}): "
            f"correlation with the truth is undefined"))
    if check_units and values and min(values) >= 0 and max(values) <= 100:
        fractions = [i for i, v in zip(ids, values, strict=True) if v <= 1]
        percents = [i for i, v in zip(ids, values, strict=True) if v > 1]
        if fractions and percents:
            few, few_kind, many_kind = ((fractions, "<= 1 (fractions)", "> 1 (percents)")
                                        if len(fractions) <= len(percents)
                                        else (percents, "> 1 (percents)", "<= 1 (fractions)"))
            problems.append(Problem(
                "mixed-units", few[0],
                f"{what} values look like a mix of fractions and percents: {len(few)} are {few_kind} "
                f"while {len(ids) - len(few)} are {many_kind}; the minority: {_quote_ids(few)}"))
    return problems


def check_submission(data, archs, source="<submission>"):
    """Problems and warnings of a parsed submission (`jsonfile.loads` output) against the official list."""
    report = ValidationReport(source=source, n_entries=len(data) if isinstance(data, dict) else 0)
    problems, warnings = report.problems, report.warnings
    if not isinstance(data, dict):
        problems.append(Problem("not-object", None, f"{source}: expected a JSON object of id -> "
                                                    f"{{'acc', 'arch'}}, got {type(data).__name__}"))
        return report
    official = {e.id: e.code for e in archs}
    for ident in getattr(data, "duplicates", []):
        problems.append(Problem("duplicate", ident, f"{ident}: duplicate id (appears more than once in the file)"))
    good_ids, good_values = [], []
    for ident, entry in data.items():
        if ident not in official:
            problems.append(Problem("extra", ident, f"{ident}: id is not in the official list"))
            continue
        if not isinstance(entry, dict):
            problems.append(Problem("bad-entry", ident, f"{ident}: entry is {type(entry).__name__}, "
                                                        f"expected an object with 'acc' and 'arch'"))
            continue
        for key in getattr(entry, "duplicates", []):
            problems.append(Problem("duplicate", ident, f"{ident}: key {key!r} appears more than once"))
        for key in ("acc", "arch"):
            if key not in entry:
                problems.append(Problem("bad-entry", ident, f"{ident}: no {key!r} key"))
        code = entry.get("arch")
        if "arch" in entry and code != official[ident]:
            try:
                parse(code)
            except CodeError as e:
                problems.append(Problem("invalid-code", ident, f"{ident}: {e}"))
            else:
                problems.append(Problem("changed-code", ident, f"{ident}: code {code!r} differs from the "
                                                               f"official list's {official[ident]!r}"))
        if "acc" in entry:
            bad = acc_problem(ident, entry["acc"])
            if bad:
                problems.append(bad)
            else:
                good_ids.append(ident)
                good_values.append(entry["acc"])
    for ident in official:
        if ident not in data:
            problems.append(Problem("missing", ident, f"{ident}: id of the official list is missing"))
    problems.extend(spread_problems(good_ids, good_values))
    if not problems and list(data) != list(official):
        first = next(i for i, (a, b) in enumerate(zip(data, official, strict=True)) if a != b)
        warnings.append(f"entries are not in the official list's order (first difference at position {first + 1}: "
                        f"{list(data)[first]} where the list has {list(official)[first]})")
    return report


def validate_file(path, archs):
    """Like check_submission, but an unreadable or malformed file is a problem, not an exception."""
    try:
        data = jsonfile.load(path)
    except SubmissionError as e:
        return ValidationReport(source=str(path), n_entries=0, problems=[Problem("unreadable", None, str(e))])
    return check_submission(data, archs, source=str(path))
