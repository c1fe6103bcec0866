"""A candidate as integer genes that always decode to a valid code of a search space.

Genes (31, in this order): the four stage depths, the stem digit, the tied conv2 digit of stages
2-4 (stage 1's conv2 digit is the stem's: residual adds tie the widths), then one conv1 digit per
block slot (5 + 5 + 8 + 5). Each gene has its own range from the space, so any integer vector
within the bounds is a valid code: the ties hold by construction and the slots past a stage's
depth are written as `00`. Those inactive slot genes are kept (hidden) instead of zeroed, so a
stage that grows again by mutation or crossover gets digits that evolved, not a fixed default.
Two gene vectors that differ only in hidden genes are the same code (duplicates are by code).

Cheaper moves (`shrink_moves`): one block fewer in a stage, or one digit narrower; every cost the
search uses (MACs, params, the non-negative latency model) is non-increasing under both, so the
space's `min_arch` is the cheapest code under every cost and a repair that only shrinks ends there.
"""

import numpy as np

from encoding import MAX_DEPTHS, Arch, format_code, get_space

N_STAGES = len(MAX_DEPTHS)
DEPTH0, STEM, TIED0 = 0, N_STAGES, N_STAGES + 1  # TIED0: stage 2's tied digit
SLOT0 = TIED0 + N_STAGES - 1
N_VAR = SLOT0 + sum(MAX_DEPTHS)


def _slot_offsets():
    out, pos = [], SLOT0
    for depth in MAX_DEPTHS:
        out.append(pos)
        pos += depth
    return tuple(out)


SLOT_OFFSETS = _slot_offsets()


class Genome:
    """Gene bounds of one space, and the map between gene vectors and codes."""

    def __init__(self, space):
        self.space = get_space(space)
        s = self.space
        lo, hi = np.ones(N_VAR, dtype=np.int64), np.ones(N_VAR, dtype=np.int64)
        for st, (dlo, dhi) in enumerate(s.depth_ranges):
            lo[DEPTH0 + st], hi[DEPTH0 + st] = dlo, dhi
            first = SLOT_OFFSETS[st]
            hi[first:first + MAX_DEPTHS[st]] = s.stage_digits[st]
            if st > 0:
                hi[TIED0 + st - 1] = s.stage_digits[st]
        hi[STEM] = min(s.stem_digits, s.stage_digits[0])
        self.lower, self.upper = lo, hi
        self.n_var = N_VAR

    # --- decoding ---------------------------------------------------------------------
    def decode(self, x) -> Arch:
        x = np.asarray(x, dtype=np.int64)
        stem = int(x[STEM])
        blocks = []
        for st in range(N_STAGES):
            depth = int(x[DEPTH0 + st])
            tied = stem if st == 0 else int(x[TIED0 + st - 1])
            first = SLOT_OFFSETS[st]
            blocks.append(tuple((int(x[first + b]), tied) for b in range(depth)))
        return Arch(size_code=self.space.size_code, stem=stem, blocks=tuple(blocks))

    def codes(self, X):
        """The 52-character codes of the rows of X."""
        return [format_code(self.decode(x)) for x in np.atleast_2d(X)]

    def encode(self, arch, hidden=None) -> np.ndarray:
        """Genes of a code of the space (validated); inactive slots take `hidden`'s genes, else 1."""
        arch = self.space.validate(arch)
        x = np.ones(N_VAR, dtype=np.int64) if hidden is None else np.array(hidden, dtype=np.int64)
        x[STEM] = arch.stem
        for st, stage in enumerate(arch.blocks):
            x[DEPTH0 + st] = len(stage)
            if st > 0:
                x[TIED0 + st - 1] = stage[0][1]
            for b, (c1, _) in enumerate(stage):
                x[SLOT_OFFSETS[st] + b] = c1
        return x

    def within_bounds(self, X):
        X = np.atleast_2d(X)
        return ((X >= self.lower) & (X <= self.upper)).all(axis=1)

    def clip(self, X):
        return np.clip(X, self.lower, self.upper)

    # --- random genes -------------------------------------------------------------------
    def sample(self, n, rng, depth_uniform=True):
        """`n` gene vectors: the code drawn as `SearchSpace.sample` draws it, hidden genes uniform."""
        X = rng.integers(self.lower, self.upper + 1, size=(n, N_VAR))
        for i in range(n):
            X[i] = self.encode(self.space.sample(rng, depth_uniform=depth_uniform), hidden=X[i])
        return X

    def active_slots(self, x):
        """Gene indices of the conv1 digits of active blocks."""
        return [SLOT_OFFSETS[st] + b for st in range(N_STAGES) for b in range(int(x[DEPTH0 + st]))]

    def shrink_moves(self, x):
        """[(gene, step)]: each a move to a cheaper or equal code (one block fewer, one digit narrower)."""
        moves = [(DEPTH0 + st, -1) for st in range(N_STAGES) if x[DEPTH0 + st] > self.lower[DEPTH0 + st]]
        width_genes = [STEM] + [TIED0 + st for st in range(N_STAGES - 1)] + self.active_slots(x)
        moves += [(g, +1) for g in width_genes if x[g] < self.upper[g]]
        return moves

    def min_genes(self):
        return self.encode(self.space.min_arch())
