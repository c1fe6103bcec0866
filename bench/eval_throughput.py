"""Subnets per minute: the kit's evaluator vs the naive per-subnet loop of the team scripts.

Naive: for every subnet, export a plain model from the supernet, build a fresh DataLoader over
the calibration images, recalibrate BN through it (cumulative average, the same math), then
build another DataLoader over the evaluation images and evaluate. Kit: one supernet, images
decoded once into cached tensors, set_active + recalibrate + evaluate + restore per subnet.
Both see the same subnets, the same calibration and evaluation images and the same weights;
the script prints subnets/min of both, their ratio, and Kendall tau-b between their results.
Goal: ratio >= 10 at Kendall >= 0.98.

Weights: --checkpoint (supernet training checkpoint or state dict), else a supernet trained
here for --train_steps steps of random released subnets (random weights would give near-chance
accuracies, which rank nothing); --save keeps those weights for the next run.

  python bench/eval_throughput.py [--config configs/demo.yaml] [--subnets 16] [--images 500]
      [--train_steps 100] [--save runs/bench_supernet.pdparams] [--naive_workers N] [key=value ...]
"""

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

from encoding import RELEASED, net_spec  # noqa: E402
from evaluate.evaluator import amp_dtype  # noqa: E402
from evaluate.oracle import Oracle, eval_indices  # noqa: E402
from evaluate.settings import EvalSettings, apply_protocol  # noqa: E402
from imagedata import DataSettings, build_dataset, build_loader  # noqa: E402
from imagedata.settings import worker_count  # noqa: E402
from infra.config import default_config, get, resolve  # noqa: E402
from runtime.amp import autocast  # noqa: E402
from runtime.device import setup_device  # noqa: E402
from submission.metrics import kendall_tau_b  # noqa: E402
from supernet import ResNet48Supernet  # noqa: E402
from supernet.calibration import calibration_indices  # noqa: E402

GOAL_RATIO, GOAL_TAU = 10.0, 0.98


def sync(device):
    if device.startswith("gpu"):
        paddle.device.synchronize()


