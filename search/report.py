"""What a search leaves in its folder: front.json, front_archs.json and pareto.png (search_log.jsonl and
the ledger are written as it runs)."""

import io
import json
import os

import numpy as np

from encoding import ArchEntry, costs, read_arch_list, write_arch_list
from infra.atomic import atomic_write_bytes, atomic_write_json
from infra.errors import KitError

from .budget import UNITS


def rank_agreement(screen, full):
    """Kendall tau-b (submission.metrics) of the screening vs the full top-1 over the same codes (None where
    undefined, with why)."""
    from submission.metrics import kendall_tau_b, or_undefined

    if len(screen) < 2:
        return None, f"{len(screen)} codes re-scored: a rank correlation needs at least 2"
    return or_undefined(kendall_tau_b, screen, full)


def write_front(out, search, front, rescored, picks, settings_info, predictor_reports=None):
    """front.json and front_archs.json; returns the front.json dict.

    front: codes of the screened front; rescored: {code: full scores} (empty without a screen: then the
    'screen' scores are the full setting's); picks: {budget: {'screen': code, 'full': code}};
    predictor_reports: {'latency_ms' | 'energy_mj': the predictor's report}."""
    predictor_reports = predictor_reports or {}
    archive = search.archive
    entries = []
    for code in front:
        rec = archive[code]
        entries.append({"code": code, "screen": {k: rec[k] for k in ("top1", "top5", "loss")},
                        "full": rescored.get(code), "costs": rec["costs"], "generation": rec["generation"]})
    both = [c for c in rescored if c in archive]
    tau, why = rank_agreement([archive[c]["top1"] for c in both], [rescored[c]["top1"] for c in both])
    hv_full = None
    if both:  # the re-scored codes' own front under the full setting
        from .engine import hypervolume, nondominated

        F = search.objectives([{**rescored[c], "costs": archive[c]["costs"]} for c in both])
        hv_full = hypervolume(F[nondominated(F)])
    data = {
        "space": search.settings.space.name, "algorithm": search.settings.algorithm, "seed": search.settings.seed,
        "objectives": ["top1"] + list(search.cost_names), "budgets": [b.text for b in search.settings.budgets],
        "generations": search.generation, "evaluations": len(archive), "setting": settings_info,
        "screened": settings_info["screen"] is not settings_info["full"],
        "hypervolume": search.history[-1]["hypervolume"] if search.history else None,
        "hypervolume_full": hv_full,
        "front": entries, "rescored": len(both),
        "kendall_tau_screen_vs_full": tau, **({"kendall_tau_undefined": why} if why and rescored else {}),
        "best_per_budget": {b: {k: ({"code": c, "screen": {kk: archive[c][kk] for kk in ("top1", "top5", "loss")},
                                      "full": rescored.get(c), "costs": archive[c]["costs"]} if c else None)
                                for k, c in p.items()} for b, p in picks.items()},
        "latency_predictor": predictor_reports.get("latency_ms"),
        "energy_predictor": predictor_reports.get("energy_mj"),
    }
    atomic_write_json(os.path.join(out, "front.json"), data, indent=1)
    write_arch_list(os.path.join(out, "front_archs.json"),
                    [ArchEntry(f"front{i + 1}", e["code"], (e["full"] or e["screen"])["top1"])
                     for i, e in enumerate(entries)])
    return data


def background_points(path, spec, resolution, cost):
    """(cost values, top1) of an evaluated list's results.json (for the cloud behind the front)."""
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except FileNotFoundError:
        raise KitError(f"--background {path}: no such file") from None
    except json.JSONDecodeError as e:
        raise KitError(f"--background {path}: not JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(records, dict):  # an architecture list with accuracies
        entries = read_arch_list(path)
        records = [{"code": e.code, "top1": e.acc} for e in entries]
    if not isinstance(records, list) or not all(isinstance(r, dict) and "code" in r and "top1" in r for r in records):
        raise KitError(f"--background {path}: expected an evaluation's results.json (records with 'code' and 'top1')")
    if cost not in ("macs", "params"):
        return None
    params, macs = costs([r["code"] for r in records], spec, resolution)
    return (macs if cost == "macs" else params).astype(np.float64), np.array([r["top1"] for r in records])


def pareto_png(path, search, front, rescored, background=None):
    """Accuracy vs the first cost: every screened code, the front highlighted, the re-scored front, and
    an evaluated list's cloud behind when given."""
    from matplotlib.figure import Figure

    cost = search.cost_names[0]
    fig = Figure(figsize=(7, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if background is not None:
        ax.scatter(background[0], background[1], s=4, c="0.8", linewidths=0, label="evaluated list", rasterized=True)
    codes = list(search.archive)
    ax.scatter([search.archive[c]["costs"][cost] for c in codes], [search.archive[c]["top1"] for c in codes],
               s=8, c="tab:blue", alpha=0.4, linewidths=0, label=f"searched ({len(codes)})")
    fx = [search.archive[c]["costs"][cost] for c in front]
    ax.plot(fx, [search.archive[c]["top1"] for c in front], "o-", c="tab:red", ms=4, label=f"front ({len(front)})")
    if rescored:
        rc = [c for c in front if c in rescored]
        ax.plot([search.archive[c]["costs"][cost] for c in rc], [rescored[c]["top1"] for c in rc], "s--",
                c="tab:green", ms=4, label="front, full setting")
    for b in search.settings.budgets:
        for lim in b.limits:
            if lim.cost == cost:
                ax.axvline(lim.limit, c="0.4", ls=":", lw=1)
    ax.set_xlabel(f"{cost} ({UNITS[cost]})")
    ax.set_ylabel("top-1 (shared weights)")
    ax.set_title(f"{search.settings.algorithm}, space {search.settings.space.name}: {search.generation} generations",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def read_log(folder):
    path = os.path.join(folder, "search_log.jsonl")
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise KitError(f"{folder}: no search_log.jsonl (not a search folder?)") from None


def hypervolume_at(log, n):
    """The hypervolume once at most `n` codes had been scored (the last generation within n), or None."""
    within = [r for r in log if r["cumulative_evaluations"] <= n]
    return within[-1]["hypervolume"] if within else None


def summarize(folders, at=None):
    """Rows {'folder', 'algorithm', 'seed', 'evaluations', 'hypervolume', 'hypervolume_at'} and the N compared
    (default: the fewest evaluations any folder reached), then per algorithm the mean and spread at N."""
    rows = []
    for folder in folders:
        log = read_log(folder)
        if not log:
            raise KitError(f"{folder}: search_log.jsonl is empty (no generation finished)")
        info = {}
        front = os.path.join(folder, "front.json")
        if os.path.exists(front):
            with open(front, encoding="utf-8") as f:
                info = json.load(f)
        rows.append({"folder": os.fspath(folder), "algorithm": info.get("algorithm", "?"), "seed": info.get("seed"),
                     "evaluations": log[-1]["cumulative_evaluations"], "hypervolume": log[-1]["hypervolume"],
                     "hypervolume_full": info.get("hypervolume_full"), "log": log})
    n = int(at) if at else min(r["evaluations"] for r in rows)
    groups = {}
    for r in rows:
        r["hypervolume_at"] = hypervolume_at(r.pop("log"), n)
        groups.setdefault(r["algorithm"], []).append(r["hypervolume_at"])
    stats = {a: {"runs": len(v), "mean": float(np.mean(v)) if None not in v else None,
                 "std": float(np.std(v, ddof=1)) if None not in v and len(v) > 1 else None} for a, v in groups.items()}
    return rows, n, stats
