"""Local leaderboard: score a submission against standalone-trained accuracies you measured.

Scores on the ground truth's ids only (you will have trained a few hundred nets, not 45,000),
next to the MACs and parameter-count baselines, with bootstrap intervals so two supernets
are not ranked on noise.
"""

import time

import numpy as np

from encoding import NetSpec

from . import ceiling, jsonfile, metrics
from .baselines import cost_baselines
from .errors import MetricError, SubmissionError
from .validate import Problem, acc_problem

HEADERS = {"submission": "submission", "macs": "MACs", "params": "params"}


def _entries(path, what):
    data = jsonfile.load(path)
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: expected a JSON object of id -> {{'acc', 'arch'}}, got {type(data).__name__}")
    problems = [Problem("duplicate", i, f"{i}: duplicate id in the {what}") for i in data.duplicates]
    return data, problems


def read_ground_truth(path):
    """(ids, codes, accs) of a challenge-format file; extra per-entry keys (e.g. "seeds") are ignored."""
    data, problems = _entries(path, "ground truth")
    ids, codes, accs = [], [], []
    for ident, entry in data.items():
        if not isinstance(entry, dict):
            problems.append(Problem("bad-entry", ident, f"{ident}: ground-truth entry is not an object"))
            continue
        code, acc = entry.get("arch"), entry.get("acc")
        if not isinstance(code, str):
            problems.append(Problem("bad-entry", ident, f"{ident}: ground-truth entry has no string 'arch'"))
            continue
        bad = acc_problem(ident, acc)
        if bad:
            problems.append(Problem(bad.kind, ident, f"{bad.message} (ground truth)"))
            continue
        ids.append(ident)
        codes.append(code)
        accs.append(float(acc))
    if problems:
        raise SubmissionError(f"{path}: {len(problems)} problem(s) in the ground truth:", problems)
    if len(ids) < 2:
        raise SubmissionError(f"{path}: {len(ids)} ground-truth entries; need at least 2 to compare rankings")
    return ids, codes, np.array(accs)


def predictions_for(path, ids, codes):
    """The submission's acc for each ground-truth id; every missing id or changed code is reported."""
    data, problems = _entries(path, "submission")
    wanted = set(ids)
    problems = [p for p in problems if p.id in wanted]
    pred = np.empty(len(ids))
    for k, (ident, code) in enumerate(zip(ids, codes, strict=True)):
        entry = data.get(ident)
        if entry is None:
            problems.append(Problem("missing", ident, f"{ident}: in the ground truth but missing from the submission"))
            continue
        if not isinstance(entry, dict):
            problems.append(Problem("bad-entry", ident, f"{ident}: submission entry is not an object"))
            continue
        if entry.get("arch") != code:
            problems.append(Problem("changed-code", ident, f"{ident}: ground-truth code {code!r} differs from the "
                                                           f"submission's {entry.get('arch')!r}"))
        bad = acc_problem(ident, entry.get("acc"))
        if bad:
            problems.append(bad)
            continue
        pred[k] = float(entry["acc"])
    if problems:
        raise SubmissionError(f"{path}: cannot score against the ground truth, {len(problems)} problem(s):", problems)
    return pred


def blend_components(submission_path, ids, pred):
    """({label: values at `ids`}, note) from the blend file beside a submission (submission.make.blend_path);
    ({}, None) without one, ({}, note) when it belongs to another submission (its acc differs)."""
    import os

    from .make import BLEND_KIND, blend_path

    path = blend_path(submission_path)
    if not os.path.exists(path):
        return {}, None
    data = jsonfile.load(path)
    if not isinstance(data, dict) or data.get("kind") != BLEND_KIND or not isinstance(data.get("components"), list):
        return {}, f"{path} is not a blend's components file: ignored"
    acc = data.get("acc") or {}
    if any(acc.get(i) != float(p) for i, p in zip(ids, pred, strict=True)):
        return {}, f"{path} does not match this submission's acc (written for another): components not shown"
    out, described = {}, []
    for k, c in enumerate(data["components"], 1):
        values = c.get("values") or {}
        if not all(jsonfile.is_number(values.get(i)) for i in ids):
            return {}, f"{path}: component {c.get('label')!r} lacks some scored ids: components not shown"
        out[f"c{k} {c['metric']}"] = np.array([float(values[i]) for i in ids])
        described.append(f"c{k} {c['metric']}: {c['label']}, weight {c['weight']:g}")
    return out, (f"the submission blends the ranks of {len(out)} components ({path}); columns c1.. score each "
                 f"alone:\n  " + "\n  ".join(described))


