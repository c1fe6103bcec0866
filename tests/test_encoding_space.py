"""Search spaces: validation errors per space, exact sizes, sampling, extremes, and the released list."""

import itertools
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encoding import (
    DOCUMENTED,
    MAX_DEPTHS,
    RELEASED,
    SPACES,
    Arch,
    CodeError,
    KitError,
    SearchSpace,
    costs,
    format_code,
    get_space,
    parse,
    read_arch_list,
)

# The challenge list's arch1 (see test_encoding_code.py for its layout): stem 3, depths 2,5,2,2.
GOOD = "1252233313000000223212122253130000000000006515000000"
SPACES_BOTH = pytest.mark.parametrize("space", [RELEASED, DOCUMENTED], ids=lambda s: s.name)


def put(code, pos, ch):
    return code[:pos] + ch + code[pos + 1:]


def expect_error(space, code, position, *words):
    with pytest.raises(CodeError) as info:
        space.validate(code)
    err = info.value
    assert err.position == position
    message = str(err)
    assert f"at position {position}:" in message
    for word in words:
        assert word in message
    return err


# --- validation errors that depend on the space -------------------------------------------------


@SPACES_BOTH
def test_good_code_validates(space):
    arch = space.validate(GOOD)
    assert arch == parse(GOOD)
    assert space.validate(GOOD[1:]) == arch
    assert space.contains(GOOD) and space.contains(arch)


@SPACES_BOTH
def test_depth_one_is_outside_both_spaces(space):
    # stage 2 cut to one block: parse accepts it (the slot allows 1-5), the spaces need at least 2
    code = put(GOOD, 2, "1")[:18] + "0" * 8 + GOOD[26:]
    assert parse(code).depths == (2, 1, 2, 2)
    expect_error(space, code, 2, "stage 2 depth 1 is out of range 2-5", f"space {space.name!r}")
    expect_error(space, code[1:], 1, "stage 2 depth 1")
    assert not space.contains(code)


@SPACES_BOTH
def test_structural_errors_come_through_validate(space):
    expect_error(space, put(GOOD, 10, "1"), 10, "padding")
    expect_error(space, put(GOOD, 44, "8"), 44, "ratio digit 8", "out of range 1-7")
    expect_error(space, put(GOOD, 44, "8")[1:], 43, "ratio digit 8")


def test_digit_four_in_stage_one_is_outside_released():
    code = put(GOOD, 8, "4")  # stage 1 block 2 conv1
    assert DOCUMENTED.contains(code)
    expect_error(RELEASED, code, 8, "ratio digit 4 in stage 1 block 2 is out of range 1-3", "'released'")
    expect_error(RELEASED, code[1:], 7, "ratio digit 4")


def test_digit_six_in_stage_three_is_outside_released():
    code = put(GOOD, 28, "6")  # stage 3 block 2 conv1; stage 3 allows 1-5
    assert DOCUMENTED.contains(code)
    expect_error(RELEASED, code, 28, "ratio digit 6 in stage 3 block 2 is out of range 1-5")


def test_stem_digit_four_is_outside_released():
    # stem and every stage-1 conv2 moved together to 4, so the tie holds and only the range fails
    code = GOOD[:5] + "4" + "34140000002232121222" + GOOD[26:]
    assert DOCUMENTED.contains(code)
    expect_error(RELEASED, code, 5, "stem ratio digit 4 is out of range 1-3")


@SPACES_BOTH
def test_broken_tie_inside_stage(space):
    code = put(GOOD, 21, "1")  # stage 2 block 3 conv2: 1 where block 1's conv2 is 2
    expect_error(space, code, 21, "broken width tie", "stage 2 block 3 conv2 digit 1", "block 1's conv2 digit 2")
    expect_error(space, code[1:], 20, "broken width tie")


@SPACES_BOTH
def test_broken_tie_stage_one_against_stem(space):
    code = put(GOOD, 7, "2")  # stage 1 block 1 conv2 is 2, stem is 3
    expect_error(space, code, 7, "broken width tie", "stage 1 block 1", "the stem digit 3")
    # changing the stem instead breaks the tie at the same place
    expect_error(space, put(GOOD, 5, "1"), 7, "differs from the stem digit 1")


@SPACES_BOTH
def test_hand_built_arch_is_checked_structurally(space):
    zeros = Arch("1", 0, (((0, 0),) * 2, ((1, 1),) * 2, ((1, 1),) * 2, ((1, 1),) * 2))
    expect_error(space, zeros, 5, "stem ratio digit is 0")
    shallow = Arch("1", 1, (((1, 1),), ((1, 1),) * 2, ((1, 1),) * 2, ((1, 1),) * 2))
    expect_error(space, shallow, 1, "stage 1 depth 1")
    assert not space.contains(zeros) and not space.contains(shallow)


def test_space_errors_name_the_space():
    with pytest.raises(CodeError, match=r"\(space 'released'\)$"):
        RELEASED.validate(put(GOOD, 8, "4"))


# --- sizes ----------------------------------------------------------------------------------------


