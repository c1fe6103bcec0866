"""Few-shot supernets: one trained supernet split into K copies by a rule on the code, each fine-tuned
on its own group's codes, and every code routed to its group's copy at evaluation.

A group is a name and, per stage, the range of depths its codes have (2nd place: 5 groups by the
depths of stages 3 and 4). Groups are tried in order and a code belongs
to the first that contains it, so a last catch-all group may follow narrower ones.

    python -m supernet.fewshot split --config C --checkpoint SUPERNET.pdparams --out DIR

writes DIR/manifest.json (the groups, the source weights' sha256) and DIR/<group>/init.pdparams
(a copy of the source weights), and prints each group's fine-tuning command:

    bash train_supernet.sh C supernet.output_dir=DIR/<group> supernet.init=supernet \
        supernet.pretrained=DIR/<group>/init.pdparams 'supernet.sampler.depth_ranges=[[2,5],...]'

Each copy is an ordinary supernet run (resumable, launchable in parallel with the others). Its
final `DIR/<group>/supernet.pdparams` is what `python -m evaluate run --fewshot DIR/manifest.json`
loads for the codes of that group, all groups into one results file.
"""

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass

from encoding import Arch, KitError, get_space, parse
from infra.atomic import atomic_replace, atomic_write_json, file_digest

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Group:
    name: str
    depth_ranges: tuple  # per stage (lo, hi), inclusive

    def contains(self, arch: Arch) -> bool:
        return all(lo <= d <= hi for d, (lo, hi) in zip(arch.depths, self.depth_ranges, strict=True))

    def to_dict(self):
        return {"name": self.name, "depth_ranges": [list(r) for r in self.depth_ranges]}


def parse_groups(items, space="released"):
    """Groups from config: a list of {name: str, depths: {stage (1-4): [lo, hi]}}; stages not named
    keep the space's full range."""
    base = get_space(space).depth_ranges
    if not isinstance(items, list) or not items:
        raise KitError("supernet.fewshot.groups must be a non-empty list of {name, depths} mappings")
    groups = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise KitError(f"supernet.fewshot.groups[{i}] needs a name, got {item!r}")
        ranges = list(base)
        for stage, bounds in (item.get("depths") or {}).items():
            s = int(str(stage).removeprefix("stage")) - 1
            ok = (0 <= s < 4 and isinstance(bounds, (list, tuple)) and len(bounds) == 2
                  and base[s][0] <= bounds[0] <= bounds[1] <= base[s][1])
            if not ok:
                raise KitError(f"supernet.fewshot.groups[{i}] ({item['name']}): stage {stage} depths {bounds!r} "
                               f"must be [lo, hi] within {list(base[s]) if 0 <= s < 4 else 'stages 1-4'}")
            ranges[s] = (int(bounds[0]), int(bounds[1]))
        groups.append(Group(item["name"], tuple(ranges)))
    names = [g.name for g in groups]
    if len(set(names)) != len(names) or any(os.sep in n or n in (".", "..") for n in names):
        raise KitError(f"few-shot group names must be distinct folder names, got {names}")
    return groups


def route(groups, code):
    """The first group whose depth ranges contain `code`."""
    arch = code if isinstance(code, Arch) else parse(code)
    for g in groups:
        if g.contains(arch):
            return g
    raise KitError(f"code {arch.code()} (depths {list(arch.depths)}) is in no few-shot group "
                   f"({', '.join(g.name for g in groups)}): add a catch-all group last")


def split(checkpoint, groups, out):
    """Write the manifest and every group's initial weights; return the manifest dict."""
    if not os.path.isfile(checkpoint):
        raise KitError(f"--checkpoint {checkpoint} does not exist")
    for g in groups:  # atomic_replace makes the group's folder and never leaves half a copy
        atomic_replace(os.path.join(out, g.name, "init.pdparams"), lambda tmp: shutil.copyfile(checkpoint, tmp))
    manifest = {"version": MANIFEST_VERSION, "source": os.path.abspath(checkpoint),
                "source_sha256": file_digest(checkpoint),
                "groups": [{**g.to_dict(), "init": f"{g.name}/init.pdparams", "weights": f"{g.name}/supernet.pdparams"}
                           for g in groups]}
    atomic_write_json(os.path.join(out, "manifest.json"), manifest, indent=1)
    return manifest


def read_manifest(path):
    """(groups, {group name: path of its fine-tuned weights}) from a split's manifest.json."""
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise KitError(f"few-shot manifest {path} does not exist (python -m supernet.fewshot split writes "
                       f"it)") from None
    except ValueError as e:
        raise KitError(f"few-shot manifest {path} is not JSON: {e}") from None
    if manifest.get("version") != MANIFEST_VERSION or not isinstance(manifest.get("groups"), list):
        raise KitError(f"{path} is not a few-shot manifest of version {MANIFEST_VERSION}")
    root = os.path.dirname(os.path.abspath(path))
    groups = [Group(g["name"], tuple(tuple(r) for r in g["depth_ranges"])) for g in manifest["groups"]]
    weights = {g["name"]: os.path.join(root, g["weights"]) for g in manifest["groups"]}
    return groups, weights


def finetune_command(config, out, group, overrides=()):
    ranges = json.dumps([list(r) for r in group.depth_ranges], separators=(",", ":"))
    return (f"bash train_supernet.sh {config} supernet.output_dir={os.path.join(out, group.name)} "
            f"supernet.init=supernet supernet.pretrained={os.path.join(out, group.name, 'init.pdparams')} "
            f"'supernet.sampler.depth_ranges={ranges}'" + "".join(f" {o}" for o in overrides))


def main(argv=None):
    from encoding import run_reporting_errors
    from infra.config import get, resolve

    p = argparse.ArgumentParser(prog="python -m supernet.fewshot", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="split a trained supernet into the configured groups")
    s.add_argument("--config", required=True, help="config whose supernet.fewshot.groups define the split")
    s.add_argument("--checkpoint", required=True, help="trained supernet weights (supernet.pdparams)")
    s.add_argument("--out", required=True, help="folder for the manifest and one sub-folder per group")
    s.add_argument("overrides", nargs="*", help="key=value config overrides (also passed to the printed commands)")
    args = p.parse_args(argv)

    def run():
        cfg = resolve(args.config, overrides=args.overrides)
        groups = parse_groups(get(cfg, "supernet.fewshot.groups", None),
                              get(cfg, "supernet.sampler.space", "released"))
        split(args.checkpoint, groups, args.out)
        print(f"{os.path.join(args.out, 'manifest.json')}: {len(groups)} groups; fine-tune each (in parallel if "
              f"you like), then evaluate with --fewshot {os.path.join(args.out, 'manifest.json')}:")
        for g in groups:
            print("  " + finetune_command(args.config, args.out, g, args.overrides))
        return 0

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
