"""Images/s of the kit's training and evaluation input pipelines, per rank, by loader workers.

Makes (or reuses) an image folder of real-size JPEGs (default 500x375, ImageNet's typical size,
smooth random content so they decode like photographs, not like noise), then for each worker
count runs the loader exactly as pretrain.py and supernet training do: training transforms
(RandomResizedCrop 224 + flip) and evaluation transforms (resize 256 + centre crop 224), uint8
batches through shared memory, normalised after arrival. The first batch (worker start-up) is
timed apart from the steady rate. Worker counts above the machine's cores are still measured
(they show the ceiling) unless --max-workers caps them.

    python bench/loader_throughput.py [--workers 0,2,4,8,16] [--max-workers N] [--images 512]
        [--batch-size 64] [--batches 8] [--dir DIR] [--json OUT] [key=value ...]

Shared memory: each worker keeps prefetched batches in /dev/shm; a 224 px uint8 sample is 150 KB,
so 8 workers x 2 prefetched batches of 256 images hold ~0.6 GB per rank. Docker's default 64 MB
/dev/shm is far too small: run containers with --shm-size=8g (or --ipc=host).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime import cpu_speed  # noqa: E402

cpu_speed.default_threads()  # before Paddle is imported

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from infra.config import default_config, resolve  # noqa: E402

PIPELINES = ("train", "eval")


def make_jpegs(root, images, classes=10, size=(500, 375), seed=0):
    """`images` JPEGs (quality 90) in `classes` folders under root/train; reused when present."""
    split = os.path.join(root, "train")
    marker = os.path.join(root, f".made-{images}-{classes}-{size[0]}x{size[1]}")
    if os.path.exists(marker):
        return root
    shutil.rmtree(split, ignore_errors=True)
    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(images):
        folder = os.path.join(split, f"c{i % classes:03d}")
        os.makedirs(folder, exist_ok=True)
        coarse = rng.integers(0, 256, (h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)  # smooth, photo-like
        image = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        image.save(os.path.join(folder, f"{i:06d}.jpg"), quality=90)
    open(marker, "w").close()
    return root


def measure(cfg, pipeline, workers, batch_size, batches):
    """{'workers', 'first_batch_s', 'images_per_s'} of one pipeline (steady rate after the first batch)."""
    from imagedata import DataSettings, build_dataset, build_loader

    dataset = build_dataset(DataSettings.from_config(cfg), "train", augment=pipeline == "train")
    loader = build_loader(dataset, batch_size, shuffle=True, drop_last=True, num_workers=workers, seed=0,
                          num_replicas=1, rank=0)
    batches = min(batches, len(loader))
    t0 = time.perf_counter()
    seen, t_first = 0, None
    for i, (x, _) in enumerate(loader):
        x.numpy()  # the batch is really there (normalised where it lives)
        if i == 0:
            t_first = time.perf_counter()
        else:
            seen += int(x.shape[0])
        if i + 1 >= batches:
            break
    end = time.perf_counter()
    return {"pipeline": pipeline, "workers": workers, "first_batch_s": t_first - t0,
            "images_per_s": seen / (end - t_first) if seen else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="0,2,4,8,16", help="comma-separated worker counts per rank")
    p.add_argument("--max-workers", type=int, default=None, help="skip worker counts above this")
    p.add_argument("--images", type=int, default=512, help="JPEGs to generate")
    p.add_argument("--size", default="500x375", help="JPEG size WxH")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=8, help="batches per measurement (the first is start-up)")
    p.add_argument("--dir", default=None, help="image folder to make or reuse (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("overrides", nargs="*", help="config key=value (configs/imagenet.yaml)")
    args = p.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    if args.max_workers is not None:
        counts = [w for w in counts if w <= args.max_workers]
    size = tuple(int(v) for v in args.size.lower().split("x"))
    root = args.dir or tempfile.mkdtemp(prefix="loader-bench-")
    t0 = time.perf_counter()
    make_jpegs(root, args.images, size=size)
    made = time.perf_counter() - t0
    cfg = resolve(default_config("imagenet"), overrides=[f"data.image_dir={root}", "data.layout=folders",
                                                          *args.overrides])
    from runtime.device import print_start_line, select_device

    device = select_device(cfg.get("device", "auto"))
    print_start_line("bench/loader_throughput.py", device, 1, None, file=sys.stdout)
    shm = shutil.disk_usage("/dev/shm").total if os.path.isdir("/dev/shm") else None
    print(f"{args.images} JPEGs {size[0]}x{size[1]} in {root} ({made:.1f} s to make); batch {args.batch_size}, "
          f"{args.batches} batches per figure; cores {len(os.sched_getaffinity(0))}; "
          f"/dev/shm {shm / 2**30:.1f} GiB" if shm else "/dev/shm absent", flush=True)
    rows = []
    print(f"{'pipeline':<10}{'workers':>8}{'first batch s':>15}{'images/s':>11}")
    for pipeline in PIPELINES:
        for w in counts:
            r = measure(cfg, pipeline, w, args.batch_size, args.batches)
            rows.append(r)
            rate = f"{r['images_per_s']:.0f}" if r["images_per_s"] else "n/a"
            print(f"{pipeline:<10}{w:>8}{r['first_batch_s']:>15.2f}{rate:>11}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"images": args.images, "size": size, "batch_size": args.batch_size, "device": device,
                       "cores": len(os.sched_getaffinity(0)), "shm_bytes": shm, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
