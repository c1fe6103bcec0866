"""What reordering official weights by channel importance changes, measured on the demo.

    python bench/reorder_effect.py [--out runs/reorder] [--config configs/demo.yaml] [--archs configs/demo_archs.json]
                                   [--supernet-epochs 1] [key=value ...]

1. `pretrain.py run` trains the largest code standalone (the demo's analogue of the challenge's
   resnet48.pdparams; its model.pdparams has the official layout).
2. `python -m evaluate run --official` scores every code of --archs straight from those weights,
   BN recalibrated (the demo's evaluation settings), once with `evaluate.reorder=true` (the
   default, as the official demo) and once with `false`.
3. `python train_supernet.py` fine-tunes a supernet initialised from them (`supernet.init=official`)
   for --supernet-epochs, with and without `supernet.reorder`, and the same codes are scored from each.

Prints one row per run: mean shared-weight top-1 of all codes and of the narrowest tenth (fewest
MACs), and the Kendall tau between the rankings with and without reordering. Every stage resumes
(rerun the command after an interruption); `OUT/reorder_effect.json` keeps the table.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run(argv, log):
    """One stage as a subprocess from the repository root; its output goes to `log`."""
    start = time.perf_counter()
    print(f"$ {' '.join(argv)}", flush=True)
    with open(log, "a", encoding="utf-8") as f:
        proc = subprocess.run(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHON=sys.executable))  # train_supernet.sh's interpreter
    if proc.returncode:
        sys.exit(f"error: stage failed (exit {proc.returncode}); see {log}")
    print(f"  {time.perf_counter() - start:.0f} s", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/reorder")
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--archs", default="configs/demo_archs.json")
    p.add_argument("--supernet-epochs", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="key=value config overrides for every stage")
    args = p.parse_args(argv)

    import numpy as np

    from encoding import DOCUMENTED, costs, net_spec, read_arch_list  # no Paddle here: the stages get all the cores
    from infra.config import resolve
    from submission.metrics import kendall_tau_b

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "stages.log")
    py = sys.executable
    cfg = resolve(args.config, overrides=args.overrides)
    entries = read_arch_list(args.archs)
    _, macs = costs([e.code for e in entries], net_spec(cfg), resolution=int(cfg["data"]["resolution"]))
    narrow = set(np.argsort(macs, kind="stable")[: max(1, len(entries) // 10)].tolist())

    largest = os.path.join(out, "largest")
    weights = os.path.join(largest, "model.pdparams")
    if not os.path.isfile(weights):
        run([py, "pretrain.py", "run", "--config", args.config, "--arch", DOCUMENTED.max_arch().code(),
             "--output", largest, *args.overrides], log)

    def evaluate(name, source, *keys):
        results = os.path.join(out, f"eval-{name}", "results.json")
        if not os.path.isfile(results):
            run([py, "-m", "evaluate", "run", "--config", args.config, *source, "--archs", args.archs,
                 "--out", os.path.dirname(results), "evaluate.progress=false", *keys, *args.overrides], log)
        with open(results, encoding="utf-8") as f:
            by_id = {r["id"]: r["top1"] for r in json.load(f)}
        return np.array([by_id[e.id] for e in entries])

    def supernet(reorder):
        run_dir = os.path.join(out, f"supernet-reorder-{str(reorder).lower()}")
        final = os.path.join(run_dir, "supernet.pdparams")
        if not os.path.isfile(final):
            run(["bash", "train_supernet.sh", args.config, f"supernet.output_dir={run_dir}",
                 "supernet.init=official", f"supernet.pretrained={weights}", f"supernet.reorder={str(reorder).lower()}",
                 f"supernet.epochs={args.supernet_epochs}", "supernet.log.progress=false", *args.overrides], log)
        return final

    rows = []
    for label, pair in (
        ("official weights, no fine-tuning", {
            r: evaluate(f"official-reorder-{str(r).lower()}", ["--official", weights], f"evaluate.reorder={str(r).lower()}")
            for r in (True, False)}),
        (f"supernet from them, {args.supernet_epochs} epoch(s)", {
            r: evaluate(f"supernet-reorder-{str(r).lower()}", ["--checkpoint", supernet(r)]) for r in (True, False)}),
    ):
        tau = float(kendall_tau_b(pair[True], pair[False]))
        for r in (True, False):
            top1 = pair[r]
            rows.append({"weights": label, "reorder": r, "codes": len(entries),
                         "mean_top1": float(top1.mean()), "narrowest_tenth_top1": float(top1[sorted(narrow)].mean()),
                         "kendall_tau_reorder_vs_not": tau})
    report = {"config": args.config, "archs": args.archs, "overrides": args.overrides, "rows": rows}
    with open(os.path.join(out, "reorder_effect.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(f"\n| weights | reorder | mean top-1 % ({len(entries)} codes) | narrowest tenth top-1 % "
          f"| Kendall tau, reordered vs not |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['weights']} | {'yes' if r['reorder'] else 'no'} | {100 * r['mean_top1']:.2f} "
              f"| {100 * r['narrowest_tenth_top1']:.2f} | {r['kendall_tau_reorder_vs_not']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
