"""Which subnets train at each step: the sampling policy, kept out of the model.

Every step's draw comes from a generator seeded by (seed, epoch, step) alone, so all ranks of
a data-parallel job draw the same codes without talking to each other, and a resumed run
draws exactly what the interrupted one would have: there is no sampler state to save.

A step trains a list of `Path`s. Kinds: 'max' (the largest subnet; with in-place distillation
its logits teach the others), 'min' (the smallest) and 'random' (drawn by the arch sampler).
"""

from dataclasses import dataclass

import numpy as np

from encoding import Arch, ArchListError, KitError, NetSpec, costs, get_space, read_arch_list, widths

STRATEGIES = ("uniform", "large", "list", "pool_top")
DEFAULT_SPEC = NetSpec()


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


class UniformSampler:
    """Uniform over the codes of a space (or, with depth_uniform, uniform depth per stage first)."""

    def __init__(self, space="released", depth_uniform=False):
        self.space = get_space(space)
        self.depth_uniform = bool(depth_uniform)

    def draw(self, rng) -> Arch:
        return self.space.sample(rng, depth_uniform=self.depth_uniform)

    def largest(self) -> Arch:
        return self.space.max_arch()

    def smallest(self) -> Arch:
        return self.space.min_arch()


class LargeBiasedSampler(UniformSampler):
    """Draw `pool` codes and keep the one with the most MACs: pushes training towards big subnets,
    which are the ones a fixed budget under-trains when sampling is uniform."""

    def __init__(self, space="released", depth_uniform=False, pool=3, spec: NetSpec = DEFAULT_SPEC, resolution=None):
        super().__init__(space, depth_uniform)
        if int(pool) < 1:
            raise KitError(f"large-biased sampler: pool must be at least 1, got {pool}")
        self.pool = int(pool)
        self.spec = spec
        self.resolution = resolution

    def draw(self, rng) -> Arch:
        candidates = [super(LargeBiasedSampler, self).draw(rng) for _ in range(self.pool)]
        _, macs = costs(candidates, self.spec, self.resolution)
        return candidates[int(np.argmax(macs))]  # first of equals: deterministic


def channel_sum(arch, spec: NetSpec = DEFAULT_SPEC):
    """Channels of every active conv: the stem plus conv1 and conv2 of every block."""
    w = widths(arch, spec)
    return w.stem + sum(c1 + c2 for stage in w.stages for c1, c2 in stage)


class PoolTopSampler(UniformSampler):
    """1st place's draw: `pool` uniform codes, of which the `keep` largest (by channel sum or MACs)
    are the step's random paths."""

    def __init__(self, space="released", depth_uniform=False, pool=400, keep=4, by="channels",
                 spec: NetSpec = DEFAULT_SPEC, resolution=None):
        super().__init__(space, depth_uniform)
        if not 1 <= int(keep) <= int(pool):
            raise KitError(f"pool_top sampler: need 1 <= keep <= pool, got keep {keep}, pool {pool}")
        if by not in ("channels", "macs"):
            raise KitError(f"pool_top sampler: pool_by must be channels or macs, got {by!r}")
        self.pool, self.keep, self.by, self.spec, self.resolution = int(pool), int(keep), by, spec, resolution

    def draw_uniform(self, rng) -> Arch:
        return super().draw(rng)

    def draw_many(self, rng):
        candidates = [self.draw_uniform(rng) for _ in range(self.pool)]
        if self.by == "macs":
            size = costs(candidates, self.spec, self.resolution)[1]
        else:
            size = np.array([channel_sum(a, self.spec) for a in candidates])
        order = np.argsort(-size, kind="stable")  # largest first; ties in draw order
        return [candidates[i] for i in order[:self.keep]]


class ListSampler:
    """Uniform over the codes of an architecture list (e.g. the challenge's 45,000); with
    `depth_ranges` (a few-shot group), over the list's codes whose stage depths lie within them."""

    def __init__(self, path, space="documented", spec: NetSpec = DEFAULT_SPEC, resolution=None, depth_ranges=None):
        space = get_space(space)
        entries = read_arch_list(path)
        if not entries:
            raise ArchListError(f"{path}: architecture list is empty, nothing to sample")
        archs = []
        for e in entries:
            try:
                archs.append(space.validate(e.code))
            except KitError as err:
                raise ArchListError(f"{path}: entry {e.id!r} is not in space {space.name!r}: {err}") from None
        if depth_ranges is not None:
            group = restricted_space(space, depth_ranges)
            archs = [a for a in archs if group.contains(a)]  # valid in the space: only the depths can differ
            if not archs:
                raise ArchListError(f"{path}: no code has its stage depths within supernet.sampler.depth_ranges "
                                    f"{[list(r) for r in group.depth_ranges]}")
            space = group
        self.archs = list(dict.fromkeys(archs))  # duplicates would skew "uniform"
        self.space = space
        _, macs = costs(self.archs, spec, resolution)
        self._largest = self.archs[int(np.argmax(macs))]
        self._smallest = self.archs[int(np.argmin(macs))]

    def draw(self, rng) -> Arch:
        return self.archs[int(rng.integers(len(self.archs)))]

    def largest(self) -> Arch:
        """By MACs among the list's codes, so a sandwich over a list stays inside the list."""
        return self._largest

    def smallest(self) -> Arch:
        return self._smallest


