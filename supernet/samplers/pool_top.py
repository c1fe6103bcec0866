"""Strategy `pool_top` (1st place): of `pool_size` uniform draws, the `pool_keep` largest (by `pool_by`:
channels | macs) are the step's random paths (1st place: 4 of 400 by channel sum)."""

import numpy as np

from encoding import Arch, KitError, NetSpec, costs, widths

from . import DEFAULT_SPEC
from .uniform import UniformSampler


def channel_sum(arch, spec: NetSpec = DEFAULT_SPEC):
    """Channels of every active conv: the stem plus conv1 and conv2 of every block."""
    w = widths(arch, spec)
    return w.stem + sum(c1 + c2 for stage in w.stages for c1, c2 in stage)


class PoolTopSampler(UniformSampler):
    """1st place's draw: `pool` uniform codes, of which the `keep` largest (by channel sum or MACs)
    are the step's random paths."""

    strategy = "pool_top"
    keys = ("pool_size", "pool_keep", "pool_by")

    def __init__(self, space="released", depth_uniform=False, pool=400, keep=4, by="channels",
                 spec: NetSpec = DEFAULT_SPEC, resolution=None):
        super().__init__(space, depth_uniform)
        if not 1 <= int(keep) <= int(pool):
            raise KitError(f"pool_top sampler: need 1 <= keep <= pool, got keep {keep}, pool {pool}")
        if by not in ("channels", "macs"):
            raise KitError(f"pool_top sampler: pool_by must be channels or macs, got {by!r}")
        self.pool, self.keep, self.by, self.spec, self.resolution = int(pool), int(keep), by, spec, resolution

    @classmethod
    def from_section(cls, section, space, spec, resolution):
        return cls(space, section["depth_uniform"], section["pool_size"], section["pool_keep"], section["pool_by"],
                   spec, resolution)

    def draw_uniform(self, rng) -> Arch:
        return UniformSampler.draw(self, rng)

    def draw_many(self, rng):
        candidates = [self.draw_uniform(rng) for _ in range(self.pool)]
        if self.by == "macs":
            size = costs(candidates, self.spec, self.resolution)[1]
        else:
            size = np.array([channel_sum(a, self.spec) for a in candidates])
        order = np.argsort(-size, kind="stable")  # largest first; ties in draw order
        return [candidates[i] for i in order[:self.keep]]
