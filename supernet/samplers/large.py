"""Strategy `large`: the best of `large_pool` uniform draws by MACs (under the training spec/resolution)."""

import numpy as np

from encoding import Arch, KitError, NetSpec, costs

from . import DEFAULT_SPEC
from .uniform import UniformSampler


class LargeBiasedSampler(UniformSampler):
    """Draw `pool` codes and keep the one with the most MACs: pushes training towards big subnets,
    which are the ones a fixed budget under-trains when sampling is uniform."""

    strategy = "large"
    keys = ("large_pool",)

    def __init__(self, space="released", depth_uniform=False, pool=3, spec: NetSpec = DEFAULT_SPEC, resolution=None):
        super().__init__(space, depth_uniform)
        if int(pool) < 1:
            raise KitError(f"large-biased sampler: pool must be at least 1, got {pool}")
        self.pool = int(pool)
        self.spec = spec
        self.resolution = resolution

    @classmethod
    def from_section(cls, section, space, spec, resolution):
        return cls(space, section["depth_uniform"], section["large_pool"], spec, resolution)

    def draw(self, rng) -> Arch:
        candidates = [UniformSampler.draw(self, rng) for _ in range(self.pool)]
        _, macs = costs(candidates, self.spec, self.resolution)
        return candidates[int(np.argmax(macs))]  # first of equals: deterministic
