"""Strategy `list`: uniform over the codes of an architecture list (e.g. the challenge's 45,000); with
`depth_ranges`, over the list's codes of a few-shot group."""

import numpy as np

from encoding import Arch, ArchListError, KitError, NetSpec, costs, get_space, read_arch_list

from . import DEFAULT_SPEC, Sampler, restricted_space


class ListSampler(Sampler):
    """Uniform over the codes of an architecture list (e.g. the challenge's 45,000); with
    `depth_ranges` (a few-shot group), over the list's codes whose stage depths lie within them."""

    strategy = "list"
    keys = ("arch_list",)

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

    @classmethod
    def from_section(cls, section, space, spec, resolution):
        if not section["arch_list"]:
            raise KitError("sampler strategy 'list' needs supernet.sampler.arch_list (a challenge-format JSON)")
        return cls(section["arch_list"], space, spec, resolution, section["depth_ranges"])

    def draw(self, rng) -> Arch:
        return self.archs[int(rng.integers(len(self.archs)))]

    def largest(self) -> Arch:
        """By MACs among the list's codes, so a sandwich over a list stays inside the list."""
        return self._largest

    def smallest(self) -> Arch:
        return self._smallest