def test_closed_form_sizes_of_real_spaces():
    # documented: stem 7 choices (stage 1's conv2 follows it); per stage sum over depths d of 7**d conv1 choices,
    # times 7 for the shared conv2 digit in stages 2-4.
    d5 = 7**2 + 7**3 + 7**4 + 7**5  # 19,600
    d8 = 7**2 + 7**3 + 7**4 + 7**5 + 7**6 + 7**7 + 7**8  # 6,725,593
    assert DOCUMENTED.size() == 7 * d5 * (d5 * 7) * (d8 * 7) * (d5 * 7)
    # released: stem 1-3; stages 1-2 digits 1-3, stage 3 1-5, stage 4 1-7
    r1 = 3**2 + 3**3 + 3**4 + 3**5  # 360
    r3 = 5**2 + 5**3 + 5**4 + 5**5 + 5**6 + 5**7 + 5**8  # 488,275
    assert RELEASED.size() == 3 * r1 * (r1 * 3) * (r3 * 5) * (d5 * 7)


def test_readme_table_states_the_sizes(repo_root):
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    for space in (DOCUMENTED, RELEASED):
        row = re.search(rf"^\| `{space.name}`.*\| ([\d,]+) \|$", readme, re.M)
        assert row, f"README has no table row for {space.name}"
        assert int(row.group(1).replace(",", "")) == space.size()


def _enumerate(stems, depth_choices, digits):
    """Every structurally valid code with the given stems, per-stage depths and digits 1..digits, ties not
    imposed: the brute-force universe a shrunk space is counted in."""
    per_stage = []
    for s, depths in enumerate(depth_choices):
        per_stage.append([
            (depth, "".join(map(str, ds)) + "00" * (MAX_DEPTHS[s] - depth))
            for depth in depths
            for ds in itertools.product(range(1, digits + 1), repeat=2 * depth)
        ])
    for stem in stems:
        for combo in itertools.product(*per_stage):
            yield "1" + "".join(str(depth) for depth, _ in combo) + str(stem) + "".join(slot for _, slot in combo)


TINY_SPACES = [
    # (space, stems tried, depths tried per stage, digits tried): the tried ranges cover and exceed the space's
    (SearchSpace("tiny-a", ((1, 2), (2, 2), (1, 1), (1, 1)), 1, (2, 1, 2, 2)), (1, 2), ((1, 2), (1, 2), (1,), (1,)), 2),
    (SearchSpace("tiny-b", ((1, 1), (1, 1), (1, 2), (2, 2)), 2, (2, 2, 1, 2)), (1, 2, 3), ((1,), (1,), (1, 2), (1, 2)),
     2),
    (SearchSpace("tiny-c", ((1, 1), (1, 1), (1, 1), (1, 1)), 3, (2, 3, 1, 3)), (1, 2, 3, 4), ((1,),) * 4, 3),
]


@pytest.mark.parametrize(("space", "stems", "depths", "digits"), TINY_SPACES, ids=["tiny-a", "tiny-b", "tiny-c"])
def test_size_matches_brute_force(space, stems, depths, digits):
    universe = list(_enumerate(stems, depths, digits))
    assert len(set(universe)) == len(universe) and all(parse(c) for c in universe[::97])
    valid = {code for code in universe if space.contains(code)}
    assert 0 < len(valid) == space.size()
    # the whole space drawn without repeats is exactly the enumerated set, and asking for more is an error
    drawn = space.sample_many(space.size(), seed=0, depth_uniform=True)
    assert {a.code() for a in drawn} == valid
    with pytest.raises(ValueError, match=f"only {space.size()}"):
        space.sample_many(space.size() + 1, seed=0)


def test_brute_force_universe_size():
    # guard on _enumerate itself: tiny-a's universe is 2 stems x (2**2 + 2**4) x (2**2 + 2**4) x 2**2 x 2**2
    assert len(list(_enumerate(*TINY_SPACES[0][1:]))) == 2 * 20 * 20 * 4 * 4


# --- extremes -----------------------------------------------------------------------------------


def test_min_and_max_codes():
    assert RELEASED.max_arch().code() == "1558511111111111111111111111111111111111111111111111"
    assert DOCUMENTED.max_arch() == RELEASED.max_arch()
    assert RELEASED.min_arch().code() == "1222233333000000333300000055550000000000007777000000"
    assert DOCUMENTED.min_arch().code() == "1222277777000000777700000077770000000000007777000000"


@SPACES_BOTH
def test_extremes_bound_the_samples(space):
    lo, hi = space.min_arch(), space.max_arch()
    assert space.contains(lo) and space.contains(hi)
    samples = space.sample_many(500, seed=11) + space.sample_many(500, seed=12, depth_uniform=True)
    p, m = costs([lo, hi] + samples)
    assert m[0] < m[2:].min() and m[1] > m[2:].max()
    assert p[0] < p[2:].min() and p[1] > p[2:].max()


# --- sampling -----------------------------------------------------------------------------------


