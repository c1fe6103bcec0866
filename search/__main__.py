"""`python -m search run`: the most accurate subnets under MACs, params, latency or energy budgets, from shared
weights.

    python -m search run --config configs/glyphs.yaml --checkpoint runs/supernet-glyphs/supernet.pdparams \\
        --budget macs=2.5e6 [--budget latency_ms=1.5@latency.json | energy_mj=20@latency.json ...] \\
        [--space released] --out runs/search
    python -m paddle.distributed.launch --nproc_per_node 2 search/__main__.py run ...   (scoring over ranks)
    python -m search summary DIR [DIR ...] [--at N]    (hypervolume of several searches after N scored codes)

Screens candidates with the cheap setting `search.screen` (EcoNAS), re-scores the front and the best
`search.rescore_top` codes per budget with the full `evaluate:` setting, and writes DIR/front.json,
front_archs.json (an architecture list for `python -m evaluate run --archs`), search_log.jsonl,
pareto.png, scores.jsonl (the score cache) and the ledger. Rerunning continues from the last
finished generation. docs/search.md describes the method and its measurements.
"""

import argparse
import os
import sys
import types

if __package__ in (None, ""):  # run as a script (the distributed launcher): import from the repo root
    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = _root
    else:
        sys.path.insert(0, _root)

from infra.config import Flag, add_flags, default_config, get, resolve, set_key  # noqa: E402
from infra.errors import KitError, run_reporting_errors  # noqa: E402
from runtime import cpu_speed  # noqa: E402
from supernet.weights import SOURCE_FLAGS  # noqa: E402

FLAGS = SOURCE_FLAGS + [
    Flag("--space", "search.space", str, "released | documented"),
    Flag("--algorithm", "search.algorithm", str, "nsga2 | random (the baseline)"),
    Flag("--population", "search.population", int, "population size"),
    Flag("--generations", "search.generations", int, "generations after the initial population"),
    Flag("--seed", "search.seed", int, "seed of the whole search"),
    Flag("--transfer", "search.latency.transfer", str, "second latency table: refit the predictor on a few codes"),
    Flag("--background", "search.background", str, "an evaluation's results.json drawn behind pareto.png"),
    Flag("--out", "search.out", str, "search folder"),
    Flag("--device", "device", str, "auto | cpu | gpu"),
]
LOG = "search_log.jsonl"


def _say(msg, rank=0):
    if rank == 0:
        print(msg, flush=True)


def table_predictors(s, spec, resolution):
    """({cost: predictor}, {cost: report}) for the latency_ms and energy_mj budgets, each fitted on the table its
    budgets name; the latency predictor transferred with --transfer."""
    if s.transfer and not s.latency_table:
        raise KitError("--transfer refits a latency predictor: give a latency budget (latency_ms=X@TABLE.json)")
    from evaluate.latency import load_table
    from search.latency_model import fit_table, transfer

    models, reports = {}, {}
    for cost, path in s.tables.items():
        models[cost], report = fit_table(load_table(path), spec, resolution, s.latency_batch, s.latency_holdout,
                                         s.seed, path, target=cost)
        reports[cost] = {"source": report}
    if s.transfer:
        models["latency_ms"], reports["latency_ms"]["transfer"] = transfer(
            models["latency_ms"], load_table(s.transfer), s.latency_batch, s.transfer_codes, s.seed, s.transfer)
    return models, reports


def input_resolution(cfg):
    value = get(cfg, "data.resolution", None)
    return int(value) if value else None


def cmd_run(args):
    cfg = resolve(args.config, args, FLAGS, args.overrides)
    if args.budget:
        set_key(cfg, "search.budgets", list(args.budget), must_exist=False)
    from encoding import net_spec
    from evaluate.settings import EvalSettings
    from infra.runlock import release
    from runtime.device import claim_run_folder, init_distributed, setup_device
    from search.budget import CostModel, check_reachable
    from search.report import background_points
    from search.settings import SearchSettings, check_weights_space, screen_config

    # every check before anything is loaded or written
    s = SearchSettings.from_config(cfg)
    spec = net_spec(cfg)
    resolution = input_resolution(cfg)
    predictors, predictor_reports = table_predictors(s, spec, resolution or s.space.max_arch().resolution)
    cost_model = CostModel(spec, resolution, predictors)
    check_reachable(s.budgets, cost_model, s.space)
    full = EvalSettings.from_config(cfg)
    check_weights_space(*full.weights, s.space)
    screen_cfg = screen_config(cfg)
    screen = EvalSettings.from_config(screen_cfg) if screen_cfg is not None else None
    background = background_points(s.background, spec, resolution, s.costs[0]) if s.background else None
    run = types.SimpleNamespace(cfg=cfg, s=s, spec=spec, resolution=resolution, cost_model=cost_model,
                                predictor_reports=predictor_reports, full=full, screen=screen, background=background,
                                screen_cfg=screen_cfg if screen is not None else cfg)
    run.device = setup_device(cfg)  # before joining the group: NCCL binds to this card
    run.rank, run.world = init_distributed()
    claim_run_folder(s.out)
    try:
        return _run_search(run)
    finally:
        release(s.out)  # the folder's lock (rank 0 holds it): free for the next run in this process


