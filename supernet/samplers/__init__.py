"""Which subnets train at each step: the sampling policy, kept out of the model.

Every step's draw comes from a generator seeded by (seed, epoch, step) alone, so all ranks of
a data-parallel job draw the same codes without talking to each other, and a resumed run
draws exactly what the interrupted one would have: there is no sampler state to save.

A step trains a list of `Path`s. Kinds: 'max' (the largest subnet; with in-place distillation
its logits teach the others), 'min' (the smallest) and 'random' (drawn by the arch sampler).

Samplers register themselves: a new strategy is one `Sampler` subclass in one file of this
package, naming its `strategy`, the `keys` of `supernet.sampler` it reads (their defaults go to
configs/imagenet.yaml) and how it is built from the section (`from_section`).
"""

import importlib
import pkgutil
from dataclasses import dataclass

import numpy as np

from encoding import Arch, KitError, NetSpec, get_space

DEFAULT_SPEC = NetSpec()
# Keys of `supernet.sampler` that every strategy shares (the path schedule's and the space's).
COMMON_KEYS = ("strategy", "sandwich", "num_random", "space", "depth_uniform", "extra_random_every",
               "depth_ranges", "progressive")
SAMPLERS = {}  # strategy name -> Sampler subclass, filled as each module of this package is imported


@dataclass(frozen=True)
class Path:
    kind: str  # 'max' | 'min' | 'random'
    arch: Arch


def step_rng(seed, epoch, step):
    """The generator of one step's draw: a pure function of (seed, epoch, step)."""
    return np.random.default_rng([int(seed), int(epoch), int(step)])


def restricted_space(space, depth_ranges):
    """`space` with each stage's depths limited to `depth_ranges[s]` = [lo, hi] (a few-shot group)."""
    from dataclasses import replace

    space = get_space(space)
    ranges = [tuple(int(v) for v in r) for r in depth_ranges] if isinstance(depth_ranges, (list, tuple)) else None
    if ranges is None or len(ranges) != 4 or any(len(r) != 2 or not lo <= r[0] <= r[1] <= hi
                                                  for r, (lo, hi) in zip(ranges, space.depth_ranges, strict=True)):
        raise KitError(f"supernet.sampler.depth_ranges must be 4 [lo, hi] pairs within "
                       f"{[list(r) for r in space.depth_ranges]}, got {depth_ranges!r}")
    return replace(space, name=f"{space.name}-depths-{'-'.join(f'{lo}{hi}' for lo, hi in ranges)}",
                   depth_ranges=tuple(ranges))


class Sampler:
    """A strategy's arch sampler. Subclasses set `strategy` (the config name) and `keys` (the
    `supernet.sampler` keys they read besides COMMON_KEYS) and implement `draw(rng)`, `largest()`,
    `smallest()` and `from_section(section, space, spec, resolution)`; defining one registers it.
    A sampler may instead offer `draw_many(rng)` (the step's random paths at once) or `at(epoch)`
    (the sampler of an epoch)."""

    strategy = None
    keys = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.strategy is not None:
            if cls.strategy in SAMPLERS and SAMPLERS[cls.strategy] is not cls:
                raise KitError(f"two samplers register strategy {cls.strategy!r}: {SAMPLERS[cls.strategy].__name__} "
                               f"and {cls.__name__}")
            SAMPLERS[cls.strategy] = cls

    @classmethod
    def from_section(cls, section, space, spec, resolution):
        raise NotImplementedError


def registry():
    """Every registered strategy: the modules of this package are imported on first use."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return SAMPLERS


def sampler_keys():
    """Every key `supernet.sampler` may hold: the shared ones and each strategy's own."""
    return tuple(dict.fromkeys(COMMON_KEYS + tuple(k for cls in registry().values() for k in cls.keys)))


def check_section(section):
    """The `supernet.sampler` section as a dict with every known key (unknown or missing refused by name)."""
    from infra.config import exact_keys

    section = exact_keys(section, sampler_keys(), "supernet.sampler")
    strategy = section["strategy"]
    if strategy not in registry():
        raise KitError(f"unknown sampler strategy {strategy!r}: expected one of {', '.join(sorted(SAMPLERS))}")
    if strategy == "pool_top" and section["large_pool"] != _shipped("large_pool"):
        raise KitError(f"supernet.sampler.large_pool={section['large_pool']} with strategy pool_top: the pool's size "
                       f"is supernet.sampler.pool_size now (large_pool is strategy large's)")
    return section


