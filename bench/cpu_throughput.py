"""CPU training and evaluation throughput: Paddle (plain and with the kit's CPU switches) vs PyTorch.

The same ResNet48-shaped network (the config's model section, default configs/demo.yaml: widths
[8,16,32,64], depths [5,5,8,5], 28 px; bench/README.md's figures add model.stem=small) is trained
with SGD + momentum and evaluated under no_grad, in several variants, each in its own worker
process (MKL reads its dispatch variable once per process, and torch and Paddle bring different
OpenMP runtimes).
The parent interleaves single timed steps of all variants, rotating who goes first, so load
drift on a shared machine hits every variant alike; each figure is the median of --repeats.

Cases: static-max (build_static of the largest code), supernet-sliced (ResNet48Supernet with
set_active on the median-MACs code of a seeded released-space sample, so every conv runs on
weight slices), the same two in evaluation (no_grad). PyTorch runs a small re-implementation
of the same static nets from encoding.widths (PyTorch is a benchmark-only dependency:
`pip install torch==2.13.0`; without it the torch column is empty).

Paddle variants, each a setting of the kit's `cpu:` config section (runtime/cpu_speed.py):
plain (as shipped), mkl (mkl_avx2_on_amd: MKL_DEBUG_CPU_TYPE=5 where it applies), mem (mkl +
keep_freed_memory: no page faults on re-allocated buffers), fast (mem + conv=onednn), and with
--jit also jit (mem + paddle.jit.to_static of the static net's forward; supernet cases skipped).
nhwc (not in the default list): fast's switches with the nets in NHWC (channels_last's layout, which the
kit uses on GPU under AMP only; NHWC convs bypass the oneDNN path).

  python bench/cpu_throughput.py [--config configs/demo.yaml] [--batch-size 128] [--repeats 7]
      [--threads 2] [--variants plain,mkl,mem,fast,torch] [--jit] [model.key=value ...]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

GOAL_TRAIN, GOAL_EVAL = 1.5, 1.3
CASES = ("static-max:train", "supernet-sliced:train", "static-max:eval", "supernet-sliced:eval")
PADDLE_VARIANTS = {  # name: (the kit's `cpu:` config section, paddle.jit.to_static forward)
    "plain": ({"mkl_avx2_on_amd": "off", "keep_freed_memory": "off", "conv": "paddle"}, False),
    "mkl": ({"mkl_avx2_on_amd": "auto", "keep_freed_memory": "off", "conv": "paddle"}, False),
    "mem": ({"mkl_avx2_on_amd": "auto", "keep_freed_memory": "auto", "conv": "paddle"}, False),
    "fast": ({"mkl_avx2_on_amd": "auto", "keep_freed_memory": "auto", "conv": "onednn"}, False),
    "jit": ({"mkl_avx2_on_amd": "auto", "keep_freed_memory": "auto", "conv": "paddle"}, True),
    "nhwc": ({"mkl_avx2_on_amd": "auto", "keep_freed_memory": "auto", "conv": "onednn"}, False),
}
NHWC_VARIANTS = ("nhwc",)  # nets built with data_format NHWC (runtime.layout): Paddle's own conv, oneDNN bypassed


def add_model_options(parser, repeats_help):
    """The options every model-timing bench shares (this one, step_overhead, cpu_profile's subset)."""
    from infra.config import default_config

    parser.add_argument("--config", default=default_config("demo"), help="config whose model section to use")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--resolution", type=int, default=28, help="input side in pixels")
    parser.add_argument("--repeats", type=int, default=7, help=repeats_help)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="config key=value overrides, e.g. model.width_mult=0.25")


def apply_variant(name):
    """Configure this process as variant `name` (before any MKL call); returns what is in force."""
    from runtime import cpu_speed

    section, _ = PADDLE_VARIANTS[name]
    if section["mkl_avx2_on_amd"] == "off":
        os.environ.pop(cpu_speed.MKL_VARIABLE, None)
    return cpu_speed.configure(section)