def _open_search(run, device):
    """The checkpointed search of the folder (refused if scored under another setting), or a new one."""
    from search.engine import Search

    s = run.s
    search = Search.load(s.out, s)
    resumed = search is not None
    if search is None:
        search = Search(s, run.cost_model)
    search.settings = s  # a rerun may ask for more generations
    from search.scoring import setting_of

    _, digest = setting_of(run.screen_cfg, run.screen or run.full, device)
    if search.score_digest is not None and search.score_digest != digest:
        raise KitError(f"{s.out} holds a search scored under another evaluation setting ({search.score_digest}, "
                       f"now {digest}: weights, images or calibration changed): use another --out or remove "
                       f"{os.path.join(s.out, 'checkpoint.pkl')}")
    search.score_digest = digest
    return search, resumed


def _run_search(run):
    import json

    from tqdm import tqdm

    from infra.atomic import atomic_write_text
    from infra.jsonl import JsonLines
    from infra.ledger import Ledger, ledger_path, summary_line
    from runtime.device import barrier, print_start_line
    from search.cache import ScoreCache
    from search.scoring import Scorer

    s, rank, world = run.s, run.rank, run.world
    cache = ScoreCache(s.cache or os.path.join(s.out, "scores.jsonl"), writer=rank == 0)
    device = run.device
    search, resumed = _open_search(run, device)
    if rank == 0:
        print_start_line("search run", device, world, run.full.amp)
    barrier()  # every rank has read the cache and the checkpoint before rank 0 appends to them
    ledger = Ledger(ledger_path(s.out, "search", rank, world), "search", rank=rank)
    scorer = Scorer(run.screen_cfg, run.screen or run.full, cache, rank, world, device, ledger)
    log = None
    bar = tqdm(total=s.generations + 1, initial=search.generation, unit="gen", desc="search",
               disable=not (s.progress and rank == 0), dynamic_ncols=True)
    try:
        if rank == 0:  # the log as of the checkpoint (a killed run may have logged one generation more)
            atomic_write_text(os.path.join(s.out, LOG), "".join(json.dumps(r) + "\n" for r in search.history))
            log = JsonLines(os.path.join(s.out, LOG))
            _say(f"{'resuming at' if resumed else 'starting'} generation {search.generation} of {s.generations + 1}: "
                 f"{s.algorithm} over space {s.space.name}, objectives top1 + {', '.join(search.cost_names)}, budgets "
                 f"{', '.join(b.text for b in s.budgets) or 'none'}; scores {scorer.digest}"
                 f"{' (screen)' if run.screen is not None else ''}, {cache.count(scorer.digest)} cached")
        while search.generation <= s.generations:
            record = search.step(scorer, run.cost_model)
            if record is None:
                _say(f"the algorithm has no new code to ask after {search.generation} generations: stopping")
                break
            if rank == 0:
                log.write(record)
                search.save(s.out)
            bar.update(1)
            bar.set_postfix_str(f"hv {record['hypervolume']:.4f}, {record['cumulative_evaluations']} codes")
        bar.close()
        _finish(run, search, scorer, cache, device, ledger)
    finally:
        bar.close()
        if log is not None:
            log.close()
        ledger.close()
        cache.close()
    _say(summary_line(ledger.summary(subnets=scorer.calls)), rank)
    barrier()
    return 0


def _finish(run, search, scorer, cache, device, ledger):
    """Re-score the front and the best codes per budget with the full setting (when screening), then rank 0
    writes front.json, front_archs.json and pareto.png."""
    from search.report import pareto_png, write_front
    from search.scoring import Scorer

    s = run.s
    front = search.front_codes()
    picks = {b: {"screen": c} for b, c in search.best_per_budget().items()}
    rescored = {}
    settings_info = {"screen": {"digest": scorer.digest, "pinned": scorer.pinned}}
    if run.screen is not None:
        chosen = list(front)
        for b in s.budgets:
            chosen += top_codes(search, b, s.rescore_top)
        chosen = list(dict.fromkeys(chosen))
        full_scorer = Scorer(run.cfg, run.full, cache, run.rank, run.world, device, ledger)
        rescored = dict(zip(chosen, full_scorer(chosen, phase="rescore"), strict=True))
        records = {c: {**rescored[c], "costs": search.archive[c]["costs"]} for c in chosen}
        for b, c in search.best_per_budget(records=records).items():
            picks[b]["full"] = c
        settings_info["full"] = {"digest": full_scorer.digest, "pinned": full_scorer.pinned}
    else:  # no screening: the search scored with the full setting, and nothing needs re-scoring
        settings_info["full"] = settings_info["screen"]
    if run.rank == 0:
        data = write_front(s.out, search, front, rescored, picks, settings_info, run.predictor_reports)
        pareto_png(os.path.join(s.out, "pareto.png"), search, front, rescored, run.background)
        _summary(search, data, scorer, run.predictor_reports)


