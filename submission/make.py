"""Turn the evaluator's results into the challenge's submission file, or refuse and say why.

A submission with one missing id, one changed code or one NaN scores garbage (or is
rejected) on the leaderboard after a long evaluation, so nothing is written unless every id
of the official list has a finite value of one unit.
"""

from encoding import ArchEntry, write_arch_list

from . import jsonfile
from .errors import SubmissionError
from .validate import Problem, acc_problem, spread_problems

# metric name -> (results field, sign, is an accuracy in [0, 1])
METRICS = {
    "top1": ("top1", 1.0, True),
    "top5": ("top5", 1.0, True),
    "neg_loss": ("loss", -1.0, False),
}
UNITS = {"fraction": 1.0, "percent": 100.0}


def load_results(path):
    """Records of an evaluator results file: a list of `{"id": ..., ...}` or an object keyed by id.

    Returns (records, problems); each record is a dict that has an "id".
    """
    data = jsonfile.load(path)
    records, problems = [], []
    if isinstance(data, list):
        for i, rec in enumerate(data):
            if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
                problems.append(Problem("bad-record", None, f"{path}: record {i} is not an object with a string 'id'"))
            else:
                records.append(rec)
    elif isinstance(data, dict):
        for ident in data.duplicates:
            problems.append(Problem("duplicate", ident, f"{ident}: duplicate id in {path}"))
        for ident, rec in data.items():
            if not isinstance(rec, dict):
                problems.append(Problem("bad-record", ident, f"{ident}: record is {type(rec).__name__}, not an object"))
            elif rec.get("id", ident) != ident:
                problems.append(Problem("bad-record", ident, f"{ident}: record's own id is {rec['id']!r}"))
            else:
                records.append({**rec, "id": ident})
    else:
        raise SubmissionError(f"{path}: expected a JSON list of records or an object keyed by id, "
                              f"got {type(data).__name__}")
    return records, problems


def make_submission(records, archs, metric="top1", unit="fraction", problems=()):
    """Official-order entries with `acc` filled in, plus notes; raises SubmissionError listing every problem.

    `archs` is the official list (read_arch_list); `problems` are earlier ones (from load_results)
    to report together with these.
    """
    if metric not in METRICS:
        raise SubmissionError(f"unknown metric {metric!r}: expected one of {sorted(METRICS)}")
    if unit not in UNITS:
        raise SubmissionError(f"unknown unit {unit!r}: expected one of {sorted(UNITS)}")
    field, sign, is_accuracy = METRICS[metric]
    if unit == "percent" and not is_accuracy:
        raise SubmissionError(f"--unit percent makes no sense for {metric!r} (not an accuracy)")
    problems = list(problems)
    notes = []
    official = {e.id: e.code for e in archs}
    by_id = {}
    for rec in records:
        ident = rec["id"]
        if ident in by_id:
            problems.append(Problem("duplicate", ident, f"{ident}: more than one result record"))
            continue
        by_id[ident] = rec
        if ident not in official:
            problems.append(Problem("extra", ident, f"{ident}: result for an id that is not in the official list"))
    ids, values = [], []
    for ident, code in official.items():
        rec = by_id.get(ident)
        if rec is None:
            problems.append(Problem("missing", ident, f"{ident}: no result for this id of the official list"))
            continue
        if "code" not in rec:
            problems.append(Problem("changed-code", ident, f"{ident}: result record has no 'code' to check "
                                                           f"against the official list's {code!r}"))
        elif rec["code"] != code:
            problems.append(Problem("changed-code", ident, f"{ident}: result code {rec['code']!r} differs "
                                                           f"from the official list's {code!r}"))
        if field not in rec:
            problems.append(Problem("no-value", ident, f"{ident}: result record has no {field!r}"))
            continue
        bad = acc_problem(ident, rec[field], what=field)
        if bad:
            problems.append(bad)
            continue
        ids.append(ident)
        values.append(sign * float(rec[field]))
    if is_accuracy:
        outside = [i for i, v in zip(ids, values, strict=True) if not 0 <= v <= 100]
        for ident in outside:
            problems.append(Problem("not-accuracy", ident, f"{ident}: {field} {by_id[ident][field]!r} is outside "
                                                           f"[0, 1] (fraction) and [0, 100] (percent)"))
        if not outside:
            problems.extend(spread_problems(ids, values, what=field))
    else:
        problems.extend(spread_problems(ids, values, what=field, check_units=False))
    if problems:
        raise SubmissionError(f"{len(problems)} problem(s) in the results; nothing written:", problems)
    if is_accuracy and min(values) > 1:
        notes.append(f"{field} values are all > 1: read as percents")
        values = [v / 100.0 for v in values]
    scale = UNITS[unit]
    entries = [ArchEntry(id=i, code=official[i], acc=v * scale) for i, v in zip(ids, values, strict=True)]
    return entries, notes


def make_file(results_path, archs, out_path, metric="top1", unit="fraction"):
    """Check everything first, then write atomically: a refused run leaves no file behind."""
    records, problems = load_results(results_path)
    entries, notes = make_submission(records, archs, metric=metric, unit=unit, problems=problems)
    write_arch_list(out_path, entries)
    return entries, notes
