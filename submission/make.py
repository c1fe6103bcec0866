"""Turn the evaluator's results into the challenge's submission file, or refuse and say why.

A submission with one missing id, one changed code or one NaN scores garbage (or is
rejected) on the leaderboard after a long evaluation, so nothing is written unless every id
of the official list has a finite value of one unit.

A blend (`blend_file`) submits sum_i w_i r_i / sum_i w_i, r_i the i-th component's average rank
scaled to [0, 1]; the components (results of a supernet, training-free proxies, MACs or params)
and their values are kept beside the submission (`blend_path`) so that `python -m submission
score` shows each one next to the blend.
"""

import os
from dataclasses import dataclass

from encoding import ArchEntry, write_arch_list
from infra.atomic import atomic_write_json

from . import jsonfile
from .errors import SubmissionError
from .validate import Problem, acc_problem, spread_problems

ACCURACY, LOSS, SCORE = "accuracy", "loss", "score"
# metric name -> (results field, sign, kind). accuracy: a fraction or percent, written as is; loss: negated;
# score: any scale, higher is better, written min-max scaled into [0, 1] (an affine map: Pearson and Kendall
# tau are the score's own). The scores are evaluate/proxy_run.py's proxies (python -m evaluate proxies).
METRICS = {
    "top1": ("top1", 1.0, ACCURACY),
    "top5": ("top5", 1.0, ACCURACY),
    "neg_loss": ("loss", -1.0, LOSS),
    "zen": ("zen", 1.0, SCORE),
    "synflow": ("synflow", 1.0, SCORE),
    "naswot": ("naswot", 1.0, SCORE),
    "gradnorm": ("gradnorm", 1.0, SCORE),
}
COSTS = ("macs", "params")  # blend components counted from the codes themselves (submission.baselines)
UNITS = {"fraction": 1.0, "percent": 100.0}
BLEND_KIND = "nas-blend"


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


def _field_values(records, official, field, problems):
    """(ids, values, by_id) of `field` for every official id in list order; problems appended."""
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
        values.append(float(rec[field]))
    return ids, values, by_id


def _check_metric(metric, unit):
    if metric not in METRICS:
        raise SubmissionError(f"unknown metric {metric!r}: expected one of {sorted(METRICS)}")
    if unit not in UNITS:
        raise SubmissionError(f"unknown unit {unit!r}: expected one of {sorted(UNITS)}")
    return METRICS[metric]


def make_submission(records, archs, metric="top1", unit="fraction", problems=()):
    """Official-order entries with `acc` filled in, plus notes; raises SubmissionError listing every problem.

    `archs` is the official list (read_arch_list); `problems` are earlier ones (from load_results)
    to report together with these.
    """
    field, sign, kind = _check_metric(metric, unit)
    if unit == "percent" and kind != ACCURACY:  # (a scaled score in percent would read as mixed units)
        raise SubmissionError(f"--unit percent makes no sense for {metric!r} (not an accuracy)")
    problems = list(problems)
    notes = []
    official = {e.id: e.code for e in archs}
    ids, values, by_id = _field_values(records, official, field, problems)
    values = [sign * v for v in values]
    if kind == ACCURACY:
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
    if kind == ACCURACY and min(values) > 1:
        notes.append(f"{field} values are all > 1: read as percents")
        values = [v / 100.0 for v in values]
    if kind == SCORE:
        low, high = min(values), max(values)
        values = [(v - low) / (high - low) for v in values]
        notes.append(f"{field} min-max scaled into [0, 1] (from {low:.6g} .. {high:.6g}); rankings and Pearson "
                     f"are unchanged")
    scale = UNITS[unit]
    entries = [ArchEntry(id=i, code=official[i], acc=v * scale) for i, v in zip(ids, values, strict=True)]
    return entries, notes


def make_file(results_path, archs, out_path, metric="top1", unit="fraction"):
    """Check everything first, then write atomically: a refused run leaves no file behind."""
    records, problems = load_results(results_path)
    entries, notes = make_submission(records, archs, metric=metric, unit=unit, problems=problems)
    write_arch_list(out_path, entries)
    return entries, notes


# --- blends ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Component:
    """One part of a blend: `metric` of the results file `source` (None for macs/params), with `weight`."""
    metric: str
    source: str | None
    weight: float = 1.0

    @property
    def label(self):
        return self.metric if self.source is None else f"{self.metric}@{self.source}"