def _require_spread(values, ids, what):
    if values.min() == values.max():
        raise SubmissionError(
            f"{what} are all equal ({float(values[0])!r} on all {len(ids)} scored ids, {ids[0]} .. {ids[-1]}): "
            f"correlation is undefined, so there is nothing to score")


def split_halves(n, seed):
    """The challenge scored A and B on different entries: a seeded split into two halves (sorted indices)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def _safe(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except MetricError as e:
        return {"error": str(e)}


def seed_noise(gt_path, ids, predictors, n_resamples=metrics.N_RESAMPLES, seed=0):
    """The ground truth against itself, when its entries carry per-seed accuracies ("accs", as
    `pretrain.py gt --repeat 2+` writes): the ceiling rows, each predictor's Kendall tau against one
    seed (the figure comparable with seed vs seed) and the seed projection. None without seeds."""
    raw = jsonfile.load(gt_path)  # read_ground_truth has checked it
    gt = {i: raw[i] for i in ids}
    rows = ceiling.noise_ceiling(gt)
    if not rows:
        return None
    return {"ceiling": [{"label": label, **values} for label, values in rows],
            "seeds": len(next(iter(ceiling.seed_accs(gt).values()))),
            "tau_vs_one_seed": {name: ceiling.tau_vs_one_seed(gt, dict(zip(ids, values.tolist(), strict=True)))
                                for name, values in predictors.items()},
            "projection": ceiling.projection(gt, n_resamples=n_resamples, seed=seed)}


def score(submission_path, gt_path, spec=None, split_seed=None, n_resamples=metrics.N_RESAMPLES, seed=0,
          level=metrics.LEVEL, max_size=metrics.BOOTSTRAP_MAX_SIZE, resolution=None):
    """The full report as a JSON-ready dict (see format_report for the printed form)."""
    start = time.perf_counter()
    spec = spec or NetSpec()
    ids, codes, truth = read_ground_truth(gt_path)
    pred = predictions_for(submission_path, ids, codes)
    _require_spread(pred, ids, "submission acc values")
    _require_spread(truth, ids, "ground-truth accuracies")
    cost = cost_baselines(ids, codes, spec, resolution)
    components, blend_note = blend_components(submission_path, ids, pred)
    predictors = {"submission": pred, **components, "macs": cost["macs"].astype(np.float64),
                  "params": cost["params"].astype(np.float64)}
    kwargs = dict(n_resamples=n_resamples, seed=seed, level=level, max_size=max_size)
    tables = {name: _safe(metrics.score_table, values, truth, **kwargs) for name, values in predictors.items()}
    report = {
        "submission": str(submission_path), "ground_truth": str(gt_path), "n": len(ids),
        "net_spec": spec.to_dict(), "resolution": resolution, "predictors": tables,
        "bootstrap": {"n_resamples": n_resamples, "seed": seed, "level": level, "max_size": max_size},
        "split": None, "seed_noise": seed_noise(gt_path, ids, predictors, n_resamples=n_resamples, seed=seed),
        "components": list(components), "blend_note": blend_note,
    }
    if split_seed is not None:
        half_a, half_b = split_halves(len(ids), split_seed)
        split = {"seed": split_seed, "n_a": int(half_a.size), "n_b": int(half_b.size)}
        for name, values in predictors.items():
            split[name] = {
                "A": _safe(metrics.pearson_abs, values[half_a], truth[half_a]),
                "B": _safe(metrics.kendall_tau_b, values[half_b], truth[half_b]),
            }
        report["split"] = split
    report["seconds"] = time.perf_counter() - start
    return report, {"ids": ids, "truth": truth, **predictors}


# --- printing ------------------------------------------------------------------------
def _cell(value, width=12):
    if isinstance(value, dict) and "error" in value:
        return "undefined".rjust(width)
    if value is None:
        return "n/a".rjust(width)
    return f"{value:.4f}".rjust(width)


def _ci_cell(table, name, width=16):
    ci = table.get("bootstrap", {}).get(name) if "error" not in table else None
    return (f"[{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "n/a").rjust(width)


def _header(name, width=16):
    text = HEADERS.get(name, name)
    return text if len(text) < width else text[:width - 4] + "..."


def format_report(report):
    tables = report["predictors"]
    names = list(tables)  # the columns: submission, a blend's components, macs, params
    sub = tables["submission"]
    lines = [f"scored {report['n']} ground-truth entries of {report['submission']} against {report['ground_truth']}"]
    if report.get("resolution"):
        lines.append(f"MACs counted at {report['resolution']} px (the config's data.resolution)")
    if report.get("blend_note"):
        lines.append(report["blend_note"])
    head = f"{'metric':<38}" + "".join(f"{_header(name):>16}" for name in names)
    lines += [head, "-" * len(head)]

    def row(label, get):
        cells = []
        for name in names:
            t = tables[name]
            cells.append(_cell(t if "error" in t else get(t), 16))
        lines.append(f"{label:<38}" + "".join(cells))

    row("A  |Pearson|", lambda t: t["pearson_abs"])
    if report["bootstrap"]["n_resamples"]:
        level = f"{report['bootstrap']['level']:.0%}"
        lines.append(f"{'   A ' + level + ' bootstrap interval':<38}"
                     + "".join(_ci_cell(tables[n], "pearson_abs") for n in names))
    row("B  Kendall tau-b", lambda t: t["kendall_tau_b"])
    if report["bootstrap"]["n_resamples"]:
        lines.append(f"{'   B ' + level + ' bootstrap interval':<38}"
                     + "".join(_ci_cell(tables[n], "kendall_tau_b") for n in names))
    noise = report.get("seed_noise")
    if noise:
        lines.append(f"{'   B against one seed (mean of ' + str(noise['seeds']) + ')':<38}"
                     + "".join(_cell(noise["tau_vs_one_seed"][n], 16) for n in names))
    row("Spearman rho", lambda t: t["spearman"])
    row("weighted Kendall tau", lambda t: t["weighted_tau"])
    if "error" not in sub:
        for key, p in sub["precision_at_k"].items():
            row(f"precision@{key} (K={p['k']})", lambda t, key=key: t["precision_at_k"][key]["value"])
        top = sub["topk_kendall"]
        row(f"Kendall tau in true top {top['frac']:.0%} (K={top['k']})", lambda t: t["topk_kendall"]["value"])
    for name in names:
        t = tables[name]
        if "error" in t:
            lines.append(f"note: {name}: {t['error']}")
        elif t["topk_kendall"].get("note"):
            lines.append(f"note: {name}: {t['topk_kendall']['note']}")
    ci = next((t["bootstrap"]["kendall_tau_b"] for t in tables.values() if "bootstrap" in t), None)
    if ci:
        how = (f"{ci['n_resamples']} resamples of all {ci['n']} entries" if ci["resample_size"] == ci["n"] else
               f"m-out-of-n, {ci['n_resamples']} resamples of m={ci['resample_size']} of {ci['n']} entries, "
               f"interval scaled by sqrt(m/n)")
        lines.append(f"bootstrap: {how}, seed {ci['seed']}")
    if noise:
        pairs = noise["ceiling"][-1]  # seed vs seed (with 4+ seeds: averaged over the pairs)
        lines.append(f"ground truth against itself: {pairs['label']}: Kendall tau {pairs['kendall_tau_b']:.3f} "
                     f"(compare 'B against one seed')")
        p = noise["projection"]
        lines.append(f"best B any predictor can expect against this {p['seeds']}-seed mean: "
                     f"{p['committed_mean_best_tau']:.3f} (python -m submission ceiling --gt {report['ground_truth']})")
    split = report["split"]
    if split:
        lines.append(f"A/B split (seed {split['seed']}): A on {split['n_a']} ids, B on the other {split['n_b']}")
        lines.append(f"{'   A |Pearson| on half 1':<38}" + "".join(_cell(split[n]["A"], 16) for n in names))
        lines.append(f"{'   B Kendall tau-b on half 2':<38}" + "".join(_cell(split[n]["B"], 16) for n in names))
    if "error" not in sub:
        for metric, label in (("pearson_abs", "A"), ("kendall_tau_b", "B")):
            beaten = [n for n in ("macs", "params") if "error" not in tables[n] and tables[n][metric] >= sub[metric]]
            if beaten:
                lines.append(f"warning: the submission does not beat the {' and '.join(beaten)} baseline on {label}")
    lines.append(f"({report['seconds']:.2f} s)")
    return "\n".join(lines)
