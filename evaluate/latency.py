"""Inference latency of exported subnets, and whether latency rankings agree across devices.

Latency rankings agree closely among similar devices but much less across platforms
(OneProxy: Spearman 0.98-0.99 among phones, 0.63-0.72 across platforms), and neither MACs nor
one device's timings stand in for another's. So a latency table records where it was measured
(device, Paddle version, threads, resolution), and `--compare` reports the rank agreement of
two tables, and of each with MACs, over their common codes.

    python -m evaluate latency --config configs/demo.yaml --archs ARCHS.json
        [--sample 20] [--batch-sizes 1,32] [--out latency.json] [key=value ...]
    python -m evaluate latency ... --runtime paddle-inference|onnxruntime   (the exported model)
    python -m evaluate latency --compare A.json B.json [--pair 1:32] [--flag-below 0.9]

Each code becomes a plain static subnet (`supernet.static.build_static`, random weights: latency
does not depend on them) in eval mode; every batch size gets untimed warm-up runs, then timed
runs, each ended by a device synchronisation, reported as median and interquartile range
(pooled over `rounds` passes in shuffled order, so a busy spell does not single out codes).

`runtime` says what runs it: 'dygraph' (Paddle's eager forward, the default), 'paddle-inference'
(the subnet exported by `supernet.export` and loaded with paddle.inference) or 'onnxruntime' (its
ONNX conversion, paddle2onnx + ONNX Runtime on the CPU: requirements-export.txt). Predictors use
OMP_NUM_THREADS threads. The table records the runtime, so `--compare` of two runtimes' tables over
the same codes is OneProxy's latency monotonicity: does one runtime rank subnets as another does?

Energy per inference is recorded beside the latency where a meter reads it (`energy_meter`): on a
GPU, NVML's total-energy counter of the card in use (Volta and newer); on the CPU (also for
onnxruntime), RAPL's package (+DRAM) counters, which count the whole package, other processes
included. Each meter is read around the timed runs only (after the warm-up), and a code's mJ per
image is the energy over its timed runs (all rounds) over the images they ran. Where no meter reads,
the table's `energy` says why and every row's `energy` is null: never a zero or a guess.
"""

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

from encoding import DOCUMENTED, CodeError, KitError, costs, net_spec, read_arch_list, run_reporting_errors
from encoding.archlist import seeded_subset
from infra import config as C
from infra import ledger as L
from infra.atomic import atomic_write_json

TABLE_KIND = "nas-latency-table"
TABLE_FORMAT = 1
RUNTIMES = ("dygraph", "paddle-inference", "onnxruntime")

FLAGS = (
    C.Flag("--archs", "latency.archs", str, "architecture list JSON (challenge format)"),
    C.Flag("--sample", "latency.sample", int, "time a seeded sample of this many codes (null: all)"),
    C.Flag("--seed", "latency.seed", int, "seed of the sample and of the random weights"),
    C.Flag("--batch-sizes", "latency.batch_sizes", str, "comma-separated batch sizes, e.g. 1,32"),
    C.Flag("--resolution", "latency.resolution", int, "input side in pixels (null: the code's size)"),
    C.Flag("--warmup", "latency.warmup", int, "untimed runs per code and batch size"),
    C.Flag("--repeats", "latency.repeats", int, "timed runs per code, batch size and round"),
    C.Flag("--rounds", "latency.rounds", int, "passes over the codes, each in a new shuffled order"),
    C.Flag("--device", "device", str, "auto | cpu | gpu"),
    C.Flag("--runtime", "latency.runtime", str, "what runs the subnets: " + " | ".join(RUNTIMES)),
    C.Flag("--out", "latency.out", str, "where to write the latency table (JSON)"),
)


class LatencyError(KitError):
    """Bad latency settings, an unreadable latency table, or tables that cannot be compared."""


# --- settings ------------------------------------------------------------------------------

def _int_list(value, key):
    if isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            items = [int(p) for p in parts]
        except ValueError:
            raise LatencyError(f"{key}: {value!r} is not a comma-separated list of integers") from None
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise LatencyError(f"{key}: expected a list of integers, got {value!r}")
    if not items or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in items):
        raise LatencyError(f"{key}: batch sizes must be positive integers, got {value!r}")
    if len(set(items)) != len(items):
        raise LatencyError(f"{key}: batch sizes repeat: {value!r}")
    return items


