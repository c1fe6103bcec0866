"""The 52-character ResNet48 subnet code and the immutable architecture value it describes.

Layout (0-based positions in the 52-character form):
  [0]      image-size code ('1' = 224 px)
  [1:5]    active blocks per stage
  [5]      stem ratio digit
  [6:16]   stage 1, 5 blocks x (conv1 digit, conv2 digit)
  [16:26]  stage 2, 5 blocks
  [26:42]  stage 3, 8 blocks
  [42:52]  stage 4, 5 blocks
Ratio digits 1..7 select RATIOS[digit - 1]; inactive block slots are '00'.
The challenge README's 51-digit form is the same string without the leading size code.
"""

from dataclasses import dataclass

import numpy as np

from .errors import CodeError

RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)
MAX_DEPTHS = (5, 5, 8, 5)
SIZE_CODES = {"1": 224}
CODE_LEN = 52
SHORT_CODE_LEN = CODE_LEN - 1
HEADER_LEN = 6  # size code, four depths, stem digit


def _stage_offsets():
    offsets, pos = [], HEADER_LEN
    for depth in MAX_DEPTHS:
        offsets.append(pos)
        pos += 2 * depth
    assert pos == CODE_LEN
    return tuple(offsets)


STAGE_OFFSETS = _stage_offsets()


def block_positions(stage, block):
    """Positions (conv1 digit, conv2 digit) of one block slot in the 52-character code."""
    p = STAGE_OFFSETS[stage] + 2 * block
    return p, p + 1


@dataclass(frozen=True)
class Arch:
    """One subnet: what the code says, as digits, independent of any width table."""

    size_code: str
    stem: int
    blocks: tuple  # per stage: tuple of (conv1 digit, conv2 digit) for the active blocks

    @property
    def depths(self):
        return tuple(len(stage) for stage in self.blocks)

    @property
    def resolution(self):
        return SIZE_CODES[self.size_code]

    def code(self):
        return format_code(self)

    def __str__(self):
        return format_code(self)


def parse(code) -> Arch:
    """Parse a 52-character code, or the 51-character form without the size code.

    Checks the structure only (length, digits, size code, depths within the stage's slots,
    non-zero digits in active blocks, zeros in padding). Which digits and depths are allowed,
    and the residual width ties, belong to a search space: see `space.validate`.
    """
    if isinstance(code, Arch):
        return code
    if not isinstance(code, str):
        raise CodeError(code, None, f"expected a string, got {type(code).__name__}")
    if len(code) == CODE_LEN:
        full, shift = code, 0
    elif len(code) == SHORT_CODE_LEN:
        full, shift = "1" + code, -1  # positions reported in the user's own indexing
    else:
        raise CodeError(code, min(len(code), CODE_LEN), f"wrong length {len(code)}: expected {CODE_LEN} characters "
                                         f"(or {SHORT_CODE_LEN} without the leading size code)")

    def fail(pos, reason):
        raise CodeError(code, pos + shift, reason)

    for i, ch in enumerate(full):
        if ch not in "0123456789":
            fail(i, f"non-digit character {ch!r}")
    if full[0] not in SIZE_CODES:
        fail(0, f"unknown image-size code {full[0]!r} (known: {', '.join(sorted(SIZE_CODES))})")
    stem = int(full[5])
    if stem == 0:
        fail(5, "stem ratio digit is 0 (must be 1-7)")
    if stem > len(RATIOS):
        fail(5, f"stem ratio digit {stem} is out of range 1-{len(RATIOS)}")
    stages = []
    for s, max_depth in enumerate(MAX_DEPTHS):
        depth = int(full[1 + s])
        if not 1 <= depth <= max_depth:
            fail(1 + s, f"stage {s + 1} depth {depth} is out of range 1-{max_depth}")
        blocks = []
        for b in range(max_depth):
            for p in block_positions(s, b):
                d = int(full[p])
                if b < depth and d == 0:
                    fail(p, f"zero ratio digit inside active block {b + 1} of stage {s + 1}")
                if b < depth and d > len(RATIOS):
                    fail(p, f"ratio digit {d} in stage {s + 1} block {b + 1} is out of range 1-{len(RATIOS)}")
                if b >= depth and d != 0:
                    fail(p, f"non-zero digit {d} in padding after the {depth} active blocks of stage {s + 1}")
            if b < depth:
                p1, p2 = block_positions(s, b)
                blocks.append((int(full[p1]), int(full[p2])))
        stages.append(tuple(blocks))
    return Arch(size_code=full[0], stem=stem, blocks=tuple(stages))


def format_code(arch: Arch) -> str:
    """Write the 52-character form (always with the size code)."""
    chars = [arch.size_code] + [str(d) for d in arch.depths] + [str(arch.stem)]
    for stage, max_depth in zip(arch.blocks, MAX_DEPTHS, strict=True):
        for c1, c2 in stage:
            chars.append(f"{c1}{c2}")
        chars.append("00" * (max_depth - len(stage)))
    return "".join(chars)


def _structurally_valid_rows(digits):
    """Row mask of digit rows that `parse` would accept (checked in bulk, no messages)."""
    ok = (digits >= 0).all(axis=1) & (digits <= 9).all(axis=1)
    ok &= np.isin(digits[:, 0], [int(c) for c in SIZE_CODES])
    ok &= (digits[:, 5] >= 1) & (digits[:, 5] <= len(RATIOS))
    for s, max_depth in enumerate(MAX_DEPTHS):
        depth = digits[:, 1 + s]
        ok &= (depth >= 1) & (depth <= max_depth)
        slots = digits[:, STAGE_OFFSETS[s]:STAGE_OFFSETS[s] + 2 * max_depth]
        active = np.repeat(np.arange(max_depth), 2)[None, :] < depth[:, None]
        ok &= np.where(active, (slots >= 1) & (slots <= len(RATIOS)), slots == 0).all(axis=1)
    return ok


def digit_matrix(archs) -> np.ndarray:
    """Stack many archs as an (N, 52) int array of their digits, for vectorised costing.

    Well-formed 52-character strings are checked in bulk; anything else (Arch values, the
    51-character form, bad codes) goes through `parse`, which raises the precise error.
    """
    archs = list(archs)
    if not archs:
        return np.zeros((0, CODE_LEN), dtype=np.int64)
    fast = all(isinstance(a, str) and len(a) == CODE_LEN and a.isascii() for a in archs)
    if fast:
        raw = np.frombuffer("".join(archs).encode("ascii"), dtype=np.uint8)
        digits = raw.reshape(len(archs), CODE_LEN).astype(np.int64) - ord("0")
        bad = np.flatnonzero(~_structurally_valid_rows(digits))
        if len(bad) == 0:
            return digits
        parse(archs[bad[0]])  # raises the precise CodeError
    codes = [format_code(parse(a)) for a in archs]
    raw = np.frombuffer("".join(codes).encode("ascii"), dtype=np.uint8)
    return (raw.reshape(len(codes), CODE_LEN) - ord("0")).astype(np.int64)
