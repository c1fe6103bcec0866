"""Time `submission validate` and `submission score` on the challenge's 45,000 codes; print seconds.

Synthetic accuracies (MACs plus seeded noise) stand in for a supernet's predictions and for
standalone ground truth. Target: score of all 45,000 under 5 s.

    python bench/score_45k.py [--list data/CVPR_2022_NAS_Track1_test.json] [--gt-size 45000]
                              [--compare-exact 8000]

--compare-exact N also times the ordinary (all-n) bootstrap of tau-b on N entries against the
m-out-of-n bootstrap the score uses, and prints both intervals.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encoding import ArchEntry, costs, read_arch_list, write_arch_list  # noqa: E402
from submission import metrics  # noqa: E402
from submission.score import format_report, score  # noqa: E402
from submission.validate import validate_file  # noqa: E402


def _timed(label, fn, *args, **kwargs):
    """Wall and CPU seconds: on a shared machine CPU time is the figure that does not depend on the neighbours."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    print(f"{label:<52}{time.perf_counter() - start:8.2f} s wall {time.process_time() - cpu:8.2f} s CPU")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", default=str(ROOT / "data" / "CVPR_2022_NAS_Track1_test.json"))
    parser.add_argument("--gt-size", type=int, default=45000, help="ground-truth entries (random subset)")
    parser.add_argument("--compare-exact", type=int, default=0, metavar="N")
    args = parser.parse_args()

    entries = _timed("read the official list", read_arch_list, args.list)
    _, macs = costs([e.code for e in entries])
    rng = np.random.default_rng(0)
    pred = 0.6 + 0.1 * macs / macs.max() + rng.normal(0, 0.01, len(entries))
    truth = pred + rng.normal(0, 0.01, len(entries))
    pick = np.sort(rng.choice(len(entries), min(args.gt_size, len(entries)), replace=False))
    with tempfile.TemporaryDirectory() as tmp:
        sub, gt = Path(tmp) / "submit.json", Path(tmp) / "gt.json"
        write_arch_list(sub, [ArchEntry(e.id, e.code, float(a)) for e, a in zip(entries, pred, strict=True)])
        gt.write_text(json.dumps({entries[i].id: {"acc": float(truth[i]), "arch": entries[i].code} for i in pick}))

        report = _timed(f"validate (in-process, {len(entries)} entries)", validate_file, sub, entries)
        assert report.ok, report.problems[:5]
        report, _ = _timed(f"score (in-process, {len(pick)} GT entries, split)", score, sub, gt, split_seed=0)
        print(format_report(report))
        for label, cmd in (("validate CLI (python -m, incl. imports)", ["validate", sub, "--archs", args.list]),
                           ("score CLI (python -m, incl. imports)", ["score", sub, "--gt", gt, "--split-seed", "0"])):
            start = time.perf_counter()
            before = os.times()
            r = subprocess.run([sys.executable, "-m", "submission", *map(str, cmd)], cwd=ROOT,
                               capture_output=True, text=True)
            after = os.times()
            cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
            print(f"{label:<52}{time.perf_counter() - start:8.2f} s wall {cpu:8.2f} s CPU  (exit {r.returncode})")

    if args.compare_exact:
        n = min(args.compare_exact, len(entries))
        x, y = pred[:n], truth[:n]
        exact = _timed(f"tau-b bootstrap, all {n} per resample", metrics.bootstrap_ci, x, y, max_size=None)
        sub_ci = _timed(f"tau-b bootstrap, m={metrics.BOOTSTRAP_MAX_SIZE} of {n}", metrics.bootstrap_ci, x, y)
        for name, ci in (("all-n", exact), ("m-out-of-n", sub_ci)):
            print(f"  {name:<12} [{ci['low']:.4f}, {ci['high']:.4f}]  width {ci['high'] - ci['low']:.4f}")


if __name__ == "__main__":
    main()
