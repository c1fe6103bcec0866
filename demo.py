"""The embedded end-to-end demo: supernet -> shared-weight scores -> submission -> local leaderboard.

    python demo.py [--setup] [--benchmark glyphs | fashion-mnist] [--out runs/demo-BENCHMARK]
                   [--config CONFIG] [--archs configs/demo_archs.json] [--gt GT.json]
                   [--no-baseline] [--recipe FILE ...] [--all-codes] [--metric top1] [key=value ...]

Benchmarks (each a config and a ground truth over 40 of the 500 codes of configs/demo_archs.json):
`glyphs` (default; configs/glyphs.yaml, configs/glyphs_gt.json): 100 CJK characters rendered from
Debian's fonts-noto-cjk, where capacity wins as on ImageNet, the table that judges a training
strategy; `fashion-mnist` (configs/demo.yaml, configs/demo_gt.json): the quick smoke, where cheap
codes learn fastest, so it proves the pipeline but cannot judge a strategy.

Every stage is a subprocess running the command a user would type, so the demo proves the
documented commands, not a private code path:

  setup       (--setup) the Debian packages of requirements-apt.txt (bash install.sh --apt-only);
              pip install -r requirements.txt
  data-glyphs python -m imagedata.glyphs --out DIR (a glyph config whose build is not there yet)
  train-NAME  bash train_supernet.sh CONFIG supernet.output_dir=OUT/supernet-NAME [strategy keys] [key=value ...]
  eval-NAME   python -m evaluate run --config CONFIG --checkpoint .../supernet.pdparams --archs ARCHS --out ...
              (OUT/eval-NAME; OUT/eval-NAME-gt for a supernet evaluated on the ground-truth codes only)
  make-NAME   python -m submission make --results .../results.json --archs ARCHS --out OUT/submission-NAME.json
  validate-NAME, score-NAME   python -m submission validate|score (score: report JSON and scatter PNG)

NAME is `default` (the config's sampler and loss as written), `recipe-NAME` for each --recipe FILE
(the recipe over CONFIG at CONFIG's epochs, its epoch-based schedules scaled to them; a recipe that
starts from the official weights or distils from them gets the largest code trained standalone
with CONFIG, stage train-largest, in their place; evaluated with the recipe's own evaluation
protocol, on the ground-truth codes only unless --all-codes; few-shot phases are not run) and, unless --no-baseline,
`uniform` (the baseline strategy: one uniformly sampled path per step, no sandwich rule;
same epochs, so it costs a quarter of the default's steps). The baseline is there for its row
of the table: it evaluates, submits and scores only the ground-truth codes (every code with
--all-codes, which makes the tau vs MACs column cover the same codes in every row), and without a
ground truth it is not run. key=value overrides
reach training and evaluation. A training or evaluation stage whose outputs exist (and are
newer than its inputs) is skipped, so rerunning the same command resumes (training itself also
resumes from its newest checkpoint). make, validate and score always run: they take seconds,
and --metric or the ground truth may have changed. To retrain a supernet with other settings,
give another --out or delete OUT/supernet-NAME (and OUT/eval-NAME); an edited CONFIG file
(newer than the weights) reruns training, which resumes or refuses by its own checks.

At the end it prints the wall time per stage and the demo table: Kendall tau-b, Pearson and
precision@10% against the ground truth's mean accuracy for each supernet (with the ground-truth
codes' mean top-1 from shared weights, which shows a collapsed supernet) and for the MACs and
parameter-count baselines, plus the noise ceiling (seed 0 vs seed 1 of the ground truth on the
same codes; with 2h seeds, the mean of h seeds vs the mean of the other h), and writes it all to
OUT/demo_report.json.

Ground truths: the 40 codes of configs/demo_gt.json (spread over MACs) trained standalone, each file
also the list of its codes, so it is extended or rebuilt from itself (resumable; rerun to continue):

  python pretrain.py gt --config CONFIG --archs configs/demo_gt.json --repeat SEEDS --seed 0 \\
      --output runs/gt --out GT.json

Only the standard library is imported at the top: with --setup this script runs before the
requirements are installed.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
# The benchmarks: (config, ground truth); both rank the 500 codes of ARCHS.
ARCHS = "configs/demo_archs.json"
BENCHMARKS = {"glyphs": ("configs/glyphs.yaml", "configs/glyphs_gt.json"),
              "fashion-mnist": ("configs/demo.yaml", "configs/demo_gt.json")}
# The baseline strategy: plain uniform single-path sampling (no sandwich rule, so no in-place distillation).
BASELINE = ("uniform", ["supernet.sampler.strategy=uniform", "supernet.sampler.sandwich=false",
                        "supernet.sampler.num_random=1", "supernet.loss.inplace_distill=false"])


class DemoError(Exception):
    """A stage failed or an input is missing; the message says which and where its log is."""


# --- stages --------------------------------------------------------------------------------

class Stage:
    """A command, its outputs and inputs; CHECK (optional) is called on outputs that exist and are
    newer than the inputs before they are reused, and raises DemoError if they cannot be."""

    def __init__(self, name, argv, outputs=(), inputs=(), always=False, env=None, check=None):
        self.name, self.argv, self.outputs, self.inputs = name, list(argv), list(outputs), list(inputs)
        self.always, self.env, self.check = always, env or {}, check
        self.status, self.seconds = "pending", 0.0

    def up_to_date(self):
        """Outputs all exist, none is older than an existing input, and they pass the check."""
        if self.always or not self.outputs or not all(os.path.exists(p) for p in self.outputs):
            return False
        newest_input = max((os.path.getmtime(p) for p in self.inputs if os.path.exists(p)), default=0.0)
        if min(os.path.getmtime(p) for p in self.outputs) < newest_input:
            return False
        if self.check:
            self.check()
        return True

    def command_line(self):
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + " ".join(shlex.quote(a) for a in self.argv)


def run_stage(stage, log_dir):
    """Run one stage, teeing its output to the console and to LOG_DIR/NAME.log; raise DemoError on failure."""
    if stage.up_to_date():
        stage.status = "reused"
        print(f"== {stage.name}: outputs exist, skipped ({', '.join(stage.outputs)})", flush=True)
        return
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, f"{stage.name}.log")
    print(f"== {stage.name}: {stage.command_line()}", flush=True)
    env = dict(os.environ, **stage.env)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {stage.command_line()}\n")
        proc = subprocess.Popen(stage.argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    stage.seconds = time.perf_counter() - start
    if rc != 0:
        stage.status = f"failed (exit {rc})"
        raise DemoError(f"stage {stage.name} failed with exit status {rc}; its output is in {log_path}")
    missing = [p for p in stage.outputs if not os.path.exists(p)]
    if missing:
        stage.status = "failed (no output)"
        raise DemoError(f"stage {stage.name} exited 0 but did not write {', '.join(missing)}; see {log_path}")
    stage.status = "ran"


def setup_stages(py):
    """The Debian packages of requirements-apt.txt (install.sh: apt-get only for missing ones), then pip."""
    return [Stage("setup-apt", ["bash", "install.sh", "--apt-only"], always=True),
            Stage("setup-pip", [py, "-m", "pip", "install", "-q", "-r", "requirements.txt"], always=True)]


START_LINE = """import sys
from runtime import cpu_speed
cpu_speed.default_threads()
import runtime.device as runtime
from infra.config import get, resolve
cfg = resolve(sys.argv[1], overrides=sys.argv[2:])
device = runtime.select_device(cfg.get("device", "auto"))
print(runtime.start_line("demo.py", device, 1, {"supernet": get(cfg, "supernet.amp", None),
                                                      "evaluate": get(cfg, "evaluate.amp", None)}))
