"""Where a CPU training step of the ResNet48-shaped demo net spends its time, per Paddle operator.

Runs paddle.profiler over a few SGD steps of build_static(largest code) and prints the share of
the step taken by convolutions (forward + backward), batch norm, elementwise ops, buffer
allocation and the optimizer, for one variant of bench/cpu_throughput.py (plain, mkl, mem, fast).

  python bench/cpu_profile.py [--variant plain|mkl|mem|fast] [--config configs/demo.yaml] [--steps 3]
"""

import argparse
import contextlib
import io
import os
import re
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cpu_throughput import PADDLE_VARIANTS, apply_variant  # noqa: E402

GROUPS = (  # (label, regex over the profiler's operator names), first match wins
    ("convolution backward", r"Conv2dGrad|PyLayer__ConvFunction"),
    ("convolution forward", r"^conv2d "),
    ("batch norm", r"(?i)batch_?norm"),
    ("relu, residual add", r"(?i)relu|^add |AddGrad"),
    ("buffer allocation (empty)", r"^empty "),
    ("optimizer", r"momentum|sgd|GradNodeAccumulation"),
    ("everything else listed", r"."),
)
ROW = re.compile(r"^(\S+(?: dygraph)?)\s+(\d+)\s+([\d.]+) /")


def op_totals(summary_text):
    """{operator name: CPU total ms} from paddle.profiler's operator summary (all threads merged)."""
    totals, inside = {}, False
    for line in summary_text.splitlines():
        if "All threads merged" in line:
            inside = True
            continue
        if inside:
            if line.startswith("---"):
                break
            m = ROW.match(line)
            if m:
                totals[m.group(1)] = float(m.group(3))
    return totals


def main(argv=None):
    from infra.config import default_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="plain", choices=[v for v in PADDLE_VARIANTS if v != "jit"])
    parser.add_argument("--config", default=default_config("demo"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--resolution", type=int, default=28)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--mode", default="train", choices=("train", "eval"),
                        help="train: SGD steps; eval: no_grad forwards in eval mode")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)

    settings = apply_variant(args.variant)
    import paddle
    import paddle.nn.functional as F
    import paddle.profiler as profiler

    from encoding import net_spec
    from infra.config import resolve
    from supernet.model import ResNet48Supernet
    from supernet.static import build_static

    spec = net_spec(resolve(args.config, overrides=args.overrides))
    paddle.set_device("cpu")
    paddle.seed(0)
    net = build_static(ResNet48Supernet.max_arch(), spec)
    net.train()
    opt = paddle.optimizer.Momentum(0.01, momentum=0.9, parameters=net.parameters())
    x = paddle.randn([args.batch_size, spec.in_channels, args.resolution, args.resolution])
    y = paddle.randint(0, spec.num_classes, [args.batch_size])

    def train_step():
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()

    def eval_step():
        with paddle.no_grad():
            net(x)

    if args.mode == "eval":
        net.eval()
        train_step = eval_step  # noqa: F811

    for _ in range(2):
        train_step()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.steps):
        train_step()
    after = resource.getrusage(resource.RUSAGE_SELF)
    faults = (after.ru_minflt - usage.ru_minflt) / args.steps
    kernel_ms = 1000 * (after.ru_stime - usage.ru_stime) / args.steps
    user_ms = 1000 * (after.ru_utime - usage.ru_utime) / args.steps
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
    prof.start()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step()
        prof.step()
    wall = (time.perf_counter() - start) / args.steps
    prof.stop()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        prof.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, thread_sep=False, time_unit="ms",
                     views=[profiler.SummaryView.OperatorView])
    totals = op_totals(text.getvalue())
    step_ms = 1000 * wall
    print(f"variant {args.variant} {settings}, {args.mode}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, batch {args.batch_size}: "
          f"{step_ms:.0f} ms/step ({args.batch_size / wall:.0f} images/s, profiler on)")
    print(f"without the profiler: {faults:.0f} page faults, {kernel_ms:.0f} ms kernel + {user_ms:.0f} ms user "
          f"CPU time per step")
    grouped = dict.fromkeys([label for label, _ in GROUPS], 0.0)
    for name, ms in totals.items():
        label = next(label for label, pattern in GROUPS if re.search(pattern, name))
        grouped[label] += ms / args.steps
    grouped["not a Paddle operator (Python, oneDNN forward)"] = max(0.0, step_ms - sum(grouped.values()))
    print(f"{'where':48s} {'ms/step':>9s} {'share':>7s}")
    for label, ms in grouped.items():
        print(f"{label:48s} {ms:9.1f} {100 * ms / step_ms:6.1f}%")
    print("top operators:")
    for name, ms in sorted(totals.items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {name:46s} {ms / args.steps:9.1f}")


if __name__ == "__main__":
    main()
