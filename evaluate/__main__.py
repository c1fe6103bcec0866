"""`python -m evaluate run|fidelity|merge|latency|proxies`: score subnets from a supernet's shared weights.

  run       every code of an architecture list: top-1, top-5, loss -> RESULTS_DIR/results.json
            (resumable; under `python -m paddle.distributed.launch ... evaluate/__main__.py run`
            each rank takes ids[rank::world], and the images are decoded once over the ranks)
  fidelity  does a cheaper setting rank a seeded sample of subnets like the full one, and how
            much faster is it?
  merge     write results.json from complete shards (run does this itself when it finishes)
  latency   measured latency of subnets (evaluate/latency.py)
  proxies   zero-cost proxies (Zen-score, synflow, NASWOT, grad-norm) at random init (evaluate/proxy_run.py)

paddle.distributed.launch runs scripts, not modules, so this file also works as a script.
"""

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # run as a script (the distributed launcher): import from the repo root
    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = _root
    else:
        sys.path.insert(0, _root)

from encoding import KitError, read_arch_list, run_reporting_errors  # noqa: E402
from encoding.archlist import check_codes  # noqa: E402
from infra.config import Flag, add_flags, default_config, get, resolve  # noqa: E402
from runtime import cpu_speed  # noqa: E402
from supernet.weights import SOURCE_FLAGS  # noqa: E402

COMMON_FLAGS = SOURCE_FLAGS + [
    Flag("--archs", "evaluate.archs", str, "architecture list JSON ({id: {'arch': CODE, ...}})"),
    Flag("--calibration", "evaluate.calibration.mode", str, "BN statistics: none | recalibrate"),
    Flag("--calib_batches", "evaluate.calibration.batches", int, "calibration batches K"),
    Flag("--batch_size", "evaluate.batch_size", int, "inference batch size"),
    Flag("--subset", "evaluate.subset", int, "evaluation images (0 = whole split)"),
    Flag("--amp", "evaluate.amp", str, "none | bf16 | fp16 (GPU only)"),
    Flag("--device", "device", str, "auto | cpu | gpu"),
]
RUN_FLAGS = COMMON_FLAGS + [Flag("--out", "evaluate.out", str, "results directory")]
FIDELITY_FLAGS = COMMON_FLAGS + [
    Flag("--sample", "evaluate.fidelity.sample", int, "subnets in the seeded sample"),
    Flag("--report", "evaluate.fidelity.report", str, "also write the table as JSON here"),
]


def _say(msg, rank=0):
    if rank == 0:
        print(msg, flush=True)


def _required(cfg, key, option):
    value = get(cfg, key, None)
    if value in (None, ""):
        raise KitError(f"{option} is required (config key {key})")
    return value


def _chunks(items, n):
    n = max(1, int(n))
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _open_ledger(out, rank, world):
    from infra.ledger import Ledger, ledger_path

    return Ledger(ledger_path(out, "evaluate", rank, world), "evaluate", rank=rank)


def evaluate_pending(oracle, store, pending, share_size, rank, world):
    """Score `pending` entries with `oracle`, appending one fsynced record per subnet; return the count."""
    from tqdm import tqdm

    from infra.ledger import summary_line

    settings = oracle.settings
    show = settings.progress and rank == 0
    bar = tqdm(total=share_size, initial=share_size - len(pending), unit="subnet", disable=not show,
               desc=f"rank {rank}/{world}" if world > 1 else "evaluate", dynamic_ncols=True)
    ledger = _open_ledger(settings.out, rank, world)
    done, start = 0, time.perf_counter()
    try:
        with store.open(rank):
            for chunk in _chunks(pending, settings.ledger_chunk):
                c0, e0 = oracle.seconds()
                with ledger.phase("subnets", images=len(chunk) * oracle.images_per_subnet,
                                  subnets=len(chunk)) as phase:
                    for entry in chunk:
                        store.append({"id": entry.id, "code": entry.code, **oracle.score_one(entry.code)})
                        done += 1
                        bar.update(1)
                        bar.set_postfix_str(f"{60.0 * done / (time.perf_counter() - start):.1f} subnets/min")
                    c1, e1 = oracle.seconds()
                    phase.extra.update(calibration_seconds=c1 - c0, eval_seconds=e1 - e0)
    finally:
        bar.close()
        ledger.close()
    _say(summary_line(ledger.summary(subnets=done)), rank)
    return done


