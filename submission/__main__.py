"""`python -m submission make|validate|score|ceiling`: from evaluator results to a checked, scored submission.

Exit status: 0 success, 1 refused / invalid / unscorable input (with every problem listed),
2 bad command line.
"""

import argparse
import sys
from collections import Counter

from encoding import read_arch_list, run_reporting_errors
from infra.atomic import atomic_write_json

from .errors import SubmissionError
from .make import METRICS, UNITS, make_file
from .validate import validate_file

DEFAULT_LIMIT = 20
# Defaults of submission.metrics, repeated so make/validate start without importing scipy.
N_RESAMPLES = 1000
BOOTSTRAP_MAX_SIZE = 2000


def _print_problems(problems, limit, file):
    """Every problem up to `limit` per kind (0 = all), then a count of the rest of that kind."""
    shown = Counter()
    for p in problems:
        shown[p.kind] += 1
        if not limit or shown[p.kind] <= limit:
            print(f"  {p}", file=file)
    for kind, count in shown.items():
        if limit and count > limit:
            print(f"  ... and {count - limit} more '{kind}' problems (use --limit 0 to see all)", file=file)


def _make(args):
    from .make import blend_file, parse_component

    if bool(args.blend) == bool(args.results):
        raise SubmissionError("give --results (one evaluation, with --metric) or --blend components, not both"
                              if args.blend else "give --results RESULTS.json (or --blend components)")
    archs = read_arch_list(args.archs)
    try:
        if args.blend:
            if args.metric is not None:
                raise SubmissionError("--metric is part of each --blend component (METRIC@RESULTS=WEIGHT)")
            from .baselines import cost_setting_from_config

            components = [parse_component(text) for text in args.blend]
            spec, resolution = cost_setting_from_config(args.config)
            entries, notes = blend_file(components, archs, args.out, unit=args.unit, spec=spec, resolution=resolution)
        else:
            entries, notes = make_file(args.results, archs, args.out, metric=args.metric or "top1", unit=args.unit)
    except SubmissionError as e:
        print(f"refusing to write {args.out}: {e.headline}", file=sys.stderr)
        _print_problems(e.problems, args.limit, sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}")
    what = "blend" if args.blend else f"metric {args.metric or 'top1'}"
    print(f"wrote {len(entries)} entries to {args.out} ({what}, unit {args.unit}, order of {args.archs})")
    if args.blend:
        from .make import blend_path

        print(f"components: {blend_path(args.out)} (python -m submission score shows each beside the blend)")
    return 0


def _validate(args):
    archs = read_arch_list(args.archs)
    report = validate_file(args.submission, archs)
    for w in report.warnings:
        print(f"warning: {w}")
    if report.ok:
        print(f"OK: {args.submission} has all {len(archs)} ids of {args.archs} with matching codes and finite acc")
        return 0
    print(f"INVALID: {args.submission}: {len(report.problems)} problem(s)")
    _print_problems(report.problems, args.limit, sys.stdout)
    return 1


def _write_report(path, report):
    if path:
        atomic_write_json(path, report, indent=1)
        print(f"report: {path}")


def _score(args):
    from .baselines import cost_setting_from_config  # scipy, yaml, costs: only when scoring
    from .score import format_report, score

    try:
        spec, resolution = cost_setting_from_config(args.config)
        report, data = score(args.submission, args.gt, spec=spec, resolution=resolution, split_seed=args.split_seed,
                             n_resamples=args.resamples, seed=args.seed, max_size=args.bootstrap_max_size or None)
    except SubmissionError as e:
        print(f"error: {e.headline}", file=sys.stderr)
        _print_problems(e.problems, args.limit, sys.stderr)
        return 1
    print(format_report(report))
    if args.plot:
        from .plot import scatter_png

        scatter_png(args.plot, data["truth"], data["submission"], data["macs"])
        print(f"plot: {args.plot}")
    _write_report(args.out, report)
    return 0