@SPACES_BOTH
@pytest.mark.parametrize("depth_uniform", [False, True])
def test_sampling_is_seeded_and_in_space(space, depth_uniform):
    a = space.sample_many(400, seed=5, depth_uniform=depth_uniform)
    b = space.sample_many(400, seed=5, depth_uniform=depth_uniform)
    c = space.sample_many(400, seed=6, depth_uniform=depth_uniform)
    assert a == b and a != c
    assert len(set(a)) == 400
    for arch in a:
        assert space.validate(arch.code()) == arch


def test_sample_single_draws_follow_the_generator():
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    assert [RELEASED.sample(r1) for _ in range(20)] == [RELEASED.sample(r2) for _ in range(20)]


def test_sample_many_with_repeats_allowed():
    tiny = TINY_SPACES[0][0]  # 96 codes: 200 draws must repeat
    drawn = tiny.sample_many(200, seed=1, unique=False)
    assert len(drawn) == 200 and len(set(drawn)) <= tiny.size() < 200


def _within(count, n, p):
    """Seeded, so deterministic; still, allow 5 standard deviations (plus 5 counts) before calling it wrong."""
    return abs(count - n * p) <= 5 * (n * p * (1 - p)) ** 0.5 + 5


N_DRAWS = 3000


def test_depth_uniform_spreads_depths_evenly():
    archs = RELEASED.sample_many(N_DRAWS, seed=21, depth_uniform=True)
    for s, (lo, hi) in enumerate(RELEASED.depth_ranges):
        counts = Counter(a.depths[s] for a in archs)
        assert set(counts) == set(range(lo, hi + 1))
        for d in range(lo, hi + 1):
            assert _within(counts[d], N_DRAWS, 1 / (hi - lo + 1)), (s, d, counts)


def test_code_uniform_depths_follow_code_counts():
    archs = RELEASED.sample_many(N_DRAWS, seed=22, depth_uniform=False)
    for s, (lo, hi) in enumerate(RELEASED.depth_ranges):
        k = RELEASED.stage_digits[s]
        weights = {d: k**d for d in range(lo, hi + 1)}  # conv1 choices at depth d; conv2 is one shared digit
        total = sum(weights.values())
        counts = Counter(a.depths[s] for a in archs)
        for d, w in weights.items():
            assert _within(counts[d], N_DRAWS, w / total), (s, d, counts)
    # e.g. stage 1 (digits 1-3): depth 5 has 243 / 360 of the codes
    assert _within(Counter(a.depths[0] for a in archs)[5], N_DRAWS, 243 / 360)


def test_digits_are_uniform_within_a_stage():
    archs = RELEASED.sample_many(N_DRAWS, seed=23, depth_uniform=True)
    stems = Counter(a.stem for a in archs)
    for digit in (1, 2, 3):
        assert _within(stems[digit], N_DRAWS, 1 / 3)
    conv1 = Counter(c1 for a in archs for c1, _ in a.blocks[3])
    n = sum(conv1.values())
    assert set(conv1) == set(range(1, 8))
    for digit in range(1, 8):
        assert _within(conv1[digit], n, 1 / 7)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), documented=st.booleans(), depth_uniform=st.booleans())
def test_any_seed_samples_validate_and_round_trip(seed, documented, depth_uniform):
    space = DOCUMENTED if documented else RELEASED
    for arch in space.sample_many(5, seed=seed, depth_uniform=depth_uniform):
        code = format_code(arch)
        assert space.validate(code) == arch
        assert parse(code[1:]) == arch and format_code(parse(code)) == code


# --- lookup -------------------------------------------------------------------------------------


def test_get_space():
    assert get_space("released") is RELEASED and get_space("documented") is DOCUMENTED
    assert get_space(RELEASED) is RELEASED
    assert set(SPACES) == {"released", "documented"}
    with pytest.raises(ValueError, match=r"unknown search space 'full': expected one of \['documented', 'released'\]"):
        get_space("full")


# --- the released list ------------------------------------------------------------------------


def test_challenge_list_fits_released_and_documented(challenge_list_path):
    entries = read_arch_list(challenge_list_path)
    assert len(entries) == 45000
    archs = []
    for e in entries:
        arch = RELEASED.validate(e.code)
        assert DOCUMENTED.validate(e.code) == arch  # none validates as outside documented
        archs.append(arch)
    assert len(set(archs)) == 45000
    # released is tight: every bound of the space is reached by some code in the list
    assert max(a.stem for a in archs) == RELEASED.stem_digits
    for s, (lo, hi) in enumerate(RELEASED.depth_ranges):
        assert {a.depths[s] for a in archs} == set(range(lo, hi + 1))
        assert max(max(pair) for a in archs for pair in a.blocks[s]) == RELEASED.stage_digits[s]


def test_space_errors_are_kit_errors():
    with pytest.raises(KitError, match="unknown search space 'tiny'"):
        get_space("tiny")
    small = SearchSpace("one", ((2, 2),) * 4, 1, (1, 1, 1, 1))
    assert small.size() == 1
    with pytest.raises(KitError, match="asked for 2 unique codes but space 'one' has only 1"):
        small.sample_many(2, seed=0)