def cmd_run(args):
    cfg = resolve(args.config, args, RUN_FLAGS, args.overrides)
    archs = _required(cfg, "evaluate.archs", "--archs")
    out = _required(cfg, "evaluate.out", "--out")
    entries = read_arch_list(archs)
    check_codes(entries, archs)

    from encoding import net_spec
    from evaluate.results_store import ResultsStore
    from evaluate.settings import EvalSettings
    from runtime.device import (
        barrier,
        claim_run_folder,
        gather_from_all,
        init_distributed,
        print_start_line,
        setup_device,
    )

    settings = EvalSettings.from_config(cfg)  # the section, read and checked once
    source = settings.source()
    groups = source.groups()  # every code has a group, every group its weights, before anything runs
    for e in entries:
        source.group_of(e.code, groups)
    device = setup_device(cfg)  # before joining the group (NCCL binds to this card); the manifest pins it
    rank, world = init_distributed()
    claim_run_folder(out)  # one writer per results directory (rank 0 holds it for the whole run)
    store = ResultsStore(out, entries)
    store.check_manifest(settings.pinned(net_spec(cfg), source, device))
    done, share, pending = store.resume(rank, world)
    _say(f"{len(entries)} codes, {len(done)} already done; rank {rank} of {world}: "
         f"{len(pending)} of its {len(share)} to evaluate", rank)
    # the images are decoded once over all ranks (each its share, all-gathered), so a rank with nothing
    # left to score still takes part while any other builds its oracle: it must not leave the others waiting
    busy = gather_from_all(len(pending))
    if pending:
        from evaluate.oracle import Oracle

        print_start_line("evaluate run", device, world, settings.amp)
        t0 = time.perf_counter()
        oracle = Oracle(cfg, settings, device, across_ranks=True)
        _say(f"setup {time.perf_counter() - t0:.1f} s on {device}: {oracle.describe()}", rank)
        evaluate_pending(oracle, store, pending, len(share), rank, world)
    elif any(busy):
        from evaluate.oracle import contribute_images

        contribute_images(cfg, settings)
    barrier()
    if rank == 0:
        path = store.merge()
        if path is None:
            missing = store.missing()
            _say(f"{len(missing)} codes still have no result (first: {missing[0].id}); "
                 f"rerun to finish them")
            return 1
        _say(f"wrote {path} ({len(entries)} records)")
    return 0


def cmd_merge(args):
    cfg = resolve(args.config, args, [Flag("--archs", "evaluate.archs", str, ""),
                                      Flag("--out", "evaluate.out", str, "")], args.overrides)
    archs, out = _required(cfg, "evaluate.archs", "--archs"), _required(cfg, "evaluate.out", "--out")
    from evaluate.results_store import ResultsStore

    store = ResultsStore(out, read_arch_list(archs))
    path = store.merge()
    if path is None:
        missing = store.missing()
        print(f"error: {len(missing)} of {len(store.entries)} codes have no result yet "
              f"(first: {', '.join(e.id for e in missing[:5])}); run `python -m evaluate run` to finish them",
              file=sys.stderr)
        return 1
    print(f"wrote {path} ({len(store.entries)} records)")
    return 0


def cmd_fidelity(args):
    cfg = resolve(args.config, args, FIDELITY_FLAGS, args.overrides)
    archs = _required(cfg, "evaluate.archs", "--archs")
    entries = read_arch_list(archs)
    check_codes(entries, archs)
    from evaluate.fidelity import fidelity_settings, format_table, run_fidelity

    settings = fidelity_settings(cfg)  # every setting read and checked before anything loads
    from runtime.device import print_start_line, setup_device

    device = setup_device(cfg)
    print_start_line("evaluate fidelity", device, amp=settings[0][2].amp)
    report = run_fidelity(cfg, settings, entries, device, log=print)
    print(format_table(report))
    path = get(cfg, "evaluate.fidelity.report", None)
    if path:
        from encoding import atomic_write_json

        atomic_write_json(path, report, indent=1)
        print(f"wrote {path}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    from evaluate import proxy_run

    specs = (("run", RUN_FLAGS, cmd_run, "evaluate every code of an architecture list"),
             ("fidelity", FIDELITY_FLAGS, cmd_fidelity, "rank fidelity and speed of cheaper settings"),
             ("merge", [Flag("--archs", "evaluate.archs", str, "architecture list JSON"),
                        Flag("--out", "evaluate.out", str, "results directory")], cmd_merge,
              "write results.json from complete shards"),
             ("proxies", proxy_run.FLAGS, proxy_run.command, "zero-cost proxies at random initialisation"))
    for name, flags, func, help_text in specs:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default=default_config("demo"), help="YAML config (default: configs/demo.yaml)")
        add_flags(p, flags)
        p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. evaluate.subset=500)")
        p.set_defaults(func=func)
    from evaluate import latency

    latency.add_arguments(sub.add_parser("latency", help="measured latency of subnets (evaluate/latency.py)",
                                         description=latency.__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def main(argv=None):
    cpu_speed.default_threads()  # before Paddle is imported
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return run_reporting_errors(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