def _shipped(key):
    """The value configs/imagenet.yaml ships for `supernet.sampler.KEY` (to tell a renamed key set by hand)."""
    from infra.config import default_config, get, load_yaml

    return get(load_yaml(default_config("imagenet")), f"supernet.sampler.{key}")


class PathSchedule:
    """The paths of every step: optionally max and min (the sandwich rule), then `num_random` draws."""

    def __init__(self, sampler, num_random=2, sandwich=True, seed=0, extra_random_every=0):
        if int(num_random) < 0:
            raise KitError(f"num_random must be >= 0, got {num_random}")
        if not sandwich and int(num_random) == 0 and not hasattr(sampler, "draw_many"):
            raise KitError("no paths to train: num_random is 0 and the sandwich rule is off")
        if int(extra_random_every or 0) < 0:
            raise KitError(f"extra_random_every must be >= 0, got {extra_random_every}")
        self.sampler = sampler
        self.num_random = int(num_random)
        self.sandwich = bool(sandwich)
        self.seed = int(seed)
        self.extra_random_every = int(extra_random_every or 0)

    def paths(self, epoch, step):
        rng = step_rng(self.seed, epoch, step)
        sampler = self.sampler.at(epoch) if hasattr(self.sampler, "at") else self.sampler
        out = []
        if self.sandwich:
            out.append(Path("max", sampler.largest()))
            out.append(Path("min", sampler.smallest()))
        if hasattr(sampler, "draw_many"):  # pool_top: the pool's largest codes are the random paths
            out.extend(Path("random", a) for a in sampler.draw_many(rng))
        else:
            out.extend(Path("random", sampler.draw(rng)) for _ in range(self.num_random))
        if self.extra_random_every and (step + 1) % self.extra_random_every == 0:  # 1st place: every 3rd step
            out.append(Path("random", getattr(sampler, "draw_uniform", sampler.draw)(rng)))
        return out


class PathsAhead:
    """`schedule.paths(epoch, step)`, with the next step's paths drawn in a background thread while this
    step trains. A step's paths are a pure function of (seed, epoch, step), so drawing them early changes
    none; it takes the draws off the critical path (pool_top's 400 uniform codes in Python: 59 ms per step
    on 2 loaded cores), since Paddle releases the GIL while an op runs (a counting thread kept half or more
    of its rate beside CPU matmuls: docs/gpu-correctness.md). One draw at a time: a step that was not
    drawn ahead (the first, or after a jump) waits for the pending draw before drawing itself. The trainer
    uses it on GPUs only: on a CPU the thread would take a core from the step."""

    def __init__(self, schedule, steps_per_epoch):
        from concurrent.futures import ThreadPoolExecutor

        self.schedule, self.steps_per_epoch = schedule, int(steps_per_epoch)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paths-ahead")
        self._ahead = None  # ((epoch, step), future of its paths)

    def paths(self, epoch, step):
        key, paths = (int(epoch), int(step)), None
        if self._ahead is not None:
            drawn, future = self._ahead
            if drawn == key:
                paths = future.result()
            else:
                future.cancel() or future.exception()  # let it finish (or never start) before drawing here
        if paths is None:
            paths = self.schedule.paths(*key)
        following = (key[0], key[1] + 1) if key[1] + 1 < self.steps_per_epoch else (key[0] + 1, 0)
        self._ahead = (following, self._pool.submit(self.schedule.paths, *following))
        return paths

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


def build_schedule(section, seed, spec: NetSpec = DEFAULT_SPEC, resolution=None) -> PathSchedule:
    """From the `supernet.sampler` config section (every key: configs/imagenet.yaml).

    `strategy` picks the registered sampler the `num_random` paths of a step come from (uniform,
    large, list, pool_top: see each module of this package); `sandwich` adds the largest and
    smallest subnet first (of the space; of the list for 'list'), the max path being the in-place
    distillation teacher; `depth_ranges` limits every draw to a few-shot group's depths.
    """
    section = check_section(section)
    strategy, space = section["strategy"], section["space"]
    try:
        get_space(space)
    except ValueError as e:
        raise KitError(f"supernet.sampler.space: {e}") from None
    if section["progressive"] and strategy != "uniform":
        raise KitError(f"supernet.sampler.progressive shrinks the uniform sampler; strategy is {strategy!r}")
    if section["depth_ranges"] is not None and strategy != "list":  # a few-shot group's codes only
        space = restricted_space(space, section["depth_ranges"])
    sampler = SAMPLERS[strategy].from_section(section, space, spec, resolution)
    return PathSchedule(sampler, section["num_random"], sandwich=section["sandwich"], seed=seed,
                        extra_random_every=section["extra_random_every"])