"""


def data_stages(args, py):
    """A dataset the config reads that a command builds: the glyphs (`data.name: glyphs`), built into
    data.glyphs.dir unless a build is there (a build of other settings is refused by the loader,
    naming the difference and this command)."""
    sys.path.insert(0, ROOT)
    from infra.config import get, resolve

    cfg = resolve(args.config, overrides=args.overrides)
    if get(cfg, "data.name", None) != "glyphs":
        return []
    out = get(cfg, "data.glyphs.dir")
    out = out if os.path.isabs(out) else os.path.join(ROOT, out)
    params = [f"--{k.replace('_', '-')}={get(cfg, f'data.glyphs.{k}')}"
              for k in ("classes", "train_per_class", "test_per_class", "seed", "size")]
    return [Stage("data-glyphs", [py, "-m", "imagedata.glyphs", "--out", out, *params],
                  outputs=[os.path.join(out, "manifest.json")])]


def print_start_line(py, args):
    """The kit's start line (device, versions, AMP, threads) for the demo's config, from a child
    process: importing Paddle here would pin OMP_NUM_THREADS for every stage after it."""
    env = dict(os.environ, PYTHONPATH=ROOT + (os.pathsep + os.environ["PYTHONPATH"]
                                              if os.environ.get("PYTHONPATH") else ""))
    proc = subprocess.run([py, "-c", START_LINE, args.config, *args.overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    lines = (proc.stdout if proc.returncode == 0 else proc.stderr).strip().splitlines()
    print(lines[-1] if proc.returncode == 0 else f"demo.py: no start line ({lines[-1] if lines else '?'})",
          flush=True)
    loud = [line for line in proc.stderr.splitlines() if line.startswith("!!")]  # a CPU build on a GPU machine
    if loud:
        print("\n".join(loud), file=sys.stderr, flush=True)


def results_path(out, name, gt_only):
    """Where NAME's evaluation results go: OUT/eval-NAME, or OUT/eval-NAME-gt for an evaluation of the
    ground-truth codes only (a results folder holds one list, so the two never share a folder)."""
    return os.path.join(out, f"eval-{name}{'-gt' if gt_only else ''}", "results.json")


def check_results_list(results, archs):
    """Refuse to reuse RESULTS (an evaluation's results.json) for ARCHS unless they hold the same ids:
    a results folder holds one list, and reusing another's would put the wrong codes in the table."""
    def check():
        sys.path.insert(0, ROOT)
        from encoding import read_arch_list

        wanted = {e.id for e in read_arch_list(archs)}
        try:
            held = {r["id"] for r in read_records(results)}
        except (ValueError, KeyError, TypeError) as e:
            raise DemoError(f"{results} is not an evaluation's results ({e!r}); "
                            "delete its folder to rerun it") from None
        if held != wanted:
            raise DemoError(f"{os.path.dirname(results)} holds results of another code list ({len(held)} codes, "
                            f"not the {len(wanted)} of {archs}); give another --out or delete that folder")
    return check


def variant_stages(name, train_keys, args, py, score_config, gt_only, config=None, eval_keys=(), inputs=()):
    """Train, evaluate, make, validate (and score) one supernet: CONFIG (default --config) with
    TRAIN_KEYS for training and EVAL_KEYS for evaluation, both followed by the user's overrides;
    evaluated on --archs, or on the ground-truth codes only (GT_ONLY)."""
    out, config = args.out, config or args.config
    archs = args.gt if gt_only else args.archs
    sn_dir = os.path.join(out, f"supernet-{name}")
    weights = os.path.join(sn_dir, "supernet.pdparams")
    results = results_path(out, name, gt_only)
    eval_dir = os.path.dirname(results)
    submission = os.path.join(out, f"submission-{name}.json")
    stages = [
        Stage(f"train-{name}", ["bash", "train_supernet.sh", config, f"supernet.output_dir={sn_dir}",
                                *train_keys, *args.overrides], outputs=[weights],
              inputs=[config, args.config, *inputs], env={"PYTHON": py}),
        Stage(f"eval-{name}", [py, "-m", "evaluate", "run", "--config", config, "--checkpoint", weights,
                               "--archs", archs, "--out", eval_dir, *eval_keys, *args.overrides],
              outputs=[results], inputs=[weights, archs], check=check_results_list(results, archs)),
        Stage(f"make-{name}", [py, "-m", "submission", "make", "--results", results, "--archs", archs,
                               "--out", submission, "--metric", args.metric],
              outputs=[submission], always=True),
        Stage(f"validate-{name}", [py, "-m", "submission", "validate", submission, "--archs", archs],
              always=True),
    ]
    if args.gt_present:
        stages.append(Stage(f"score-{name}", [py, "-m", "submission", "score", submission, "--gt", args.gt,
                                              "--config", score_config,
                                              "--out", os.path.join(out, f"score-{name}.json"),
                                              "--plot", os.path.join(out, f"score-{name}.png")],
                            outputs=[os.path.join(out, f"score-{name}.json"), os.path.join(out, f"score-{name}.png")],
                            always=True))
    return stages


# --- recipes at the demo's size -------------------------------------------------------------

def recipe_name(path):
    return os.path.splitext(os.path.basename(path))[0]


def recipe_keys(recipe, config, largest):
    """The overrides that run a recipe file (configs/recipes/) at CONFIG's size: CONFIG as its base,
    CONFIG's supernet.epochs, every epoch-based schedule of the recipe (progressive shrinking's
    epochs, the rank loss's ramp) scaled by the same factor (floored, so the schedule ends within the
    budget), and the largest standalone net LARGEST as the official weights and as the teacher where
    the recipe takes them. Returns (keys, needs_largest)."""
    sys.path.insert(0, ROOT)
    import yaml

    from infra.config import get, resolve

    epochs = int(get(resolve(config), "supernet.epochs"))
    cfg = resolve(recipe, overrides=[f"base={config}"])
    scale = epochs / float(get(cfg, "supernet.epochs"))
    keys = [f"base={config}", f"supernet.epochs={epochs}"]
    progressive = get(cfg, "supernet.sampler.progressive", None) or {}
    for key in ("depth_epochs", "width_epochs"):
        if progressive.get(key):
            scaled = ",".join(str(int(e * scale)) for e in progressive[key])
            keys.append(f"supernet.sampler.progressive.{key}=[{scaled}]")
    rank = get(cfg, "supernet.loss.rank", None) or {}
    if rank.get("weight") and rank.get("schedule") == "linear":
        keys.append(f"supernet.loss.rank.ramp_epochs={float(rank['ramp_epochs']) * scale:.6g}")
    with open(recipe, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    needs = False
    if get(cfg, "supernet.init", None) == "official":
        keys.append(f"supernet.pretrained={largest}")
        needs = True
    if "teacher" in ((raw.get("supernet") or {}).get("loss") or {}):  # a recipe that distils from the weights
        keys.append(f"supernet.loss.teacher={largest}")
        needs = True
    return keys, needs


def largest_stage(args, py):
    """The largest code of the released space trained standalone with CONFIG: the demo's analogue of
    the challenge's official weights (resnet48.pdparams), for the recipes that start from them."""
    sys.path.insert(0, ROOT)
    from encoding import RELEASED

    out = os.path.join(args.out, "largest")
    weights = os.path.join(out, "model.pdparams")
    stage = Stage("train-largest", [py, "pretrain.py", "run", "--config", args.config, "--arch",
                                    RELEASED.max_arch().code(), "--output", out, *args.overrides],
                  outputs=[weights], inputs=[args.config])
    return stage, weights


def score_config_path(args):
    """The config whose model section and data.resolution set the MACs/params baselines: CONFIG
    itself, or, when key=value overrides change them, CONFIG with those resolved into OUT/model.yaml
    (`submission score` reads config files, not overrides)."""
    sys.path.insert(0, ROOT)
    from infra.config import dump, resolve

    wanted = [o for o in args.overrides if o.startswith(("model.", "data.resolution="))]
    if not wanted:
        return args.config

    cfg = resolve(args.config, overrides=wanted)
    path = os.path.join(args.out, "model.yaml")
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(dump({"model": cfg["model"], "data": {"resolution": cfg["data"]["resolution"]}}))
    return path


# --- the demo table --------------------------------------------------------------------------

def _ceiling():
    sys.path.insert(0, ROOT)
    from submission import ceiling

    return ceiling


def _row(table):
    if "error" in table:
        return {"error": table["error"]}
    key = f"{_ceiling().TOP_FRACTION * 100:g}%"
    return {"n": table["n"], "kendall_tau_b": table["kendall_tau_b"], "pearson": table["pearson"],
            "precision_at_10": table["precision_at_k"][key]["value"]}


def read_records(results_path):
    """The records of an evaluation's results.json (a list, or a dict keyed by id)."""
    with open(results_path, encoding="utf-8") as f:
        results = json.load(f)
    return results if isinstance(results, list) else list(results.values())


def shared_top1(records, ids):
    """Mean top-1 (%) of these codes with the supernet's shared weights: how well the supernet
    trained, whatever its ranking (a collapsed supernet scores far below standalone nets)."""
    top1 = [r["top1"] for r in records if r["id"] in ids]
    return 100.0 * sum(top1) / len(top1) if top1 else None


def tau_vs_macs(records, score_config):
    """(Kendall tau-b of the shared-weight top-1 against MACs, codes) over every code the supernet was
    evaluated on: near 1 a supernet that ranks by size, below 0 one that favours small nets."""
    sys.path.insert(0, ROOT)
    from encoding import costs
    from submission.baselines import cost_setting_from_config
    from submission.metrics import kendall_tau_b, or_undefined

    spec, resolution = cost_setting_from_config(score_config)
    _, macs = costs([r["code"] for r in records], spec, resolution=resolution)
    return or_undefined(kendall_tau_b, [r["top1"] for r in records], list(macs))[0], len(records)


def demo_table(out, names, gt_path, score_config, results):
    """Rows (label, values) of the demo table: the ground truth against itself and every predictor,
    all from the `submission score` reports (whose MACs and params follow the config they were given),
    plus each supernet's mean top-1 with shared weights from its evaluation results (RESULTS: name ->
    results.json)."""
    with open(gt_path, encoding="utf-8") as f:
        gt_ids = set(json.load(f))
    labels = {"default": "kit default supernet", BASELINE[0]: "uniform-sampling supernet (baseline)"}
    labels.update({n: f"recipe {n[len('recipe-'):]}" for n in names if n.startswith("recipe-")})
    reports = {}
    for name in names:
        with open(os.path.join(out, f"score-{name}.json"), encoding="utf-8") as f:
            reports[name] = json.load(f)
    noise = reports[names[0]].get("seed_noise")
    rows = ([(r["label"], {k: v for k, v in r.items() if k != "label"}) for r in noise["ceiling"]] if noise else
            [("ground truth seed 0 vs seed 1 (ceiling)", None)])
    one_seed = noise["tau_vs_one_seed"] if noise else {}
    for name in names:
        report = reports[name]
        row = _row(report["predictors"]["submission"])
        records = read_records(results[name])
        row["shared_top1"] = shared_top1(records, gt_ids)
        row["tau_vs_macs"], row["macs_codes"] = tau_vs_macs(records, score_config)
        row["tau_vs_one_seed"] = (report.get("seed_noise") or {}).get("tau_vs_one_seed", {}).get("submission")
        rows.append((labels.get(name, name), row))
    for key, label in (("macs", "MACs only"), ("params", "params only")):
        rows.append((label, {**_row(reports[names[0]]["predictors"][key]), "tau_vs_one_seed": one_seed.get(key)}))
    return rows


def _fmt(v):
    return "n/a" if v is None else f"{v:.3f}"


def format_table(rows):
    width = max([len("predictor")] + [len(label) for label, _ in rows]) + 2
    head = (f"{'predictor':<{width}}{'n':>5}{'Kendall tau':>13}{'Pearson':>10}{'P@10%':>8}{'tau/ceiling':>13}"
            f"{'tau 1 seed':>12}{'top-1 %':>9}{'tau vs MACs (codes)':>21}")
    lines = [head, "-" * len(head)]
    ceiling = rows[0][1]["kendall_tau_b"] if rows and rows[0][1] else None
    for label, v in rows:
        if v is None:
            lines.append(f"{label:<{width}}  (needs >= 2 codes with two seeds in the ground truth)")
        elif "error" in v:
            lines.append(f"{label:<{width}}  undefined: {v['error']}")
        else:
            ratio = v["kendall_tau_b"] / ceiling if ceiling else None
            top1 = f"{v['shared_top1']:.2f}" if v.get("shared_top1") is not None else ""
            one = _fmt(v["tau_vs_one_seed"]) if "tau_vs_one_seed" in v else ""
            macs = f"{_fmt(v['tau_vs_macs'])} ({v['macs_codes']})" if "tau_vs_macs" in v else ""
            lines.append(f"{label:<{width}}{v['n']:>5}{_fmt(v['kendall_tau_b']):>13}{_fmt(v['pearson']):>10}"
                         f"{_fmt(v['precision_at_10']):>8}{_fmt(ratio):>13}{one:>12}{top1:>9}{macs:>21}")
    return "\n".join(lines)


def format_times(stages):
    width = max([len("stage")] + [len(s.name) for s in stages]) + 2
    head = f"{'stage':<{width}}{'status':<20}{'wall s':>9}"
    lines = [head, "-" * len(head)]
    for s in stages:
        lines.append(f"{s.name:<{width}}{s.status:<20}{s.seconds:>9.1f}")
    lines.append(f"{'total':<{width + 20}}{sum(s.seconds for s in stages):>9.1f}")
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python demo.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", choices=sorted(BENCHMARKS), default="glyphs",
                   help="glyphs (default: the ranking benchmark, capacity wins as on ImageNet) or fashion-mnist "
                        "(the quick smoke); sets the defaults of --config and --gt")
    p.add_argument("--out", default=None, help="output directory of every stage (default runs/demo-BENCHMARK)")
    p.add_argument("--config", default=None, help="kit config (default: the benchmark's)")
    p.add_argument("--archs", default=None, help=f"subnet list to rank (default {ARCHS})")
    p.add_argument("--gt", default=None, help="ground truth to score against (default: the benchmark's)")
    p.add_argument("--setup", action="store_true", help="first install the dataset and the requirements")
    p.add_argument("--no-baseline", action="store_true", help="skip the uniform-sampling baseline supernet")
    p.add_argument("--recipe", action="append", default=[], metavar="FILE",
                   help="also train, evaluate (ground-truth codes) and score a recipe file at the config's size "
                        "(configs/recipes/*.yaml; repeatable)")
    p.add_argument("--all-codes", action="store_true",
                   help="evaluate the baseline and the recipes on every code of --archs, as the default supernet "
                        "is (default: the ground-truth codes only, enough for their rows)")
    p.add_argument("--metric", default="top1", help="evaluator field submitted as acc (top1 | top5 | neg_loss)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides for training and evaluation")
    args = p.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        p.error(f"overrides must be key=value, got {bad}")
    config, gt = BENCHMARKS[args.benchmark]  # defaults live in the repository; given paths are the user's
    args.config = os.path.abspath(args.config) if args.config else os.path.join(ROOT, config)
    args.gt = os.path.abspath(args.gt) if args.gt else os.path.join(ROOT, gt)
    args.archs = os.path.abspath(args.archs) if args.archs else os.path.join(ROOT, ARCHS)
    args.out = os.path.abspath(args.out or os.path.join("runs", f"demo-{args.benchmark}"))
    args.recipe = [os.path.abspath(r) for r in args.recipe]
    return args


def main(argv=None):
    args = parse_args(argv)
    py = sys.executable
    stages, done, results = [], [], {}
    try:
        if args.setup:
            for stage in setup_stages(py):
                stages.append(stage)
                run_stage(stage, os.path.join(args.out, "logs"))
        for path, what in ((args.config, "--config"), (args.archs, "--archs"), *((r, "--recipe") for r in args.recipe)):
            if not os.path.isfile(path):
                raise DemoError(f"{what} {path}: no such file")
        if args.recipe and not os.path.isfile(args.gt):  # before anything trains
            raise DemoError(f"--recipe rows are scored against the ground truth, and there is none at {args.gt}")
        print_start_line(py, args)
        for stage in data_stages(args, py):
            stages.append(stage)
            run_stage(stage, os.path.join(args.out, "logs"))
        args.gt_present = os.path.isfile(args.gt)
        score_config = score_config_path(args)
        # The baseline exists for its row of the table: without a ground truth it is not run, and
        # with one it evaluates only the ground-truth codes (the GT file is an architecture list).
        names = ["default"] + ([] if args.no_baseline or not args.gt_present else [BASELINE[0]])
        keys = {"default": [], BASELINE[0]: BASELINE[1]}
        for name in names:
            gt_only = name == BASELINE[0] and not args.all_codes
            results[name] = results_path(args.out, name, gt_only)
            for stage in variant_stages(name, keys[name], args, py, score_config, gt_only):
                stages.append(stage)
                run_stage(stage, os.path.join(args.out, "logs"))
            done.append(name)
        largest = None
        for recipe in args.recipe:
            if largest is None:
                largest = largest_stage(args, py)
            keys, needs = recipe_keys(recipe, args.config, largest[1])
            if needs and largest[0] not in stages:
                stages.append(largest[0])
                run_stage(largest[0], os.path.join(args.out, "logs"))
            name = f"recipe-{recipe_name(recipe)}"
            results[name] = results_path(args.out, name, not args.all_codes)
            for stage in variant_stages(name, keys, args, py, score_config, not args.all_codes, config=recipe,
                                        eval_keys=[f"base={args.config}"], inputs=[recipe]):
                stages.append(stage)
                run_stage(stage, os.path.join(args.out, "logs"))
            done.append(name)
    except DemoError as e:
        print("\n" + format_times(stages))
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\nwall time per stage")
    print(format_times(stages))
    report = {"stages": [{"name": s.name, "status": s.status, "seconds": s.seconds, "command": s.command_line()}
                         for s in stages],
              "total_seconds": sum(s.seconds for s in stages), "gt": args.gt if args.gt_present else None,
              "config": args.config, "archs": args.archs, "overrides": args.overrides, "table": None}
    if args.gt_present:
        rows = demo_table(args.out, done, args.gt, score_config, results)
        report["table"] = [{"predictor": label, **(v or {})} for label, v in rows]
        print(f"\nranking vs ground truth {args.gt} "
              "(mean accuracy over seeds; ceiling: the ground truth against itself;\n"
              "tau 1 seed: Kendall tau against one seed's accuracies, mean over seeds, the figure to set\n"
              "beside one seed vs another; top-1 %: the ground-truth codes' mean top-1 with the supernet's\n"
              "shared weights; tau vs MACs: its shared-weight top-1 against MACs over every code it evaluated)")
        print(format_table(rows))
        with open(os.path.join(args.out, f"score-{done[0]}.json"), encoding="utf-8") as f:
            noise = json.load(f).get("seed_noise")
        report["gt_projection"] = noise["projection"] if noise else None
        print(f"\nhow far more seeds would take this ground truth (python -m submission ceiling --gt {args.gt}):")
        print(_ceiling().format_projection(report["gt_projection"]))
        print("plots: " + ", ".join(os.path.join(args.out, f"score-{n}.png") for n in done))
    else:
        print(f"\nno ground truth at {args.gt}: submissions were made and validated but not scored. Build it with\n"
              f"  python pretrain.py gt --config {args.config} --archs {args.archs} --sample 40 "
              f"--repeat 4 --seed 0 --output runs/gt --out {args.gt}")
    path = os.path.join(args.out, "demo_report.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
