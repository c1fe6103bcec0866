"""Search spaces as data: which depths and ratio digits a code may use, and the width ties.

Residual adds force equal widths: inside a stage every conv2 output (and the downsample)
has one width, and stage 1's output must equal the stem's. Both spaces below are tied;
they differ in how many ratio digits each stage may use.
"""

from dataclasses import dataclass

import numpy as np

from .arch import MAX_DEPTHS, RATIOS, SIZE_CODES, Arch, block_positions, format_code, parse
from .errors import CodeError, KitError


@dataclass(frozen=True)
class SearchSpace:
    name: str
    depth_ranges: tuple  # per stage (min, max) active blocks
    stem_digits: int  # stem may use digits 1..stem_digits
    stage_digits: tuple  # stage s may use digits 1..stage_digits[s] (conv1 and conv2)
    size_code: str = "1"

    # --- membership -----------------------------------------------------------------
    def validate(self, code) -> Arch:
        """Return the parsed Arch, or raise CodeError naming the first offending position."""
        # An Arch built by hand skips parse's structural checks (zero digits, extra blocks): re-read its code.
        arch = parse(code.code() if isinstance(code, Arch) else code)
        shift = -1 if isinstance(code, str) and len(code) == 51 else 0

        def fail(pos, reason):
            raise CodeError(code, pos + shift, f"{reason} (space {self.name!r})")

        if arch.size_code != self.size_code:
            fail(0, f"image-size code {arch.size_code!r} is not this space's {self.size_code!r}")
        for s, (lo, hi) in enumerate(self.depth_ranges):
            if not lo <= arch.depths[s] <= hi:
                fail(1 + s, f"stage {s + 1} depth {arch.depths[s]} is out of range {lo}-{hi}")
        if arch.stem > self.stem_digits:
            fail(5, f"stem ratio digit {arch.stem} is out of range 1-{self.stem_digits}")
        for s, stage in enumerate(arch.blocks):
            top = self.stage_digits[s]
            for b, pair in enumerate(stage):
                for which, digit in enumerate(pair):
                    if digit > top:
                        fail(block_positions(s, b)[which],
                             f"ratio digit {digit} in stage {s + 1} block {b + 1} is out of range 1-{top}")
        broken = first_broken_tie(arch)
        if broken is not None:
            fail(*broken)
        return arch

    def contains(self, code) -> bool:
        try:
            self.validate(code)
        except CodeError:
            return False
        return True

    # --- size -----------------------------------------------------------------------
    def _stem_choices(self):
        return min(self.stem_digits, self.stage_digits[0])

    def size(self) -> int:
        """Exact number of distinct codes (Python int, no overflow)."""
        total = self._stem_choices()
        for s, (lo, hi) in enumerate(self.depth_ranges):
            k = self.stage_digits[s]
            conv1 = sum(k ** d for d in range(lo, hi + 1))
            total *= conv1 * (1 if s == 0 else k)
        return total

    # --- extremes -------------------------------------------------------------------
    def max_arch(self) -> Arch:
        """The widest, deepest subnet (digit 1 = ratio 1.0 everywhere)."""
        return self._build(1, [hi for _, hi in self.depth_ranges], lambda s: 1)

    def min_arch(self) -> Arch:
        """The narrowest, shallowest subnet."""
        stem = self._stem_choices()
        return self._build(stem, [lo for lo, _ in self.depth_ranges], lambda s: self.stage_digits[s])

    def _build(self, stem, depths, digit_of_stage):
        blocks = []
        for s, depth in enumerate(depths):
            d = digit_of_stage(s)
            tied = stem if s == 0 else d
            blocks.append(tuple((d, tied) for _ in range(depth)))
        return Arch(size_code=self.size_code, stem=stem, blocks=tuple(blocks))

    # --- sampling -------------------------------------------------------------------
    def sample(self, rng, depth_uniform=False) -> Arch:
        """Draw one code with `rng` (a numpy Generator).

        depth_uniform=False draws uniformly over all codes of the space (deep stages dominate,
        since they have more codes); True draws each stage's depth uniformly first, which is how
        the 45,000 released codes are spread (about equal counts per depth).
        """
        stem = int(rng.integers(1, self._stem_choices() + 1))
        blocks = []
        for s, (lo, hi) in enumerate(self.depth_ranges):
            k = self.stage_digits[s]
            depths = np.arange(lo, hi + 1)
            if depth_uniform:
                depth = int(rng.choice(depths))
            else:
                weights = np.array([float(k) ** int(d) for d in depths])
                depth = int(rng.choice(depths, p=weights / weights.sum()))
            tied = stem if s == 0 else int(rng.integers(1, k + 1))
            conv1 = rng.integers(1, k + 1, size=depth)
            blocks.append(tuple((int(c), tied) for c in conv1))
        return Arch(size_code=self.size_code, stem=stem, blocks=tuple(blocks))

    def sample_many(self, n, seed, depth_uniform=False, unique=True):
        """`n` codes from a seeded generator; with unique=True, no code repeats."""
        rng = np.random.default_rng(seed)
        out, seen = [], set()
        limit = self.size() if unique else None
        if limit is not None and n > limit:
            raise KitError(f"asked for {n} unique codes but space {self.name!r} has only {limit}")
        while len(out) < n:
            arch = self.sample(rng, depth_uniform=depth_uniform)
            if unique:
                if arch in seen:
                    continue
                seen.add(arch)
            out.append(arch)
        return out


def first_broken_tie(arch: Arch):
    """(position, reason) of the first conv2 digit that breaks a residual width tie, or None.

    Every tied space and the supernet (which has one output width per stage) share this rule.
    """
    for s, stage in enumerate(arch.blocks):
        tied = arch.stem if s == 0 else stage[0][1]
        for b, (_, c2) in enumerate(stage):
            if c2 != tied:
                against = "the stem digit" if s == 0 else "block 1's conv2 digit"
                return (block_positions(s, b)[1],
                        f"broken width tie: stage {s + 1} block {b + 1} conv2 digit {c2} differs from "
                        f"{against} {tied} (residual adds need one width per stage, and stage 1's "
                        f"equals the stem's)")
    return None


def check_ties(arch: Arch, code=None):
    """Raise CodeError at the first broken tie; positions follow `code` as the user wrote it."""
    broken = first_broken_tie(arch)
    if broken is not None:
        code = format_code(arch) if not isinstance(code, str) else code
        shift = -1 if len(code) == 51 else 0
        raise CodeError(code, broken[0] + shift, broken[1])


_DEPTHS = tuple((2, m) for m in MAX_DEPTHS)

DOCUMENTED = SearchSpace("documented", _DEPTHS, len(RATIOS), (len(RATIOS),) * 4)
RELEASED = SearchSpace("released", _DEPTHS, 3, (3, 3, 5, 7))
SPACES = {s.name: s for s in (DOCUMENTED, RELEASED)}
assert all(s.size_code in SIZE_CODES for s in SPACES.values())


def get_space(name) -> SearchSpace:
    if isinstance(name, SearchSpace):
        return name
    try:
        return SPACES[name]
    except KeyError:
        raise KitError(f"unknown search space {name!r}: expected one of {sorted(SPACES)}") from None