def _opt_int(cfg, key, minimum):
    value = C.get(cfg, key, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LatencyError(f"{key} must be an integer >= {minimum} (or null), got {value!r}")
    return value


def settings(cfg):
    """The `latency:` section, checked, with batch sizes as a list of ints."""
    if not isinstance(C.get(cfg, "latency", None), dict):
        raise LatencyError("config has no 'latency:' section")
    s = {
        "archs": C.get(cfg, "latency.archs", None),
        "sample": _opt_int(cfg, "latency.sample", 1),
        "seed": _opt_int(cfg, "latency.seed", 0) or 0,
        "batch_sizes": _int_list(C.get(cfg, "latency.batch_sizes", [1]), "latency.batch_sizes"),
        "warmup": _opt_int(cfg, "latency.warmup", 0) or 0,
        "repeats": _opt_int(cfg, "latency.repeats", 1),
        "rounds": _opt_int(cfg, "latency.rounds", 1) or 1,
        "out": C.get(cfg, "latency.out", None),
        "device": C.get(cfg, "device", "auto"),
        "runtime": C.get(cfg, "latency.runtime", None) or "dygraph",
        "opset": C.get(cfg, "export.opset", None) or 13,
    }
    if s["runtime"] not in RUNTIMES:
        raise LatencyError(f"latency.runtime must be one of {', '.join(RUNTIMES)}, got {s['runtime']!r}")
    if not s["archs"]:
        raise LatencyError("latency.archs is not set: give --archs ARCHS.json (or latency.archs=...)")
    if s["repeats"] is None:
        raise LatencyError("latency.repeats must be set (timed runs per code and batch size)")
    if not s["out"]:
        raise LatencyError("latency.out is not set: give --out latency.json")
    return s


def select_entries(entries, sample, seed):
    """A seeded sample of `sample` entries in file order (all of them when sample is None)."""
    if sample is None:
        return list(entries)
    if sample > len(entries):
        raise LatencyError(f"asked to sample {sample} codes but the list has only {len(entries)}")
    return seeded_subset(entries, sample, seed)


# --- measuring -----------------------------------------------------------------------------

def device_synchronizer(paddle):
    """Waits for queued kernels on a GPU. Paddle's `device.synchronize()` raises TypeError on a
    CPU place (3.3), and CPU ops already run synchronously in dygraph, so CPU needs nothing."""
    if paddle.device.get_device().startswith("gpu"):
        return paddle.device.synchronize
    return lambda: None


def time_forward(model, x, warmup, repeats, sync, meter=None):
    """(milliseconds of `repeats` synchronised forward passes after `warmup` untimed ones, joules the
    `meter` (a ledger EnergyReader) read over the timed passes, or None without a meter)."""
    import paddle

    times = np.empty(repeats)
    with paddle.no_grad():
        for _ in range(warmup):
            model(x)
        sync()
        started = meter is not None and _read_meter(meter.start)[0]
        for i in range(repeats):
            t0 = time.perf_counter()
            model(x)
            sync()
            times[i] = (time.perf_counter() - t0) * 1000.0
        joules = _read_meter(meter.stop)[1] if started else None
    return times, joules


def _read_meter(call):
    """(ok, value) of a meter's start or stop: a failing sensor (an unreadable file, an NVML error) leaves that
    cell null instead of ending the measurement."""
    try:
        return True, call()
    except Exception:
        return False, None


# --- energy meters -------------------------------------------------------------------------

RAPL_SCOPE = ("RAPL counts the whole CPU package(s) (+DRAM where reported): every process on the machine and the "
              "package's idle power during the timed runs are included")
NVML_SCOPE = ("NVML's total-energy counter of the whole GPU board: every process on this GPU and its idle power "
              "during the timed runs are included; the host CPU is not counted")


def energy_meter(device):
    """(ledger EnergyReader or None, the table's `energy` metadata) for the device the runs use ('cpu',
    'gpu:N'): NVML's energy counter of that GPU, or RAPL on the CPU; without one, why not."""
    if device.startswith("gpu"):
        index = device.partition(":")[2] or "0"
        try:  # paddle's gpu:N is the N-th visible card; NVML names it by CUDA_VISIBLE_DEVICES' entry
            ident = L.visible_gpu({**os.environ, "FLAGS_selected_gpus": index})
        except L.LedgerError as e:
            return None, {"measured": False, "reason": str(e)}
        reader = L.gpu_reader(gpu=ident)
        if reader is not None and reader.method != L.METHOD_COUNTER:
            reader.close()
            return None, {"measured": False, "reason": f"GPU {ident} ({reader.device_name}) has no NVML energy "
                          f"counter (before Volta), and power polling is too coarse for per-inference energy"}
        if reader is None:
            return None, {"measured": False, "reason": f"NVML reads no energy counter for GPU {ident} (nvidia-ml-py "
                          f"not installed, no driver, or the GPU does not report it)"}
        return reader, {"measured": True, "method": reader.method, "meter": reader.device_name, "scope": NVML_SCOPE}
    reader = L.rapl_reader()
    if reader is None:
        return None, {"measured": False, "reason": f"no readable RAPL counters under {L.RAPL_ROOT} (absent, as in "
                      f"most VMs and containers, or energy_uj readable by root only)"}
    return reader, {"measured": True, "method": reader.method, "meter": reader.device_name, "zones": reader.names,
                    "scope": RAPL_SCOPE + "; its counters wrap at max_energy_range_uj, which is corrected"}


def energy_cell(joules, images):
    """A row's energy at one batch size: mJ per image over its timed runs (None if a reading failed)."""
    if joules is None:
        return None
    return {"mj_per_image": 1000.0 * joules / images, "joules": joules, "images": images}


class Exported:
    """Each code's static subnet exported once (into a temporary folder) and loaded in `runtime`."""

    def __init__(self, runtime, spec, resolution, opset=13, threads=None, gpu=False):
        import tempfile

        from supernet import export as X

        if runtime == "onnxruntime":  # before any timing: a missing package is one line
            X.require("paddle2onnx")
            X.require("onnxruntime")
        self.X, self.runtime, self.spec, self.resolution = X, runtime, spec, resolution
        self.opset, self.threads, self.gpu = opset, threads or X.default_threads(), gpu
        self.root = tempfile.mkdtemp(prefix="nas-latency-")

    def predictor(self, index, model):
        folder = os.path.join(self.root, str(index))
        if not os.path.isdir(folder):
            os.makedirs(folder + ".part")
            self.X.save_inference(model, folder + ".part", self.spec, self.resolution)
            if self.runtime == "onnxruntime":
                self.X.save_onnx(folder + ".part", self.opset)
            os.rename(folder + ".part", folder)
        return self.X.load_predictor(folder, self.runtime, threads=self.threads, gpu=self.gpu)

    def close(self):
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


def measure(entries, spec, batch_sizes, resolution, warmup, repeats, seed=0, rounds=1, progress=None,
            runtime="dygraph", opset=13, meter=None):
    """One row per entry: id, code, MACs, params, per batch size median/IQR milliseconds and, with a
    `meter` (`energy_meter`), mJ per image over the timed runs (else `energy` is None).

    With rounds > 1 the codes are timed `rounds` times, in a freshly shuffled order each round,
    and each code's runs are pooled: a slow spell of a shared machine then spreads over many
    codes instead of slowing whichever ones happened to be timed during it. With a runtime other
    than 'dygraph' the same model (same seed, same weights) is exported and run by that runtime.
    """
    import paddle
    from tqdm import tqdm

    from supernet.static import build_static

    if runtime not in RUNTIMES:
        raise LatencyError(f"unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")

    archs = []
    for e in entries:
        try:
            archs.append(DOCUMENTED.validate(e.code))
        except CodeError as err:
            raise LatencyError(f"entry {e.id!r}: {err}") from None
    params, macs = costs(archs, spec, resolution)
    sync = device_synchronizer(paddle)
    rng = np.random.default_rng(seed)
    orders = [np.arange(len(archs))] + [rng.permutation(len(archs)) for _ in range(rounds - 1)]
    samples = [{bs: [] for bs in batch_sizes} for _ in archs]
    joules = [{bs: 0.0 for bs in batch_sizes} for _ in archs]  # None once a reading failed
    bar = tqdm(total=rounds * len(archs), desc=f"latency ({runtime})", unit="subnet",
               disable=None if progress is None else not progress, file=sys.stderr)
    exported = (Exported(runtime, spec, resolution, opset, gpu=paddle.device.get_device().startswith("gpu"))
                if runtime != "dygraph" else None)
    try:
        with bar:
            for order in orders:
                for i in order:
                    paddle.seed(seed)
                    model = build_static(archs[i], spec)
                    model.eval()
                    if exported is not None:
                        model = exported.predictor(i, model)
                    for bs in batch_sizes:
                        x = paddle.randn([bs, spec.in_channels, resolution, resolution])
                        if exported is not None:
                            x = x.numpy()
                        times, used = time_forward(model, x, warmup, repeats, sync, meter)
                        samples[i][bs].extend(times)
                        if meter is not None:
                            joules[i][bs] = None if used is None or joules[i][bs] is None else joules[i][bs] + used
                        del x
                    del model
                    bar.update(1)
    finally:
        if exported is not None:
            exported.close()
    rows = []
    for e, arch, p, m, runs, used in zip(entries, archs, params, macs, samples, joules, strict=True):
        per_bs = {}
        for bs in batch_sizes:
            q1, median, q3 = np.percentile(np.asarray(runs[bs]), [25, 50, 75])
            per_bs[str(bs)] = {"median_ms": float(median), "iqr_ms": float(q3 - q1)}
        energy = None if meter is None else {str(bs): energy_cell(used[bs], bs * len(runs[bs])) for bs in batch_sizes}
        rows.append({"id": e.id, "code": arch.code(), "macs": int(m), "params": int(p), "latency": per_bs,
                     "energy": energy})
    return rows


def _device_name(paddle, device):
    if device.startswith("gpu"):
        return f"{device} ({paddle.device.cuda.get_device_name()})"
    from infra.ledger import cpu_name

    return f"cpu ({cpu_name()})"


def runtime_versions(runtime):
    """The versions of what ran the subnets beyond Paddle (paddle2onnx and ONNX Runtime)."""
    if runtime != "onnxruntime":
        return {}
    import onnxruntime
    import paddle2onnx

    return {"paddle2onnx": paddle2onnx.__version__, "onnxruntime": onnxruntime.__version__}


def table_runtime(table):
    """The runtime a table was measured in (tables from before runtimes existed: dygraph)."""
    return table.get("runtime") or "dygraph"


def input_resolution(cfg, entries):
    """latency.resolution, else the data's (data.resolution), else the codes' own image size."""
    for key in ("latency.resolution", "data.resolution"):
        value = C.get(cfg, key, None)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LatencyError(f"{key} must be a positive integer (or null), got {value!r}")
            return value
    sizes = set()
    for e in entries:
        try:
            sizes.add(DOCUMENTED.validate(e.code).resolution)
        except CodeError as err:
            raise LatencyError(f"entry {e.id!r}: {err}") from None
    if len(sizes) != 1:
        raise LatencyError(f"codes have several image sizes {sorted(sizes)}: set latency.resolution")
    return sizes.pop()


def run(cfg, config_path=None, progress=None):
    """Measure per the config's `latency:` section, write the table atomically, return it."""
    s = settings(cfg)
    spec = net_spec(cfg)
    entries = select_entries(read_arch_list(s["archs"]), s["sample"], s["seed"])
    if not entries:
        raise LatencyError(f"{s['archs']}: the architecture list is empty")
    resolution = input_resolution(cfg, entries)

    import paddle

    from runtime.device import select_device

    device = select_device(s["device"])
    runs_on = "cpu" if s["runtime"] == "onnxruntime" else device
    meter, energy = energy_meter(runs_on)
    try:
        rows = measure(entries, spec, s["batch_sizes"], resolution, s["warmup"], s["repeats"], seed=s["seed"],
                       rounds=s["rounds"], progress=progress, runtime=s["runtime"], opset=s["opset"], meter=meter)
    finally:
        if meter is not None:
            meter.close()
    if energy["measured"]:
        failed = sum(cell is None for r in rows for cell in r["energy"].values())
        if failed:
            energy["failed_cells"] = failed  # a reading failed: those cells are null
    table = {
        "kind": TABLE_KIND,
        "format": TABLE_FORMAT,
        "device": _device_name(paddle, runs_on),
        "runtime": s["runtime"],
        "runtime_versions": runtime_versions(s["runtime"]),
        "paddle_version": paddle.__version__,
        "threads": {
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "paddle_num_threads": paddle.get_flags(["FLAGS_paddle_num_threads"])["FLAGS_paddle_num_threads"],
            "cpu_count": os.cpu_count(),
        },
        "resolution": resolution,
        "batch_sizes": s["batch_sizes"],
        "warmup": s["warmup"],
        "repeats": s["repeats"],
        "rounds": s["rounds"],
        "seed": s["seed"],
        "sample": s["sample"],
        "archs": os.fspath(s["archs"]),
        "config": os.fspath(config_path) if config_path else None,
        "model": spec.to_dict(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "energy": energy,
        "codes": rows,
    }
    atomic_write_json(s["out"], table, indent=1)
    return table


# --- comparing -----------------------------------------------------------------------------

def load_table(path):
    """A latency table written by `run`, checked enough that `compare` cannot misread it."""
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except FileNotFoundError:
        raise LatencyError(f"{path}: no such latency table") from None
    except json.JSONDecodeError as e:
        raise LatencyError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(table, dict) or table.get("kind") != TABLE_KIND:
        raise LatencyError(f"{path}: not a latency table (no \"kind\": \"{TABLE_KIND}\")")
    rows = table.get("codes")
    if not isinstance(rows, list):
        raise LatencyError(f"{path}: 'codes' is missing or not a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"code", "macs", "latency"} <= set(row):
            raise LatencyError(f"{path}: codes[{i}] lacks 'code', 'macs' or 'latency'")
    return table


def _by_code(table, batch):
    """code -> (median ms at `batch`, macs); first occurrence wins if a code repeats."""
    out = {}
    for row in table["codes"]:
        if row["code"] not in out and str(batch) in row["latency"]:
            out[row["code"]] = (row["latency"][str(batch)]["median_ms"], row["macs"])
    return out


def spearman(x, y):
    """The kit's Spearman rank correlation (submission.metrics), or None where it is undefined."""
    from submission.metrics import or_undefined
    from submission.metrics import spearman as rho

    return or_undefined(rho, x, y)[0]


def compare(a, b, pairs=None, names=("A", "B")):
    """Rank agreement of two tables per batch-size pair, and of each with MACs.

    pairs: [(batch in a, batch in b)]; default every batch size both tables have.
    Returns dicts {'what', 'n', 'spearman'} in print order.
    """
    if pairs is None:
        common = [bs for bs in a["batch_sizes"] if bs in b["batch_sizes"]]
        if not common:
            raise LatencyError(f"{names[0]} has batch sizes {a['batch_sizes']} and {names[1]} has "
                               f"{b['batch_sizes']}: none in common, so say which to compare with --pair A:B")
        pairs = [(bs, bs) for bs in common]
    results = []
    for ba, bb in pairs:
        for table, name, bs in ((a, names[0], ba), (b, names[1], bb)):
            if bs not in table["batch_sizes"]:
                raise LatencyError(f"{name} has no batch size {bs} (it has {table['batch_sizes']})")
        la, lb = _by_code(a, ba), _by_code(b, bb)
        common = [c for c in la if c in lb]
        if len(common) < 3:
            raise LatencyError(f"{names[0]} (batch {ba}) and {names[1]} (batch {bb}) share {len(common)} "
                               f"codes; a rank correlation needs at least 3")
        lat_a = [la[c][0] for c in common]
        lat_b = [lb[c][0] for c in common]
        results.append({"what": f"{names[0]} batch {ba} vs {names[1]} batch {bb}", "n": len(common),
                        "spearman": spearman(lat_a, lat_b)})
        results.append({"what": f"{names[0]} batch {ba} vs MACs", "n": len(common),
                        "spearman": spearman(lat_a, [la[c][1] for c in common])})
        results.append({"what": f"{names[1]} batch {bb} vs MACs", "n": len(common),
                        "spearman": spearman(lat_b, [lb[c][1] for c in common])})
    return results


def _parse_pair(text):
    try:
        left, right = text.split(":")
        return int(left), int(right)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form A_BATCH:B_BATCH, e.g. 1:32") from None


def _main_compare(args):
    path_a, path_b = args.compare
    a, b = load_table(path_a), load_table(path_b)
    names = (path_a, path_b) if path_a != path_b else (f"{path_a} [A]", f"{path_b} [B]")
    for name, t in zip(names, (a, b), strict=True):
        print(f"{name}: {table_runtime(t)} on {t.get('device')}, Paddle {t.get('paddle_version')}, "
              f"OMP_NUM_THREADS {(t.get('threads') or {}).get('OMP_NUM_THREADS')}, {t.get('resolution')} px, "
              f"{len(t['codes'])} codes")
    low = 0
    for r in compare(a, b, pairs=args.pair, names=names):
        if r["spearman"] is None:
            print(f"{r['what']}: Spearman undefined (constant column) over {r['n']} codes")
            continue
        flag = ""
        if r["spearman"] < args.flag_below:
            flag = f"  << below {args.flag_below}"
            low += 1
        print(f"{r['what']}: Spearman {r['spearman']:.4f} over {r['n']} codes{flag}")
    if low:
        print(f"{low} rank correlations below {args.flag_below}: these rankings do not transfer")
    return 0


def _main_run(args):
    cfg = C.resolve(args.config, args, FLAGS, args.overrides)
    table = run(cfg, config_path=args.config)
    rows = table["codes"]
    print(f"wrote {len(rows)} codes x batch sizes {table['batch_sizes']} in {table['runtime']} on {table['device']} "
          f"at {table['resolution']} px to {C.get(cfg, 'latency.out')}")
    for bs in table["batch_sizes"]:
        med = np.array([r["latency"][str(bs)]["median_ms"] for r in rows])
        macs = [r["macs"] for r in rows]
        rho = spearman(med, macs) if len(rows) >= 3 else None
        rho_text = f", Spearman vs MACs {rho:.3f}" if rho is not None else ""
        mj = [r["energy"][str(bs)]["mj_per_image"] for r in rows if (r["energy"] or {}).get(str(bs))]
        mj_text = f"; energy {min(mj):.4g}-{max(mj):.4g} mJ per image" if mj else ""
        print(f"  batch {bs}: median latency {np.min(med):.3f}-{np.max(med):.3f} ms "
              f"(middle {np.median(med):.3f} ms){rho_text}{mj_text}")
    energy = table["energy"]
    if energy["measured"]:
        print(f"  energy: {energy['method']} on {energy['meter']} ({energy['scope']})")
    else:
        print(f"  energy not measured: {energy['reason']}")
    return 0


def add_arguments(parser):
    """The latency command's arguments (its own parser, or `python -m evaluate latency`'s subparser)."""
    parser.add_argument("--config", default=C.default_config("demo"), help="YAML config (default: demo)")
    C.add_flags(parser, FLAGS)
    parser.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                        help="compare two latency tables instead of measuring")
    parser.add_argument("--pair", type=_parse_pair, action="append",
                        help="with --compare: batch size in A and in B, e.g. 1:32 (repeatable; "
                             "default: every common batch size)")
    parser.add_argument("--flag-below", type=float, default=0.9,
                        help="with --compare: mark rank correlations below this (default 0.9)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    parser.set_defaults(func=run_command)
    return parser


def main(argv=None):
    """`python -m evaluate latency ...` (argv: the arguments after the word `latency`)."""
    parser = argparse.ArgumentParser(prog="python -m evaluate latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return run_reporting_errors(run_command, add_arguments(parser).parse_args(argv))


def run_command(args):
    """Measure, or with --compare compare two tables."""
    if args.compare:
        given = [f.option for f in FLAGS if getattr(args, "cfg__" + f.key.replace(".", "__")) is not None]
        if given or args.overrides:
            raise LatencyError(f"--compare reads two finished tables; {', '.join(given + args.overrides)} "
                               f"do not apply to it")
        return _main_compare(args)
    if args.pair:
        raise LatencyError("--pair only applies with --compare")
    return _main_run(args)
