"""Proxy fidelity: do cheaper evaluation settings rank subnets like the full one, and how much cheaper?

Fewer images, lower resolution, fewer or no calibration batches all make evaluating 45,000
subnets faster, but only a setting that keeps the ranking is worth it (EcoNAS). This
evaluates one seeded sample of subnets under the full setting and under each cheap setting
from the config, and reports Kendall tau, Spearman and precision@top-fraction against the
full setting with the per-subnet speed-up measured in the same process. The supernet is
loaded once; each setting starts from the checkpoint's statistics (the evaluator restores
them), and cached images are shared between settings that use the same ones.
"""

import copy
import json
import time

import numpy as np

from encoding import KitError, net_spec
from encoding.archlist import seeded_subset
from infra.config import get, set_key

from .oracle import Oracle, build_calibration_batches, build_eval_set
from .settings import EvalSettings, apply_protocol

METRICS = ("top1", "top5", "loss")
FIXED_SECTIONS = ("model", "device")
FIXED_KEYS = ("evaluate.checkpoint", "evaluate.official", "evaluate.fewshot", "evaluate.archs", "evaluate.fidelity")


def sample_entries(entries, n, seed):
    """A seeded sample of `n` entries (all of them when n >= len), in list order."""
    if n is None or int(n) >= len(entries):
        return list(entries)
    if int(n) < 2:
        raise KitError(f"fidelity needs a sample of at least 2 subnets, got {n}")
    return seeded_subset(entries, n, seed)


def setting_configs(cfg):
    """[(name, config)]: the full setting, then each cheap setting's overrides applied to it."""
    out = [("full", cfg)]
    for i, item in enumerate(get(cfg, "evaluate.fidelity.settings", None) or []):
        if not isinstance(item, dict) or "name" not in item or not isinstance(item.get("set"), dict):
            raise KitError(f"evaluate.fidelity.settings[{i}] must be a mapping with 'name' and 'set' "
                           f"(a mapping of config keys to values), got {item!r}")
        c = copy.deepcopy(cfg)
        for key, value in item["set"].items():
            if str(key).split(".")[0] in FIXED_SECTIONS or key in FIXED_KEYS:
                raise KitError(f"cheap setting {item['name']!r} changes {key!r}: the model, its weights, the "
                               f"device and the list are shared by all settings; vary evaluate.* and data.* keys")
            set_key(c, key, value)
        if "evaluate.protocol" in item["set"]:  # the protocol's preset, except what the setting sets itself
            preset = get(c, f"evaluate.protocols.{get(c, 'evaluate.protocol')}", None) or {}
            apply_protocol(c, force=[f"evaluate.{k}" for k in preset if f"evaluate.{k}" not in item["set"]])
        out.append((str(item["name"]), c))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise KitError(f"cheap setting names must be distinct (and not 'full'): {names}")
    return out


def fidelity_settings(cfg):
    """[(name, config, EvalSettings)] of every setting, each read and checked once."""
    return [(name, c, EvalSettings.from_config(c)) for name, c in setting_configs(cfg)]


def _rank_value(results, metric):
    """Higher is better for ranking: accuracies as they are, loss negated."""
    values = np.array([r[metric] for r in results], dtype=np.float64)
    return -values if metric == "loss" else values


def compare(full, cheap, metric="top1", top_fraction=0.1):
    """{'kendall_tau', 'spearman', 'precision_at_top'} of `cheap` vs `full` results (None where undefined,
    e.g. when one setting gives every subnet the same accuracy)."""
    from submission.metrics import kendall_tau_b, or_undefined, precision_at_k, spearman

    x, y = _rank_value(cheap, metric), _rank_value(full, metric)
    out = {}
    for key, fn in (("kendall_tau", kendall_tau_b), ("spearman", spearman),
                    ("precision_at_top", lambda a, b: precision_at_k(a, b, frac=top_fraction))):
        out[key], why = or_undefined(fn, x, y)
        if why is not None:
            out.setdefault("undefined", why)
    return out


