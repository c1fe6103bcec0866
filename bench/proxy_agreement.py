"""How zero-cost proxy rankings agree with MACs, a ground truth, and each other across settings.

    python bench/proxy_agreement.py RESULTS.json [RESULTS2.json ...] --config C [--gt GT.json]
                                    [--reference REF.json] [--out table.json]

Each RESULTS.json is a `python -m evaluate proxies` results file. Per file and proxy it prints the Kendall
tau-b against MACs and params (counted with --config's model at its data.resolution) over all the file's
codes: a proxy that is only MACs in disguise scores near 1 there. With --gt, Kendall tau-b and Pearson
against the ground truth on its ids (MACs and params beside them). With --reference (a results file of
the same codes at another setting, e.g. the full one), each proxy's Kendall tau against the same proxy
there: the EcoNAS-style fidelity of a cheap setting.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from encoding import costs  # noqa: E402
from submission import metrics  # noqa: E402
from submission.baselines import cost_setting_from_config  # noqa: E402

PROXIES = ("zen", "synflow", "naswot", "gradnorm")


def load(path):
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    return {r["id"]: r for r in records}


def per_code_seconds(records):
    secs = sorted(r["seconds"] for r in records.values())
    return secs[len(secs) // 2], sum(secs) / len(secs)


def table(path, spec, resolution, gt=None, reference=None):
    recs = load(path)
    ids = list(recs)
    names = [p for p in PROXIES if p in recs[ids[0]]]
    params, macs = costs([recs[i]["code"] for i in ids], spec, resolution)
    median, mean = per_code_seconds(recs)
    out = {"results": path, "n": len(ids), "median_seconds": median, "mean_seconds": mean, "rows": []}
    columns = {name: [recs[i][name] for i in ids] for name in names}
    columns["macs"], columns["params"] = macs.tolist(), params.tolist()
    ref = load(reference) if reference else None
    for name, values in columns.items():
        row = {"predictor": name, "tau_vs_macs": metrics.kendall_tau_b(values, macs),
               "tau_vs_params": metrics.kendall_tau_b(values, params)}
        if gt is not None:
            scored = [k for k, i in enumerate(ids) if i in gt]
            truth = [gt[ids[k]]["acc"] for k in scored]
            row["gt_n"] = len(scored)
            row["gt_tau"] = metrics.kendall_tau_b([values[k] for k in scored], truth)
            row["gt_pearson"] = metrics.pearson([values[k] for k in scored], truth)
        if ref is not None and name in PROXIES:
            row["tau_vs_reference"] = metrics.kendall_tau_b(values, [ref[i][name] for i in ids])
        out["rows"].append(row)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+")
    p.add_argument("--config", required=True, help="kit config whose model: and data.resolution count MACs")
    p.add_argument("--gt", default=None, help="ground truth {id: {acc, arch}}")
    p.add_argument("--reference", default=None, help="results of the same codes at the reference setting")
    p.add_argument("--out", default=None, help="write the tables as JSON here")
    args = p.parse_args(argv)
    spec, resolution = cost_setting_from_config(args.config)
    gt = json.load(open(args.gt, encoding="utf-8")) if args.gt else None
    tables = []
    for path in args.results:
        t = table(path, spec, resolution, gt, args.reference)
        tables.append(t)
        print(f"{path}: {t['n']} codes, {t['median_seconds']:.2f} s per code (median; mean {t['mean_seconds']:.2f})")
        for row in t["rows"]:
            cells = [f"tau vs MACs {row['tau_vs_macs']:+.3f}", f"vs params {row['tau_vs_params']:+.3f}"]
            if "gt_tau" in row:
                cells.append(f"GT ({row['gt_n']}) tau {row['gt_tau']:+.3f} Pearson {row['gt_pearson']:+.3f}")
            if "tau_vs_reference" in row:
                cells.append(f"tau vs reference {row['tau_vs_reference']:+.3f}")
            print(f"  {row['predictor']:<9} " + ", ".join(cells))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(tables, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
