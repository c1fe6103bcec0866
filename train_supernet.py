"""Train the ResNet48 supernet (one process; `bash train_supernet.sh` starts one per device).

    python train_supernet.py [CONFIG.yaml] [key=value ...] [--flags]
    python train_supernet.py CONFIG --plan       (what train_supernet.sh needs before the launcher)

The training itself is `supernet.train.Trainer`; this entry point reads the config, refuses bad
values before Paddle loads, and wires in the per-epoch rank check of `supernet.rank_check` from the
evaluate package (the supernet package does not import it). Exit status: 0 done or stopped at
max_steps, 2 bad input or a system error (one `error:` line), 3 diverged.
"""

import argparse
import os
import sys

from imagedata.settings import workers_flag
from infra import config as C
from infra.errors import KitError, error_message
from runtime import cpu_speed
from supernet.loop import TrainingDiverged
from supernet.settings import SupernetSettings
from supernet.train import Trainer

# Command-line flags; every one is also a config key (key=value reaches all the others).
FLAGS = [
    C.Flag("--output_dir", "supernet.output_dir", str, "run directory: checkpoints, logs, final weights"),
    C.Flag("--epochs", "supernet.epochs", int, "training epochs"),
    C.Flag("--batch_size", "supernet.batch_size", int, "GLOBAL batch over all ranks per step"),
    C.Flag("--max_steps", "supernet.max_steps", int, "stop after this many optimizer steps in total"),
    C.Flag("--seed", "supernet.seed", int, "seed of data order, path sampling and initialisation"),
    C.Flag("--num_workers", "data.num_workers", workers_flag, "data-loader worker processes per rank (or auto)"),
    C.Flag("--image_dir", "data.image_dir", str, "ImageNet-style image directory"),
    C.Flag("--strategy", "supernet.sampler.strategy", str, "path sampler: uniform | large | list | pool_top"),
    C.Flag("--space", "supernet.sampler.space", str, "search space to sample: released | documented"),
    C.Flag("--num_random", "supernet.sampler.num_random", int, "random paths per step"),
    C.Flag("--arch_list", "supernet.sampler.arch_list", str, "architecture list for strategy 'list'"),
    C.Flag("--init", "supernet.init", str, "initialisation: random | official | supernet"),
    C.Flag("--pretrained", "supernet.pretrained", str, "weights for init official (resnet48.pdparams) or supernet"),
    C.Flag("--teacher", "supernet.loss.teacher", str, "static checkpoint of an external teacher"),
    C.Flag("--lr", "supernet.optim.lr", float, "peak learning rate (null: base_lr * global batch / 256)"),
    C.Flag("--device", "device", str, "auto | cpu | gpu"),
    C.Flag("--amp", "supernet.amp", str, "mixed precision on GPU: none | bf16 | fp16"),
]


def split_positionals(items):
    """[CONFIG] [key=value ...]: the first item without '=' is the config file."""
    config, overrides = None, []
    for item in items:
        if "=" not in item and config is None and not overrides:
            config = item
        else:
            overrides.append(item)
    return config or C.default_config("demo"), overrides


def build_parser():
    parser = argparse.ArgumentParser(prog="train_supernet.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value]",
                        help="config file (default configs/demo.yaml), then key=value overrides")
    parser.add_argument("--plan", action="store_true",
                        help="print the launch plan (output dir, CPU processes) as shell assignments and exit")
    C.add_flags(parser, FLAGS)
    return parser


def load_config(argv=None):
    args = build_parser().parse_intermixed_args(argv)
    path, overrides = split_positionals(args.items)
    cfg = C.resolve(path, args, FLAGS, overrides)
    return cfg, args


def launch_plan(cfg):
    """What train_supernet.sh needs before starting the launcher (no Paddle import). Refuses bad
    values and a run folder another run is writing, so neither gets as far as the launcher."""
    import shlex

    from infra.runlock import check_free

    settings = SupernetSettings.from_config(cfg)
    out, procs = settings.output_dir, settings.launch_cpu_procs
    check_free(out)
    device = str(cfg.get("device", "auto")).lower()
    return "\n".join([f"OUTPUT_DIR={shlex.quote(out)}", f"CPU_PROCS={procs}", f"DEVICE={shlex.quote(device)}"])


def main(argv=None):
    cpu_speed.default_threads()  # before Paddle is imported
    from evaluate.rank_check import RankCheck  # the entry point wires evaluation in, not the trainer
    try:
        cfg, args = load_config(argv)
        if args.plan:
            print(launch_plan(cfg))
            return 0
        summary = Trainer(cfg, rank_check=RankCheck).run()
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 3
    except (KitError, OSError) as e:  # bad input, or a read-only folder, full disk, missing mount
        print(f"error: {error_message(e)}", file=sys.stderr, flush=True)
        return 2
    if summary["finished"]:
        print(f"supernet training finished: {summary['global_step']} steps, weights in "
              f"{os.path.join(summary['output_dir'], 'supernet.pdparams')}", flush=True)
    else:
        print(f"stopped at global step {summary['global_step']} (max_steps); rerun the same command "
              f"with a larger supernet.max_steps to continue from {summary['last_checkpoint']}", flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