def train_quickly(cfg, steps, batch_size, seed):
    """A supernet trained for `steps` SGD steps, one random released subnet per step."""
    paddle.seed(seed)
    model = ResNet48Supernet(net_spec(cfg))
    model.train()
    dataset = build_dataset(DataSettings.from_config(cfg), "train", augment=True)
    loader = build_loader(dataset, batch_size, shuffle=True, drop_last=True,
                          num_workers=worker_count(get(cfg, "data.num_workers")), seed=seed, num_replicas=1, rank=0)
    sched = paddle.optimizer.lr.CosineAnnealingDecay(0.1, T_max=max(1, steps))
    opt = paddle.optimizer.Momentum(sched, momentum=0.9, parameters=model.parameters(), weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    step, t0 = 0, time.perf_counter()
    while step < steps:
        for x, y in loader:
            model.set_active(RELEASED.sample(rng, depth_uniform=True))
            loss = F.cross_entropy(model(x), y.reshape([-1]))
            loss.backward()
            opt.step()
            opt.clear_grad()
            sched.step()
            step += 1
            if step % 25 == 0 or step == steps:
                print(f"  train step {step}/{steps}: loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
            if step >= steps:
                break
    model.eval()
    return model


def naive_recalibrate(model, loader, amp, normalize=None):
    """The team scripts' way: plain BatchNorm layers, train mode, one pass over a DataLoader,
    per-batch momentum so the running statistics end as the cumulative average. `normalize`
    turns the loader's uint8 batches into the network's float input (the dataset's)."""
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    model.train()
    with paddle.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Paddle warns on every train-mode BatchNorm forward
        for k, (x, _, _) in enumerate(loader, start=1):
            for bn in bns:
                bn._momentum = (k - 1) / k
            with autocast(amp):
                model(normalize(x) if normalize else x)
    model.eval()


def naive_evaluate(model, loader, amp, normalize=None):
    n, hit1, hit5, loss = 0, 0, 0, 0.0
    with paddle.no_grad():
        for x, y, _ in loader:
            y = y.reshape([-1])
            with autocast(amp):
                logits = model(normalize(x) if normalize else x)
            logits = logits.astype("float32")
            top = paddle.topk(logits, k=min(5, logits.shape[1]), axis=1).indices
            hits = (top == y.unsqueeze(1)).astype("int64")
            hit1 += hits[:, 0].sum().item()
            hit5 += hits.sum().item()
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            n += int(y.shape[0])
    return hit1 / n, hit5 / n, loss / n


def naive_datasets(cfg, images, calib_batches, calib_batch_size):
    """(calibration images of the training split, evaluation subset of the val split) as decoding
    datasets: the images the kit caches, for the naive loop to decode again per subnet."""
    val = build_dataset(DataSettings.from_config(cfg), "val", augment=False)
    val = val.subset(eval_indices(val.labels, images, get(cfg, "evaluate.subset_seed")))
    train = build_dataset(DataSettings.from_config(cfg), "train", augment=False)
    seed = int(get(cfg, "evaluate.calibration.seed"))
    train = train.subset(calibration_indices(len(train), calib_batches, calib_batch_size, seed).reshape(-1))
    return train, val


def naive_subnet(model, code, train, val, calib_batch_size, batch_size, workers, amp, device):
    """One subnet the naive way: export a plain model, recalibrate BN through a fresh DataLoader over
    `train`, evaluate through another over `val`. Returns ((top1, top5, loss), seconds exporting)."""
    t0 = time.perf_counter()
    static = model.export(code)
    sync(device)
    export_seconds = time.perf_counter() - t0
    calib_loader = paddle.io.DataLoader(train, batch_size=calib_batch_size, shuffle=False, num_workers=workers)
    naive_recalibrate(static, calib_loader, amp, train.normalize)
    eval_loader = paddle.io.DataLoader(val, batch_size=batch_size, shuffle=False, num_workers=workers)
    return naive_evaluate(static, eval_loader, amp, val.normalize), export_seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=default_config("demo"))
    parser.add_argument("--subnets", type=int, default=16)
    parser.add_argument("--images", type=int, default=500, help="evaluation images (stratified subset)")
    parser.add_argument("--calib_batches", type=int, default=5)
    parser.add_argument("--calib_batch_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=250, help="evaluation batch size (both routes)")
    parser.add_argument("--checkpoint", help="supernet weights; default: train one here")
    parser.add_argument("--train_steps", type=int, default=100)
    parser.add_argument("--train_batch", type=int, default=32)
    parser.add_argument("--save", help="save the quickly trained supernet's state dict here")
    parser.add_argument("--naive_workers", type=int, help="DataLoader workers of the naive loop "
                        "(default: data.num_workers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="config key=value")
    args = parser.parse_args(argv)

    cfg = apply_protocol(resolve(args.config, overrides=list(args.overrides) + [
        f"evaluate.subset={args.images}", f"evaluate.batch_size={args.batch_size}",
        "evaluate.calibration.mode=recalibrate", f"evaluate.calibration.batches={args.calib_batches}",
        f"evaluate.calibration.batch_size={args.calib_batch_size}", "evaluate.calibration.augment=false"]))
    device = setup_device(cfg)
    amp = amp_dtype(get(cfg, "evaluate.amp"), device)
    workers = worker_count(get(cfg, "data.num_workers")) if args.naive_workers is None else args.naive_workers
    print(f"device {device}; {args.subnets} released subnets, {args.images} eval images at "
          f"{get(cfg, 'data.resolution')} px, calibration {args.calib_batches} x {args.calib_batch_size}, "
          f"batch {args.batch_size}, amp {amp or 'none'}, naive DataLoader workers {workers}")
    if args.checkpoint:
        cfg["evaluate"]["checkpoint"] = args.checkpoint
        model = EvalSettings.from_config(cfg).source().load(net_spec(cfg))
        print(f"weights: {args.checkpoint}")
    else:
        print(f"weights: training a supernet for {args.train_steps} steps of batch {args.train_batch}")
        model = train_quickly(cfg, args.train_steps, args.train_batch, args.seed)
        if args.save:
            os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
            paddle.save(model.state_dict(), args.save)
    codes = [a.code() for a in RELEASED.sample_many(args.subnets, seed=args.seed + 1, depth_uniform=True)]

    # --- setup: the kit caches images once; the naive loop builds its datasets once ----
    sync(device)
    t0 = time.perf_counter()
    oracle = Oracle(cfg, EvalSettings.from_config(cfg), device, model=model)  # what `evaluate run` scores with
    sync(device)
    kit_setup = time.perf_counter() - t0
    train, val = naive_datasets(cfg, args.images, args.calib_batches, args.calib_batch_size)

    # --- per subnet, the two routes interleaved (alternating which goes first), so a busy
    # machine slows both alike ------------------------------------------------------------
    kit, naive = [], []
    kit_seconds = naive_seconds = export_seconds = 0.0
    for i, code in enumerate(codes):
        for route in (("kit", "naive") if i % 2 == 0 else ("naive", "kit")):
            sync(device)
            t0 = time.perf_counter()
            if route == "kit":
                kit.append(oracle.score_one(code))
                sync(device)
                kit_seconds += time.perf_counter() - t0
            else:
                result, exported = naive_subnet(model, code, train, val, args.calib_batch_size, args.batch_size,
                                                workers, amp, device)
                naive.append(result)
                sync(device)
                export_seconds += exported
                naive_seconds += time.perf_counter() - t0
    kit_total = kit_setup + kit_seconds
    naive_total = naive_seconds

    n = len(codes)
    kit_steady = 60.0 * n / kit_seconds
    kit_rate = 60.0 * n / kit_total
    naive_rate = 60.0 * n / naive_total
    tau_top1 = kendall_tau_b([r["top1"] for r in kit], [r[0] for r in naive])
    tau_loss = kendall_tau_b([r["loss"] for r in kit], [r[2] for r in naive])
    max_dloss = max(abs(r["loss"] - q[2]) for r, q in zip(kit, naive, strict=True))
    top1 = np.array([r["top1"] for r in kit])
    print(f"top-1 over the subnets: min {top1.min():.3f} mean {top1.mean():.3f} max {top1.max():.3f}")
    print(f"kit:   {kit_rate:8.1f} subnets/min including {kit_setup:.1f} s setup "
          f"({kit_steady:.1f} subnets/min after setup)")
    print(f"naive: {naive_rate:8.1f} subnets/min ({export_seconds / n:.3f} s/subnet exporting the model)")
    calibration_seconds, eval_seconds = oracle.seconds()
    print(f"kit per subnet: {calibration_seconds / n:.3f} s calibration + "
          f"{eval_seconds / n:.3f} s evaluation; naive per subnet: {naive_seconds / n:.3f} s")
    ratio = kit_rate / naive_rate
    print(f"ratio: {ratio:.2f}x including setup, {kit_steady / naive_rate:.2f}x after setup (goal >= {GOAL_RATIO}x)")
    print(f"Kendall tau-b kit vs naive: top-1 {tau_top1:.4f}, loss {tau_loss:.4f} (goal >= {GOAL_TAU}); "
          f"max |loss difference| {max_dloss:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