def top_codes(search, budget, k):
    """The `k` codes of the archive meeting `budget` with the best screening top-1."""
    import numpy as np

    codes = list(search.archive)
    values = {c: np.array([search.archive[x]["costs"][c] for x in codes]) for c in {lim.cost for lim in budget.limits}}
    ok = budget.met(values)
    inside = [c for c, m in zip(codes, ok, strict=True) if m]
    first = budget.limits[0].cost
    return sorted(inside, key=lambda c: (-search.archive[c]["top1"], search.archive[c]["costs"][first], c))[:k]


def _summary(search, data, scorer, predictor_reports):
    last = search.history[-1] if search.history else {}
    print(f"{search.generation} generations, {len(search.archive)} codes scored ({scorer.calls} by the oracle in "
          f"this run), front of {len(data['front'])}, hypervolume {last.get('hypervolume', 0):.4f}")
    if data["rescored"]:
        tau = data["kendall_tau_screen_vs_full"]
        print(f"re-scored {data['rescored']} codes with the full setting: Kendall tau screen vs full "
              f"{'undefined' if tau is None else f'{tau:.3f}'}")
    for b, p in data["best_per_budget"].items():
        for which, e in p.items():
            if e is None:
                print(f"  {b} [{which}]: no code found")
                continue
            acc = (e["full"] or e["screen"])["top1"] if which == "full" else e["screen"]["top1"]
            cost_text = ", ".join(f"{k} {v:.4g}" for k, v in e["costs"].items())
            print(f"  {b} [{which}]: {e['code']} top1 {acc:.4f} ({cost_text})")
    for cost, reports in predictor_reports.items():
        what = "latency" if cost == "latency_ms" else "energy"
        for key, r in reports.items():
            srcc = r["srcc"]
            macs = r.get("srcc_macs")
            print(f"  {what} predictor ({key}, {r['table']}): fitted on {r['fit']}, SRCC "
                  f"{'undefined' if srcc is None else f'{srcc:.3f}'} on {r['held_out']} held-out codes "
                  f"(MACs: {'undefined' if macs is None else f'{macs:.3f}'})")


def cmd_summary(args):
    from search.report import summarize

    rows, n, stats = summarize(args.folders, args.at)
    print(f"hypervolume after {n} scored codes (the last generation within {n}):")
    for r in rows:
        hv = "n/a" if r["hypervolume_at"] is None else f"{r['hypervolume_at']:.4f}"
        full = "" if r["hypervolume_full"] is None else f"; re-scored front, full setting {r['hypervolume_full']:.4f}"
        print(f"  {r['folder']}: {r['algorithm']} seed {r['seed']}, {hv} (final {r['hypervolume']:.4f} "
              f"after {r['evaluations']}{full})")
    for algorithm, st in stats.items():
        spread = f" +- {st['std']:.4f} (sd)" if st["std"] is not None else ""
        mean = "n/a" if st["mean"] is None else f"{st['mean']:.4f}"
        print(f"{algorithm}: {mean}{spread} over {st['runs']} runs")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="search under budgets")
    p.add_argument("--config", default=default_config("demo"), help="YAML config (default: configs/demo.yaml)")
    p.add_argument("--budget", action="append", metavar="COST=LIMIT",
                   help="macs=2.5e9 | params=2e7 | latency_ms=5@TABLE.json | energy_mj=20@TABLE.json; a,b: both at "
                        "once; repeatable "
                        "[config: search.budgets]")
    add_flags(p, FLAGS)
    p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. search.population=50)")
    p.set_defaults(func=cmd_run)
    q = sub.add_parser("summary", help="hypervolume of finished searches at an equal number of scored codes")
    q.add_argument("folders", nargs="+", help="search folders (--out of each run)")
    q.add_argument("--at", type=int, help="compare after this many scored codes (default: the fewest any reached)")
    q.set_defaults(func=cmd_summary)
    return parser


def main(argv=None):
    cpu_speed.default_threads()  # before Paddle is imported
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return run_reporting_errors(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