def shrunk_space(space, depth_relax, width_relax):
    """`space` with each stage's minimum depth at most `depth_relax` below its maximum and ratio
    digits 1..1 + `width_relax` (both clipped to the space's own bounds)."""
    from dataclasses import replace

    d, w = int(depth_relax), int(width_relax)
    if d < 0 or w < 0:
        raise KitError(f"progressive shrinking: relaxations must be >= 0, got depth {d}, width {w}")
    return replace(space, name=f"{space.name}-shrunk-d{d}-w{w}",
                   depth_ranges=tuple((max(lo, hi - d), hi) for lo, hi in space.depth_ranges),
                   stem_digits=min(space.stem_digits, 1 + w),
                   stage_digits=tuple(min(k, 1 + w) for k in space.stage_digits))


class ProgressiveSampler:
    """Progressive shrinking (once-for-all; the 2nd place's first stage): the largest subnet first,
    then depth, then width. Each epoch in `depth_epochs` lets every stage go one block shallower;
    each epoch in `width_epochs` admits the next ratio digit. `at(epoch)` is a uniform sampler
    over what epoch `epoch` allows: a pure function of the epoch, so resuming needs no state."""

    def __init__(self, space="released", depth_uniform=False, depth_epochs=(), width_epochs=()):
        self.space = get_space(space)
        self.depth_uniform = bool(depth_uniform)
        for name, epochs in (("depth_epochs", depth_epochs), ("width_epochs", width_epochs)):
            if any(not isinstance(e, int) or isinstance(e, bool) or e < 0 for e in epochs) or \
                    list(epochs) != sorted(epochs):
                raise KitError(f"supernet.sampler.progressive.{name} must be ascending epochs >= 0, got {epochs!r}")
        self.depth_epochs, self.width_epochs = tuple(depth_epochs), tuple(width_epochs)

    def at(self, epoch):
        depth = sum(1 for e in self.depth_epochs if e <= epoch)
        width = sum(1 for e in self.width_epochs if e <= epoch)
        return UniformSampler(shrunk_space(self.space, depth, width), self.depth_uniform)


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


def build_schedule(section, seed, spec: NetSpec = DEFAULT_SPEC, resolution=None) -> PathSchedule:
    """From the `supernet.sampler` config section.

    strategy picks where the `num_random` paths of a step come from:
      uniform -> uniform over `space` (per-stage uniform depth first with `depth_uniform`)
      large   -> best of `large_pool` uniform draws by MACs (under the training spec/resolution)
      list    -> uniform over the codes of `arch_list`
      pool_top -> the `pool_keep` largest (by `pool_by`: channels | macs) of `large_pool` uniform draws
                 (1st place: 4 of 400 by channel sum); `extra_random_every` k adds a uniform path every k-th step
    sandwich: true adds the largest and smallest subnet first (of the space; of the list for
    'list'), the max path being the in-place distillation teacher.
    """
    section = dict(section or {})
    strategy = section.get("strategy", "uniform")
    space = section.get("space", "released")
    depth_uniform = bool(section.get("depth_uniform", False))
    if strategy not in STRATEGIES:
        raise KitError(f"unknown sampler strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    try:
        get_space(space)
    except ValueError as e:
        raise KitError(f"supernet.sampler.space: {e}") from None
    if section.get("depth_ranges") is not None and strategy != "list":  # a few-shot group's codes only
        space = restricted_space(space, section["depth_ranges"])
    progressive = section.get("progressive")
    if progressive:
        if strategy != "uniform":
            raise KitError(f"supernet.sampler.progressive shrinks the uniform sampler; strategy is {strategy!r}")
        sampler = ProgressiveSampler(space, depth_uniform, progressive.get("depth_epochs") or (),
                                     progressive.get("width_epochs") or ())
    elif strategy == "uniform":
        sampler = UniformSampler(space, depth_uniform)
    elif strategy == "large":
        sampler = LargeBiasedSampler(space, depth_uniform, section.get("large_pool", 3), spec, resolution)
    elif strategy == "pool_top":
        sampler = PoolTopSampler(space, depth_uniform, section.get("large_pool", 400), section.get("pool_keep", 4),
                                 section.get("pool_by", "channels"), spec, resolution)
    else:
        path = section.get("arch_list")
        if not path:
            raise KitError("sampler strategy 'list' needs supernet.sampler.arch_list (a challenge-format JSON)")
        sampler = ListSampler(path, space, spec, resolution, section.get("depth_ranges"))
    return PathSchedule(sampler, section.get("num_random", 2), sandwich=section.get("sandwich", True), seed=seed,
                        extra_random_every=section.get("extra_random_every", 0))