# --- the networks -------------------------------------------------------------------------
def bench_codes(spec, resolution, samples=200, seed=0):
    """(largest code, median-MACs code of a seeded released-space sample): the benches' shared cases."""
    import numpy as np

    import encoding

    space = encoding.RELEASED
    pool = space.sample_many(samples, seed=seed, depth_uniform=True)
    macs = encoding.costs(pool, spec, resolution)[1]
    return space.max_arch(), pool[int(np.argsort(macs)[len(pool) // 2])]


def torch_net(arch, spec):
    """The static subnet of `arch` under `spec` as torch layers (same shapes as supernet.static)."""
    import torch.nn.functional as TF
    from torch import nn

    from encoding import widths
    from encoding.netspec import STEMS

    class Block(nn.Module):
        def __init__(self, cin, mid, out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(mid)
            self.conv2 = nn.Conv2d(mid, out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(out)
            self.downsample = None
            if stride != 1 or cin != out:
                self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = TF.relu(self.bn1(self.conv1(x)))
            return TF.relu(self.bn2(self.conv2(out)) + identity)

    w = widths(arch, spec)
    kernel, stride, padding, pool = STEMS[spec.stem]
    layers = [nn.Conv2d(spec.in_channels, w.stem, kernel, stride, padding, bias=False), nn.BatchNorm2d(w.stem),
              nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(3, 2, 1))
    cur = w.stem
    for s, stage in enumerate(w.stages):
        for b, (c1, c2) in enumerate(stage):
            layers.append(Block(cur, c1, c2, spec.stage_strides[s] if b == 0 else 1))
            cur = c2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cur, spec.num_classes)]
    return nn.Sequential(*layers)


# --- workers ------------------------------------------------------------------------------
class PaddleWorker:
    def __init__(self, spec, batch, resolution, variant):
        self.jit = PADDLE_VARIANTS[variant][1]
        self.settings = apply_variant(variant)  # before any MKL call
        import paddle
        import paddle.nn.functional as F

        from supernet.model import ResNet48Supernet
        from supernet.static import build_static

        self.paddle, self.F = paddle, F
        paddle.set_device("cpu")
        paddle.seed(0)
        max_code, sliced = bench_codes(spec, resolution)
        data_format = "NHWC" if variant in NHWC_VARIANTS else "NCHW"
        static = build_static(max_code, spec, data_format)
        supernet = ResNet48Supernet(spec, data_format)
        supernet.set_active(sliced)
        # build_static's and the supernet's convs go through onednn_conv: the backend set above decides
        self.models = {"static-max": static, "supernet-sliced": supernet}
        self.calls = {"static-max": paddle.jit.to_static(static, full_graph=True) if self.jit else static,
                      "supernet-sliced": supernet}
        self.optims = {k: paddle.optimizer.Momentum(0.01, momentum=0.9, parameters=m.parameters())
                       for k, m in self.models.items()}
        self.x = paddle.randn([batch, spec.in_channels, resolution, resolution])
        self.y = paddle.randint(0, spec.num_classes, [batch])
        self.params = {"static-max": int(sum(p.size for p in static.parameters() if not p.stop_gradient)),
                       "supernet-sliced": int(sum(p.size for p in supernet.export().parameters()
                                                  if not p.stop_gradient))}

    def supports(self, case):
        return not (self.jit and case.startswith("supernet"))

    def run(self, case):
        name, mode = case.split(":")
        model, call = self.models[name], self.calls[name]
        if mode == "train":
            model.train()
            loss = self.F.cross_entropy(call(self.x), self.y)
            loss.backward()
            self.optims[name].step()
            self.optims[name].clear_grad()
            return float(loss.item())
        model.eval()
        with self.paddle.no_grad():
            return float(call(self.x).sum().item())


class TorchWorker:
    def __init__(self, spec, batch, resolution, variant):
        import torch
        import torch.nn.functional as TF

        self.torch, self.F = torch, TF
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        torch.manual_seed(0)
        max_code, sliced = bench_codes(spec, resolution)
        self.models = {"static-max": torch_net(max_code, spec), "supernet-sliced": torch_net(sliced, spec)}
        self.optims = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in self.models.items()}
        self.x = torch.randn(batch, spec.in_channels, resolution, resolution)
        self.y = torch.randint(0, spec.num_classes, (batch,))
        self.settings = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        self.params = {k: int(sum(p.numel() for p in m.parameters())) for k, m in self.models.items()}

    def supports(self, case):
        return True

    def run(self, case):
        name, mode = case.split(":")
        model = self.models[name]
        if mode == "train":
            model.train()
            loss = self.F.cross_entropy(model(self.x), self.y)
            self.optims[name].zero_grad()
            loss.backward()
            self.optims[name].step()
            return float(loss.item())
        model.eval()
        with self.torch.no_grad():
            return float(model(self.x).sum().item())


def worker_main(args):
    """Line protocol on stdin/stdout: 'run CASE' -> '@@ {"ms": ...}'; replies are the only '@@' lines."""
    from encoding import net_spec
    from infra.config import resolve

    spec = net_spec(resolve(args.config, overrides=args.overrides))

    def reply(obj):
        sys.stdout.write("@@ " + json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        cls = TorchWorker if args.worker == "torch" else PaddleWorker
        worker = cls(spec, args.batch_size, args.resolution, args.worker)
    except Exception as exc:  # reported to the parent, which drops the column
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return
    reply({"ready": True, "settings": worker.settings, "params": worker.params})
    for line in sys.stdin:
        cmd, _, case = line.strip().partition(" ")
        if cmd == "quit":
            break
        if not worker.supports(case):
            reply({"skip": True})
            continue
        start, cpu_start = time.perf_counter(), time.process_time()
        value = worker.run(case)
        reply({"ms": 1000.0 * (time.perf_counter() - start), "cpu_ms": 1000.0 * (time.process_time() - cpu_start),
               "value": value})


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, name, args, env):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--config", args.config,
               "--batch-size", str(args.batch_size), "--resolution", str(args.resolution), *args.overrides]
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, cwd=ROOT)
        self.hello = self.read()

    def read(self):
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        return {"error": f"worker exited with status {self.proc.wait()}"}

    def ask(self, case):
        self.proc.stdin.write(f"run {case}\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            self.proc.wait(timeout=60)


def torch_installed():
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def table(title, times, names, cases, batch_size, verdict):
    """Print images/s per case and variant, and torch/Paddle ratios; returns {(variant, case): images/s}."""
    ips = {k: (batch_size * 1000.0 / statistics.median(v) if v else None) for k, v in times.items()}
    print(title)
    header = f"{'case':24s}" + "".join(f"{n + ' img/s':>14s}" for n in names)
    paddle_names = [n for n in names if n != "torch"]
    if "torch" in names:
        header += "".join(f"{'torch/' + n:>12s}" for n in paddle_names)
    print(header)
    worst = {}
    for case in cases:
        row = f"{case:24s}" + "".join(f"{fmt(ips[(n, case)]):>14s}" for n in names)
        if "torch" in names:
            for n in paddle_names:
                t, p = ips[("torch", case)], ips[(n, case)]
                ratio = t / p if t and p else None
                row += f"{fmt(ratio, 2):>12s}"
                if ratio is not None:
                    key = (n, case.split(":")[1])
                    worst[key] = max(worst.get(key, 0.0), ratio)
        print(row)
    if verdict:
        for (n, mode), ratio in sorted(worst.items()):
            goal = GOAL_TRAIN if mode == "train" else GOAL_EVAL
            print(f"{n:6s} {mode:5s}: worst torch/paddle ratio {ratio:.2f} (goal <= {goal}): "
                  f"{'met' if ratio <= goal else 'MISSED'}")
    return ips


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser, "timed steps per variant and case")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the workers "
                        "(default: this process's, else 2)")
    parser.add_argument("--variants", default="plain,mkl,mem,fast,torch",
                        help="comma-separated: plain, mkl, mem, fast, jit, torch")
    parser.add_argument("--settle", type=float, default=0.3,
                        help="seconds between timed steps, so one worker's spinning OpenMP threads "
                             "(Paddle's libiomp5 spins 200 ms) do not slow the next")
    parser.add_argument("--jit", action="store_true", help="also the jit variant (paddle.jit.to_static forward)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)

    variants = [v for v in args.variants.split(",") if v]
    if args.jit and "jit" not in variants:
        variants.append("jit")
    unknown = [v for v in variants if v not in PADDLE_VARIANTS and v != "torch"]
    cases = [c for c in args.cases.split(",") if c]
    bad_cases = [c for c in cases if c not in CASES]
    if unknown or bad_cases:
        parser.error(f"unknown variants {unknown} / cases {bad_cases}")
    if "torch" in variants and not torch_installed():
        print("PyTorch is not installed: torch column left empty (pip install torch==2.13.0)")
        variants.remove("torch")
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "2"))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("MKL_DEBUG_CPU_TYPE", None)  # each variant decides for itself

    load_before = os.getloadavg()
    workers = []
    for name in variants:
        w = Worker(name, args, env)
        if "error" in w.hello:
            print(f"variant {name} unavailable: {w.hello['error']}")
            w.close()
            continue
        workers.append(w)
    try:
        times = {(w.name, c): [] for w in workers for c in cases}
        cpu_times = {(w.name, c): [] for w in workers for c in cases}
        for case in cases:
            for w in workers:
                for _ in range(args.warmup):
                    w.ask(case)
        for r in range(args.repeats):
            for case in cases:
                order = workers[r % len(workers):] + workers[:r % len(workers)]
                for w in order:
                    time.sleep(args.settle)
                    out = w.ask(case)
                    if "ms" in out:
                        times[(w.name, case)].append(out["ms"])
                        cpu_times[(w.name, case)].append(out["cpu_ms"])
    finally:
        for w in workers:
            w.close()
    load_after = os.getloadavg()

    names = [w.name for w in workers]
    print(f"batch {args.batch_size} x {args.resolution}px, OMP_NUM_THREADS={threads}, repeats {args.repeats}, "
          f"load average {load_before[0]:.2f} -> {load_after[0]:.2f} (1 min)")
    for w in workers:
        print(f"  {w.name:6s} {w.hello['settings']}  trainable params {w.hello['params']}")
    counts = {json.dumps(w.hello["params"], sort_keys=True) for w in workers}
    if len(counts) > 1:
        print("WARNING: the variants do not train networks of the same size")
    ips = table("wall-clock images/s (median)", times, names, cases, args.batch_size, verdict=True)
    cpu_ips = table("CPU-time images/s (median; per core when OMP_NUM_THREADS=1, includes OpenMP spinning "
                    "otherwise)", cpu_times, names, cases, args.batch_size, verdict=False)
    if args.json:
        from infra.atomic import atomic_write_json

        atomic_write_json(args.json, {
            "batch_size": args.batch_size, "resolution": args.resolution, "threads": threads,
            "load_average": [load_before[0], load_after[0]],
            "settings": {w.name: w.hello["settings"] for w in workers},
            "images_per_s": {f"{n}|{c}": ips[(n, c)] for n in names for c in cases},
            "cpu_images_per_s": {f"{n}|{c}": cpu_ips[(n, c)] for n in names for c in cases},
            "times_ms": {f"{n}|{c}": times[(n, c)] for n in names for c in cases},
            "cpu_times_ms": {f"{n}|{c}": cpu_times[(n, c)] for n in names for c in cases}})


if __name__ == "__main__":
    main()