def _ceiling(args):
    from . import ceiling, jsonfile  # numpy/scipy: only here

    try:
        gt = jsonfile.load(args.gt)
        if not isinstance(gt, dict):
            raise SubmissionError(f"{args.gt}: expected a JSON object of id -> {{'acc', 'arch', 'accs'}}")
        accs = ceiling.seed_accs(gt)
        if len(accs) < 2:
            raise SubmissionError(f"{args.gt}: {len(accs)} codes with per-seed accuracies ('accs', >= 2 seeds); "
                                  f"need at least 2 (pretrain.py gt --repeat 2 writes them)")
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    left_out = len(gt) - len(accs)
    print(f"{args.gt}: {len(accs)} codes x {len(next(iter(accs.values())))} seeds"
          + (f" ({left_out} entries with another seed count left out)" if left_out else ""))
    report = {"measured": [{"label": label, **values} for label, values in ceiling.noise_ceiling(gt)]}
    for row in report["measured"]:
        print(f"measured: {row['label']}: Kendall tau {row['kendall_tau_b']:.3f}, Pearson {row['pearson']:.3f}, "
              f"P@10% {row['precision_at_10']:.3f}")
    report["model"] = ceiling.projection(gt, ks=args.seeds, target_tau=args.target, n_resamples=args.resamples,
                                         seed=args.seed)
    print(ceiling.format_projection(report["model"]))
    _write_report(args.out, report)
    return 0


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected seed counts >= 1, got {text!r}")
    return tuple(values)


def _tau(text):
    v = float(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"target Kendall tau must be in (0, 1), got {text}")
    return v


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m submission", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make", help="write the submission file from evaluator results")
    p.add_argument("--results", help="evaluator results.json (list of records, or object keyed by id)")
    p.add_argument("--archs", required=True, help="the official architecture list (sets ids, codes and order)")
    p.add_argument("--out", required=True, help="submission file to write (atomically; untouched on refusal)")
    p.add_argument("--metric", default=None, choices=sorted(METRICS), help="result field to submit (default top1); "
                   "proxies (zen, synflow, naswot, gradnorm) are min-max scaled into [0, 1]")
    p.add_argument("--blend", action="append", metavar="METRIC@RESULTS=WEIGHT",
                   help="instead of --results: a component of a rank blend (repeat it), e.g. top1@eval/results.json=2 "
                        "zen@proxies/results.json=1 macs=1 (macs, params: counted from the codes with --config)")
    p.add_argument("--config", default=None,
                   help="with --blend macs/params: kit config whose model: section counts them")
    p.add_argument("--unit", default="fraction", choices=sorted(UNITS), help="unit of acc in the submission")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="problems shown per kind (0 = all)")
    p.set_defaults(run=_make)

    p = sub.add_parser("validate", help="check a submission file against the official list")
    p.add_argument("submission")
    p.add_argument("--archs", required=True, help="the official architecture list")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="problems shown per kind (0 = all)")
    p.set_defaults(run=_validate)

    p = sub.add_parser("score", help="score a submission against ground-truth accuracies, beside cost baselines")
    p.add_argument("submission")
    p.add_argument("--gt", required=True, help="ground truth in the challenge format {id: {acc, arch, ...}}")
    p.add_argument("--split-seed", type=int, default=None, help="also report A and B on two seeded halves")
    p.add_argument("--out", default=None, help="write every number as JSON here")
    p.add_argument("--plot", default=None, help="write a scatter plot PNG here")
    p.add_argument("--config", default=None, help="kit config whose model: section sets the MACs/params NetSpec")
    p.add_argument("--resamples", type=int, default=N_RESAMPLES, help="bootstrap resamples (0 = none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--bootstrap-max-size", type=int, default=BOOTSTRAP_MAX_SIZE,
                   help="larger ground truths are bootstrapped m-out-of-n with this m (0 = always all n)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="problems shown per kind (0 = all)")
    p.set_defaults(run=_score)

    p = sub.add_parser("ceiling", help="how reproducible a multi-seed ground truth is, and what more seeds would buy")
    p.add_argument("--gt", required=True, help="ground truth with per-seed accuracies ('accs'), e.g. from pretrain.py gt")
    p.add_argument("--target", type=_tau, default=0.6, help="seed-vs-seed Kendall tau to size the seeds for")
    p.add_argument("--seeds", type=_int_list, default=(1, 2, 4, 8, 16), help="seed counts per side to project")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the codes (0 = none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--out", default=None, help="write every number as JSON here")
    p.set_defaults(run=_ceiling)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_reporting_errors(args.run, args)


if __name__ == "__main__":
    sys.exit(main())
