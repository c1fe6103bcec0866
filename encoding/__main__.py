"""`python -m encoding describe|check|sample`: look at codes without loading a framework."""

import argparse
import json
import sys

import numpy as np

from . import (
    DOCUMENTED,
    RELEASED,
    SPACES,
    ArchEntry,
    CodeError,
    NetSpec,
    costs,
    get_space,
    parse,
    read_arch_list,
    run_reporting_errors,
    widths,
    write_arch_list,
)


def _describe(args):
    if args.file:
        items = [(e.id, e.code) for e in read_arch_list(args.file)]
    else:
        items = [(None, c) for c in args.codes]
    if not items:
        print("describe: give codes or --file ARCHS.json", file=sys.stderr)
        return 2
    archs = [parse(code) for _, code in items]
    params, macs = costs(archs)
    for (ident, _), arch, p, m in zip(items, archs, params, macs, strict=True):
        w = widths(arch)
        if args.json:
            rec = {"id": ident}  # null for codes given on the command line: one schema for every line
            rec.update(arch=arch.code(), depths=list(arch.depths), stem=w.stem, widths=w.as_lists(),
                       params=int(p), macs=int(m))
            print(json.dumps(rec))
        else:
            head = f"{ident}: " if ident is not None else ""
            print(f"{head}{arch.code()}")
            print(f"  depths {list(arch.depths)}  stem {w.stem}  params {int(p):,}  MACs@224 {int(m) / 1e9:.3f} G")
            for s, stage in enumerate(w.stages):
                print(f"  stage {s + 1}: " + " ".join(f"({c1},{c2})" for c1, c2 in stage))
    return 0


def _check(args):
    entries = read_arch_list(args.file)
    space = get_space(args.space) if args.space else None
    errors, archs = [], []
    for e in entries:
        try:
            archs.append((space or DOCUMENTED).validate(e.code))
        except CodeError as err:
            errors.append(f"{e.id}: {err}")
    if errors:
        print(f"{len(errors)} of {len(entries)} entries are invalid; first errors:", file=sys.stderr)
        for line in errors[:20]:
            print("  " + line, file=sys.stderr)
        return 1
    fits = [name for name, s in SPACES.items() if all(s.contains(a) for a in archs)]
    params, macs = costs(archs)
    print(f"{len(archs)} valid codes in {args.file}")
    print(f"fit spaces: {', '.join(fits) if fits else 'none'}")
    if archs:
        for label, values, unit in (("MACs@224", macs / 1e9, "G"), ("params", params / 1e6, "M")):
            print(f"{label}: min {values.min():.3f} {unit}  mean {values.mean():.3f} {unit}  "
                  f"max {values.max():.3f} {unit}")
    return 0


def _sample(args):
    space = get_space(args.space)
    archs = space.sample_many(args.n, args.seed, depth_uniform=args.depth_uniform)
    entries = [ArchEntry(id=f"{args.prefix}{i + 1}", code=a.code(), acc=0.0) for i, a in enumerate(archs)]
    write_arch_list(args.out, entries)
    print(f"wrote {len(entries)} codes from space {space.name!r} (seed {args.seed}) to {args.out}")
    return 0


def _spaces(args):
    spec = NetSpec()
    for s in (DOCUMENTED, RELEASED):
        p, m = costs([s.min_arch(), s.max_arch()], spec)
        print(f"{s.name}: {s.size():,} codes; min {s.min_arch().code()} ({m[0] / 1e9:.3f} G MACs, "
              f"{p[0]:,} params); max {s.max_arch().code()} ({m[1] / 1e9:.3f} G MACs, {p[1]:,} params)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m encoding", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("describe", help="depths, widths, params and MACs of codes")
    d.add_argument("codes", nargs="*")
    d.add_argument("--file", help="challenge-format architecture list")
    d.add_argument("--json", action="store_true", help="one JSON object per line")
    d.set_defaults(func=_describe)
    c = sub.add_parser("check", help="validate an architecture list and summarise it")
    c.add_argument("file")
    c.add_argument("--space", choices=sorted(SPACES), help="space to validate in (default: documented)")
    c.set_defaults(func=_check)
    s = sub.add_parser("sample", help="write a seeded sample of codes as an architecture list")
    s.add_argument("--space", default="released", choices=sorted(SPACES))
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--depth-uniform", action="store_true",
                   help="draw each stage's depth uniformly, as the released list does")
    s.add_argument("--prefix", default="arch")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_sample)
    sp = sub.add_parser("spaces", help="size, min and max subnet of each search space")
    sp.set_defaults(func=_spaces)
    args = parser.parse_args(argv)
    return run_reporting_errors(args.func, args)


if __name__ == "__main__":
    np.seterr(all="raise")
    sys.exit(main())
