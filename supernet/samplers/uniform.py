"""Strategy `uniform`: uniform over the codes of a space (or uniform depth per stage first); with
`progressive`, once-for-all's progressive shrinking over it."""

from encoding import Arch, KitError, get_space

from . import Sampler


class UniformSampler(Sampler):
    """Uniform over the codes of a space (or, with depth_uniform, uniform depth per stage first)."""

    strategy = "uniform"

    def __init__(self, space="released", depth_uniform=False):
        self.space = get_space(space)
        self.depth_uniform = bool(depth_uniform)

    @classmethod
    def from_section(cls, section, space, spec, resolution):
        progressive = section["progressive"]
        if progressive:
            return ProgressiveSampler(space, section["depth_uniform"], progressive.get("depth_epochs") or (),
                                      progressive.get("width_epochs") or ())
        return cls(space, section["depth_uniform"])

    def draw(self, rng) -> Arch:
        return self.space.sample(rng, depth_uniform=self.depth_uniform)

    def largest(self) -> Arch:
        return self.space.max_arch()

    def smallest(self) -> Arch:
        return self.space.min_arch()


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