def parse_component(text):
    """'METRIC@RESULTS=WEIGHT' (weight optional, 1), or 'macs=WEIGHT' / 'params=WEIGHT' -> Component."""
    body, weight = text, 1.0
    if "=" in text:
        head, tail = text.rsplit("=", 1)
        try:
            body, weight = head, float(tail)
        except ValueError:
            raise SubmissionError(f"blend component {text!r}: weight {tail!r} is not a number") from None
    metric, _, source = body.partition("@")
    if metric in COSTS:
        if source:
            raise SubmissionError(f"blend component {text!r}: {metric} is counted from the codes; give no @RESULTS")
        source = None
    elif metric not in METRICS:
        raise SubmissionError(f"blend component {text!r}: unknown metric {metric!r}: expected one of "
                              f"{sorted(METRICS) + list(COSTS)}")
    elif not source:
        raise SubmissionError(f"blend component {text!r}: say which results file: {metric}@RESULTS.json")
    if not weight > 0 or weight != weight or weight == float("inf"):
        raise SubmissionError(f"blend component {text!r}: the weight must be a positive number, got {weight!r}")
    return Component(metric, source, weight)


def _component_values(component, archs, spec, resolution, problems):
    """(ids, signed values) of one component over the official list; its problems are labelled."""
    if component.source is None:
        from .baselines import cost_baselines

        ids, codes = [e.id for e in archs], [e.code for e in archs]
        return ids, [float(v) for v in cost_baselines(ids, codes, spec, resolution)[component.metric]]
    field, sign, _ = METRICS[component.metric]
    own = []
    try:
        records, own = load_results(component.source)
        ids, values, _ = _field_values(records, {e.id: e.code for e in archs}, field, own)
    except SubmissionError as e:
        own.append(Problem("unreadable", None, str(e)))
        ids, values = [], []
    values = [sign * v for v in values]
    own.extend(spread_problems(ids, values, what=field, check_units=False))
    problems.extend(Problem(p.kind, p.id, f"{component.label}: {p.message}") for p in own)
    return ids, values


def scaled_ranks(values):
    """Average ranks scaled to [0, 1]: (rank - 1) / (n - 1); ties share their mean rank."""
    from .metrics import average_ranks  # numpy/scipy: only for blends

    r = average_ranks(values)
    return (r - 1.0) / (len(r) - 1.0)


def blend_submission(components, archs, unit="fraction", spec=None, resolution=None):
    """(entries, notes, sidecar): acc = sum_i w_i r_i / sum_i w_i in official order, r_i the i-th component's
    scaled ranks; every component's problems together, or SubmissionError. `spec`/`resolution`: how
    macs/params components are counted (submission.baselines)."""
    if not components:
        raise SubmissionError("a blend needs at least one component")
    if unit != "fraction":  # blended ranks in percent would read as mixed units wherever some are <= 1
        raise SubmissionError(f"a blend is written as a fraction in [0, 1], not in unit {unit!r}")
    labels = [c.label for c in components]
    if len(set(labels)) != len(labels):
        raise SubmissionError(f"blend components repeat: {', '.join(labels)}")
    problems, columns = [], []
    for c in components:
        ids, values = _component_values(c, archs, spec, resolution, problems)
        columns.append(dict(zip(ids, values, strict=True)))
    if problems:
        raise SubmissionError(f"{len(problems)} problem(s) in the blend's components; nothing written:", problems)
    if len(archs) < 2:
        raise SubmissionError("a blend of ranks needs at least 2 codes")
    ids = [e.id for e in archs]
    total = sum(c.weight for c in components)
    blend = sum((c.weight / total) * scaled_ranks([col[i] for i in ids]) for c, col in zip(components, columns,
                                                                                             strict=True))
    entries = [ArchEntry(id=e.id, code=e.code, acc=float(v)) for e, v in zip(archs, blend, strict=True)]
    notes = [f"blend of {len(components)} components' ranks: "
             + ", ".join(f"{c.label} x {c.weight / total:.3g}" for c in components)]
    sidecar = {"kind": BLEND_KIND, "format": 1,
               "rule": "acc = sum_i w_i (rank_i - 1) / (n - 1) / sum_i w_i, average ranks, higher value = higher rank",
               "acc": {e.id: e.acc for e in entries},
               "components": [{"label": c.label, "metric": c.metric, "source": c.source, "weight": c.weight,
                               "values": col} for c, col in zip(components, columns, strict=True)]}
    return entries, notes, sidecar


def blend_path(submission_path):
    """Where a blend's components are kept: beside the submission, `NAME.blend.json` for `NAME.json`."""
    root, _ = os.path.splitext(os.fspath(submission_path))
    return root + ".blend.json"


def blend_file(components, archs, out_path, unit="fraction", spec=None, resolution=None):
    """Check every component first, then write the submission and its components file (atomically)."""
    entries, notes, sidecar = blend_submission(components, archs, unit=unit, spec=spec, resolution=resolution)
    atomic_write_json(blend_path(out_path), sidecar, indent=1)
    write_arch_list(out_path, entries)
    return entries, notes
