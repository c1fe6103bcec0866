"""What weight sharing costs per training step: the supernet's sliced path vs the exported plain model.

For the released space's min, median-MACs and max codes, times forward + backward of the
supernet (active code) and of its export side by side, interleaved, and prints the median
milliseconds and their ratio. Goal: ratio <= 1.15.

  python bench/step_overhead.py [--config configs/demo.yaml] [--batch-size 128] [model.key=value ...]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402
from cpu_throughput import add_model_options, bench_codes  # noqa: E402  (bench/ is this script's directory)

import encoding  # noqa: E402
from encoding import net_spec  # noqa: E402
from infra.config import resolve  # noqa: E402
from runtime import onednn_conv  # noqa: E402
from runtime.device import setup_device  # noqa: E402
from supernet import ResNet48Supernet  # noqa: E402

GOAL = 1.15


def pick_codes(spec, resolution, samples, seed):
    largest, median = bench_codes(spec, resolution, samples, seed)
    return [("min", encoding.RELEASED.min_arch()), ("median", median), ("max", largest)]


def sync(on_gpu):
    if on_gpu:
        paddle.device.synchronize()


def step_ms(model, x, y, on_gpu):
    sync(on_gpu)
    start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    sync(on_gpu)
    elapsed = time.perf_counter() - start
    model.clear_gradients(set_to_zero=False)
    return 1000.0 * elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser, "timed steps per model and code")
    parser.add_argument("--samples", type=int, default=200, help="released-space samples to find the median code")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    cfg = resolve(args.config, overrides=args.overrides)
    spec = net_spec(cfg)
    on_gpu = setup_device(cfg).startswith("gpu")  # the config's device and cpu: switches, as the entry points do
    paddle.seed(args.seed)

    net = ResNet48Supernet(spec)
    net.train()
    x = paddle.randn([args.batch_size, spec.in_channels, args.resolution, args.resolution])
    y = paddle.randint(0, spec.num_classes, [args.batch_size])
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"device {paddle.get_device()}, conv {onednn_conv.backend()}, threads OMP_NUM_THREADS={threads}, "
          f"batch {args.batch_size}, {args.resolution}px, spec {spec.to_dict()}")
    print(f"{'code':8s} {'MMACs':>8s} {'supernet ms':>12s} {'static ms':>10s} {'ratio':>6s}")
    worst = 0.0
    for label, arch in pick_codes(spec, args.resolution, args.samples, args.seed):
        net.set_active(arch)
        static = net.export()
        static.train()
        for _ in range(args.warmup):
            step_ms(net, x, y, on_gpu)
            step_ms(static, x, y, on_gpu)
        sup, sta = [], []
        for r in range(args.repeats):  # interleaved, alternating who goes first, so load drift hits both
            if r % 2:
                sta.append(step_ms(static, x, y, on_gpu))
                sup.append(step_ms(net, x, y, on_gpu))
            else:
                sup.append(step_ms(net, x, y, on_gpu))
                sta.append(step_ms(static, x, y, on_gpu))
        sup_ms, sta_ms = statistics.median(sup), statistics.median(sta)
        ratio = sup_ms / sta_ms
        worst = max(worst, ratio)
        mmacs = encoding.macs_of(arch, spec, args.resolution) / 1e6
        print(f"{label:8s} {mmacs:8.1f} {sup_ms:12.2f} {sta_ms:10.2f} {ratio:6.3f}   {arch.code()}")
    print(f"worst ratio {worst:.3f} (goal <= {GOAL}): {'met' if worst <= GOAL else 'MISSED'}")


if __name__ == "__main__":
    main()