def run_fidelity(cfg, settings, entries, device, log=print):
    """Evaluate the sample under every setting of `settings` (fidelity_settings(cfg)); return the
    report dict (see `format_table`)."""
    metric = get(cfg, "evaluate.fidelity.metric", "top1")
    if metric not in METRICS:
        raise KitError(f"evaluate.fidelity.metric must be one of {', '.join(METRICS)}, got {metric!r}")
    top_fraction = float(get(cfg, "evaluate.fidelity.top_fraction", 0.1))
    sample = sample_entries(entries, get(cfg, "evaluate.fidelity.sample"), get(cfg, "evaluate.fidelity.seed", 0))
    on_gpu = device.startswith("gpu")
    model = settings[0][2].source().load(net_spec(cfg))  # one supernet, shared by every setting
    eval_cache, calib_cache = {}, {}
    rows, oracles = [], []
    for name, c, s in settings:
        t0 = time.perf_counter()
        ekey = json.dumps([s.images(), s.cache, s.cache_dtype], sort_keys=True)
        if ekey not in eval_cache:
            eval_cache[ekey] = build_eval_set(c, s, on_gpu)
        ckey = json.dumps(s.calibration_batches(), sort_keys=True)
        if ckey not in calib_cache:
            calib_cache[ckey] = build_calibration_batches(c, s)
        mode = s.calibration.mode
        oracles.append(Oracle(c, s, device, model=model, eval_set=eval_cache[ekey], calib_batches=calib_cache[ckey]))
        rows.append({"name": name, "images": len(eval_cache[ekey]), "resolution": int(eval_cache[ekey].shape[-1]),
                     "amp": str(s.amp or "none"),
                     "calibration": mode, "calibration_batches": len(calib_cache[ckey]) if mode == "recalibrate" else 0,
                     "setup_seconds": time.perf_counter() - t0, "results": []})
    for oracle in oracles:  # warm-up (kernel selection, allocator) outside the timed loop
        oracle.score_one(sample[0].code)
    # Subnet by subnet through every setting, rotating which goes first: a machine that gets
    # busier or quieter during the run then slows all settings alike, so the speed-ups hold.
    seconds = [0.0] * len(settings)
    for n, entry in enumerate(sample):
        for k in range(len(settings)):
            j = (n + k) % len(settings)
            r = oracles[j].score_one(entry.code)
            seconds[j] += r["seconds"]
            rows[j]["results"].append({"id": entry.id, **{key: r[key] for key in METRICS}})
    for row, total in zip(rows, seconds, strict=True):
        row["seconds_per_subnet"] = total / len(sample)
        log(f"{row['name']}: {len(sample)} subnets in {total:.1f} s ({total / len(sample):.3f} s/subnet, "
            f"setup {row['setup_seconds']:.1f} s)")
    full = rows[0]
    for row in rows:
        row.update(compare(full["results"], row["results"], metric, top_fraction))
        row["speedup"] = full["seconds_per_subnet"] / row["seconds_per_subnet"]
    return {"sample": len(sample), "seed": get(cfg, "evaluate.fidelity.seed", 0), "metric": metric,
            "top_fraction": top_fraction, "device": device, "settings": rows}


def format_table(report):
    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    top = f"P@{report['top_fraction']:.0%}"
    head = (f"{'setting':<22} {'images':>7} {'px':>4} {'calib':>6} {'amp':>5} {'s/subnet':>9} {'speed-up':>8} "
            f"{'tau':>6} {'rho':>6} {top:>6}")
    lines = [f"fidelity of cheap settings vs full, {report['sample']} subnets (seed {report['seed']}), "
             f"ranked by {report['metric']} on {report['device']}", head, "-" * len(head)]
    for r in report["settings"]:
        calib = "none" if r["calibration"] == "none" else str(r["calibration_batches"])
        lines.append(f"{r['name']:<22} {r['images']:>7} {r['resolution']:>4} {calib:>6} {r.get('amp', 'none'):>5} "
                     f"{r['seconds_per_subnet']:>9.4f} {r['speedup']:>7.2f}x {num(r['kendall_tau'], '6.3f')} "
                     f"{num(r['spearman'], '6.3f')} {num(r['precision_at_top'], '6.3f')}")
        if r.get("undefined"):
            lines.append(f"  ({r['name']}: {r['undefined']})")
    return "\n".join(lines)
