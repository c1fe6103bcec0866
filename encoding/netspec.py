"""The shape of the network family a code is read against: base widths, width multiplier, stem.

The same code means different channel counts under a different NetSpec (the demo's
width-scaled small-image net vs the challenge's ImageNet net), so the cost model and the
supernet both take one, and only one place turns digits into channels.
"""

from dataclasses import dataclass, field

from .arch import RATIOS, Arch, parse
from .errors import KitError

STEMS = {
    # kind: (kernel, stride, padding, max-pool after it)
    "imagenet": (7, 2, 3, True),
    "small": (3, 1, 1, False),
}


def make_divisible(v, divisor=8, min_value=None):
    """The challenge's channel rounding: nearest multiple of `divisor`, at least `divisor`,
    bumped up by one step when rounding lost more than 10%."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class NetSpec:
    stem_width: int = 64
    stage_widths: tuple = (64, 128, 256, 512)
    width_mult: float = 1.0
    stem: str = "imagenet"
    in_channels: int = 3
    num_classes: int = 1000
    divisor: int = 8
    stage_strides: tuple = field(default=(1, 2, 2, 2))

    def __post_init__(self):
        object.__setattr__(self, "stage_widths", tuple(int(w) for w in self.stage_widths))
        object.__setattr__(self, "stage_strides", tuple(int(s) for s in self.stage_strides))
        if self.stem not in STEMS:
            raise KitError(f"unknown stem {self.stem!r}: expected one of {sorted(STEMS)}")
        if len(self.stage_widths) != 4 or len(self.stage_strides) != 4:
            raise KitError("stage_widths and stage_strides need one entry per stage (4)")
        if self.width_mult <= 0:
            raise KitError(f"width_mult must be positive, got {self.width_mult}")

    @classmethod
    def from_dict(cls, d):
        """Build from a config mapping; unknown keys are an error so typos do not pass silently."""
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise KitError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def channels(self, base, digit):
        """Channels of a conv whose base width is `base` at ratio digit `digit` (1..7)."""
        if not 1 <= digit <= len(RATIOS):
            raise KitError(f"ratio digit {digit} is out of range 1-{len(RATIOS)}")
        return make_divisible(base * RATIOS[digit - 1] * self.width_mult, self.divisor)

    def width_table(self, base):
        """Channels for digits 0..7 (0 = inactive -> 0), as a list indexable by digit."""
        return [0] + [self.channels(base, d) for d in range(1, len(RATIOS) + 1)]

    def max_stem(self):
        return self.channels(self.stem_width, 1)

    def max_stage(self, stage):
        return self.channels(self.stage_widths[stage], 1)


@dataclass(frozen=True)
class Widths:
    """Concrete channel counts of one subnet under one NetSpec."""

    stem: int
    stages: tuple  # per stage: tuple of (conv1 channels, conv2 channels)

    def as_lists(self):
        return [[list(pair) for pair in stage] for stage in self.stages]


def widths(arch, spec: NetSpec = NetSpec()) -> Widths:
    arch = parse(arch) if not isinstance(arch, Arch) else arch
    stages = tuple(
        tuple((spec.channels(base, c1), spec.channels(base, c2)) for c1, c2 in stage)
        for stage, base in zip(arch.blocks, spec.stage_widths, strict=True)
    )
    return Widths(stem=spec.channels(spec.stem_width, arch.stem), stages=stages)


def net_spec(cfg) -> NetSpec:
    """The NetSpec of a config's `model:` section."""
    from infra.config import get

    return NetSpec.from_dict(get(cfg, "model"))
