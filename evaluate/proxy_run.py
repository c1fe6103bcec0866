"""`python -m evaluate proxies`: zero-cost proxies of every code of an architecture list -> OUT/results.json.

    python -m evaluate proxies --config configs/imagenet.yaml --archs ARCHS.json \\
        --proxies zen,synflow,naswot,gradnorm --out DIR [--repeats 1] [key=value ...]

One record per code, each proxy's score under its name (`python -m submission make --metric zen`
reads it), plus what it cost: {"id", "code", "zen", ..., "seconds" (wall), "cpu_seconds" (this process's
CPU time, all threads: the figure to compare on a shared machine), "proxy_seconds" (wall, per proxy)}.
Like `evaluate run`, the work is sharded over ranks (`python -m paddle.distributed.launch
--nproc_per_node N evaluate/__main__.py proxies ...`: rank r takes ids[r::N]), each finished code is
one fsynced line of its rank's shard, a rerun resumes, and the manifest pins the settings. No data
and no weights are read: the proxies run on Gaussian inputs at seeded random initialisation
(supernet/proxies.py; the choices and measurements: docs/proxies.md).
"""

import time

from encoding import KitError, net_spec, read_arch_list
from encoding.archlist import check_codes
from infra.config import Flag, get
from supernet.proxy_settings import PROXIES, name_list, proxy_settings

FLAGS = [
    Flag("--archs", "evaluate.archs", str, "architecture list JSON ({id: {'arch': CODE, ...}})"),
    Flag("--out", "evaluate.proxies.out", str, "results directory"),
    Flag("--proxies", "evaluate.proxies.names", name_list, f"comma-separated proxies: {','.join(PROXIES)}"),
    Flag("--repeats", "evaluate.proxies.repeats", int, "seeded initialisations averaged per code"),
    Flag("--batch_size", "evaluate.proxies.batch_size", int, "Gaussian images per forward (zen, naswot, gradnorm)"),
    Flag("--resolution", "evaluate.proxies.resolution", int, "input side in px (default: data.resolution)"),
    Flag("--seed", "evaluate.proxies.seed", int, "seed of the weights and inputs (the same for every code)"),
    Flag("--device", "device", str, "auto | cpu | gpu"),
]


def result_keys(settings):
    return ("id", "code", *settings.names, "seconds", "cpu_seconds", "proxy_seconds")


def pinned(settings, spec, device=None):
    """What the manifest pins: the proxies' settings, the network family and the record's fields; with
    `device` also the device kind and its float32 math (runtime.device.precision_facts: TF32)."""
    out = {"kind": "proxies", "proxies": settings.to_dict(), "model": spec.to_dict(),
           "record": list(result_keys(settings))}
    if device is not None:
        from runtime.device import precision_facts

        out["device"] = precision_facts(device)
    return out


def score_pending(store, pending, archs_by_id, spec, settings, share_size, rank, world, out, progress=True,
                  chunk=100):
    """Score `pending` entries, one fsynced record each, under the ledger; return the count."""
    from tqdm import tqdm

    from infra.ledger import Ledger, ledger_path, summary_line
    from supernet.proxies import score_arch

    bar = tqdm(total=share_size, initial=share_size - len(pending), unit="code", dynamic_ncols=True,
               disable=not (progress and rank == 0), desc=f"rank {rank}/{world}" if world > 1 else "proxies")
    ledger = Ledger(ledger_path(out, "evaluate", rank, world), "evaluate", rank=rank)
    done, start = 0, time.perf_counter()
    try:
        with store.open(rank):
            for i in range(0, len(pending), chunk):
                part = pending[i:i + chunk]
                with ledger.phase("proxies", subnets=len(part), proxies=list(settings.names)):
                    for entry in part:
                        t0, c0 = time.perf_counter(), time.process_time()
                        values, seconds = score_arch(archs_by_id[entry.id], spec, settings)
                        store.append({"id": entry.id, "code": entry.code, **values, "seconds": time.perf_counter() - t0,
                                      "cpu_seconds": time.process_time() - c0, "proxy_seconds": seconds})
                        done += 1
                        bar.update(1)
                        bar.set_postfix_str(f"{60.0 * done / (time.perf_counter() - start):.1f} codes/min")
    finally:
        bar.close()
        ledger.close()
    if rank == 0:
        print(summary_line(ledger.summary(subnets=done)), flush=True)
    return done


def run(cfg):
    """The whole command: check, shard, resume, score, merge. Returns the exit status."""
    archs_path = get(cfg, "evaluate.archs", None)
    out = get(cfg, "evaluate.proxies.out", None)
    if not archs_path:
        raise KitError("--archs is required (config key evaluate.archs)")
    if not out:
        raise KitError("--out is required (config key evaluate.proxies.out)")
    settings = proxy_settings(cfg)  # every setting checked before anything is created
    spec = net_spec(cfg)
    entries = read_arch_list(archs_path)
    archs = check_codes(entries, archs_path, outcome="computed")

    from runtime.device import barrier, claim_run_folder, init_distributed, print_start_line, setup_device

    from .results_store import ResultsStore

    device = setup_device(cfg)  # before joining the group (NCCL binds to this card); the manifest pins it
    rank, world = init_distributed()
    claim_run_folder(out)
    store = ResultsStore(out, entries, keys=result_keys(settings))
    store.check_manifest(pinned(settings, spec, device))
    done, share, pending = store.resume(rank, world)
    if rank == 0:
        print(f"{len(entries)} codes, {len(done)} already done; rank {rank} of {world}: {len(pending)} of its "
              f"{len(share)} to score with {', '.join(settings.names)} at {settings.resolution} px, batch "
              f"{settings.batch_size}, {settings.repeats} init(s)", flush=True)
    if pending:
        print_start_line("evaluate proxies", device, world)
        by_id = {e.id: a for e, a in zip(entries, archs, strict=True)}
        score_pending(store, pending, by_id, spec, settings, len(share), rank, world, out,
                      progress=bool(get(cfg, "evaluate.progress", True)), chunk=int(get(cfg, "evaluate.ledger_chunk",
                                                                                        100)))
    barrier()
    if rank == 0:
        path = store.merge()
        if path is None:
            missing = store.missing()
            print(f"{len(missing)} codes still have no score (first: {missing[0].id}); rerun to finish them")
            return 1
        print(f"wrote {path} ({len(entries)} records)")
    return 0


def command(args):
    """`python -m evaluate proxies` (argparse namespace: --config, the FLAGS, key=value overrides)."""
    from infra.config import resolve

    return run(resolve(args.config, args, FLAGS, args.overrides))
