"""The 52-character code: parsing, formatting, round trips and the position named by every error."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encoding import DOCUMENTED, RELEASED, Arch, CodeError, KitError, format_code, parse, read_arch_list

# A released code (the challenge list's arch1), laid out by position:
#   [0] '1' size   [1:5] '2522' depths   [5] '3' stem
#   stage 1 [6:16]  33 13 00 00 00        stage 2 [16:26] 22 32 12 12 22
#   stage 3 [26:42] 53 13 00 00 00 00 00 00   stage 4 [42:52] 65 15 00 00 00
GOOD = "1252233313000000223212122253130000000000006515000000"
GOOD_ARCH = Arch(
    size_code="1",
    stem=3,
    blocks=(
        ((3, 3), (1, 3)),
        ((2, 2), (3, 2), (1, 2), (1, 2), (2, 2)),
        ((5, 3), (1, 3)),
        ((6, 5), (1, 5)),
    ),
)
SPACES_BOTH = pytest.mark.parametrize("space", [RELEASED, DOCUMENTED], ids=lambda s: s.name)


def put(code, pos, ch):
    """`code` with character `pos` replaced."""
    return code[:pos] + ch + code[pos + 1:]


def expect_error(fn, code, position, *words):
    with pytest.raises(CodeError) as info:
        fn(code)
    err = info.value
    assert err.position == position
    assert err.code == code
    message = str(err)
    assert f"at position {position}:" in message
    for word in words:
        assert word in message
    return err


# --- parse / format -------------------------------------------------------------------------


def test_parse_reads_every_field():
    arch = parse(GOOD)
    assert arch == GOOD_ARCH
    assert arch.depths == (2, 5, 2, 2)
    assert arch.resolution == 224
    assert arch.code() == GOOD == str(arch) == format_code(arch)


def test_short_form_parses_to_the_same_arch_and_formats_long():
    assert parse(GOOD[1:]) == GOOD_ARCH
    assert format_code(parse(GOOD[1:])) == GOOD


def test_format_pads_unused_slots_with_zeros():
    arch = Arch("1", 7, (((7, 7),) * 2, ((1, 4),) * 2, ((2, 6),) * 2, ((3, 5),) * 2))
    assert format_code(arch) == "1222277777000000141400000026260000000000003535000000"


def test_errors_are_kit_errors():
    assert issubclass(CodeError, KitError) and issubclass(KitError, ValueError)


# --- one test per structural error ----------------------------------------------------------


def test_wrong_length_short():
    expect_error(parse, GOOD[:50], 50, "wrong length 50", "52", "51")


def test_wrong_length_long():
    # The position is the first character past the 52 the code may have.
    expect_error(parse, GOOD + "0", 52, "wrong length 53")


def test_empty_code():
    expect_error(parse, "", 0, "wrong length 0")


def test_not_a_string():
    with pytest.raises(CodeError, match="expected a string, got int") as info:
        parse(1252233313)
    assert info.value.position is None


@pytest.mark.parametrize("pos", [0, 5, 20, 51])
def test_non_digit(pos):
    expect_error(parse, put(GOOD, pos, "x"), pos, "non-digit character 'x'")


def test_non_digit_short_form_reports_users_position():
    expect_error(parse, put(GOOD[1:], 19, "x"), 19, "non-digit")


def test_unicode_digit_is_not_a_digit():
    # '٣' (Arabic-indic three) satisfies str.isdigit() but is not a code digit.
    expect_error(parse, put(GOOD, 9, "\u0663"), 9, "non-digit")


def test_unknown_size_code():
    expect_error(parse, put(GOOD, 0, "2"), 0, "unknown image-size code '2'")


@pytest.mark.parametrize("digit", ["0", "8", "9"])
def test_stem_digit_out_of_structural_range(digit):
    expect_error(parse, put(GOOD, 5, digit), 5, "stem ratio digit")


@pytest.mark.parametrize(("pos", "depth", "top"), [(1, "6", 5), (1, "0", 5), (3, "9", 8), (4, "0", 5)])
def test_depth_out_of_structural_range(pos, depth, top):
    expect_error(parse, put(GOOD, pos, depth), pos, f"stage {pos} depth {depth} is out of range 1-{top}")


def test_depth_out_of_range_short_form():
    expect_error(parse, put(GOOD, 3, "9")[1:], 2, "stage 3 depth 9")


def test_zero_inside_active_block():
    # stage 2 block 2 conv1 (position 18) zeroed; stage 2 has 5 active blocks
    expect_error(parse, put(GOOD, 18, "0"), 18, "zero ratio digit inside active block 2 of stage 2")


def test_zero_conv2_inside_active_block():
    expect_error(parse, put(GOOD, 29, "0"), 29, "zero ratio digit inside active block 2 of stage 3")


def test_nonzero_in_padding():
    # stage 1 has 2 active blocks, so position 10 (block 3 conv1) must be 0
    expect_error(parse, put(GOOD, 10, "1"), 10, "non-zero digit 1 in padding", "stage 1")


def test_nonzero_in_padding_short_form():
    expect_error(parse, put(GOOD, 51, "4")[1:], 50, "padding", "stage 4")


def test_depth_shorter_than_blocks_written():
    # depth 1 in stage 1 turns block 2's digits (positions 8, 9) into padding
    expect_error(parse, put(GOOD, 1, "1"), 8, "non-zero digit 1 in padding after the 1 active blocks of stage 1")


def test_depth_longer_than_blocks_written():
    # depth 3 in stage 1 makes block 3 (positions 10, 11, still '00') active
    expect_error(parse, put(GOOD, 1, "3"), 10, "zero ratio digit inside active block 3 of stage 1")


@pytest.mark.parametrize("digit", ["8", "9"])
def test_ratio_digit_above_seven_rejected_by_parse(digit):
    expect_error(parse, put(GOOD, 44, digit), 44, f"ratio digit {digit} in stage 4 block 2 is out of range 1-7")


# --- the challenge's own list ----------------------------------------------------------------


def test_every_challenge_code_parses_and_round_trips(challenge_list_path):
    entries = read_arch_list(challenge_list_path)
    assert len(entries) == 45000
    assert [e.id for e in entries[:3]] == ["arch1", "arch2", "arch3"]
    assert entries[-1].id == "arch45000"
    assert entries[0].code == GOOD
    for e in entries:
        arch = parse(e.code)
        assert format_code(arch) == e.code
        assert parse(e.code[1:]) == arch


# --- fuzzing ------------------------------------------------------------------------------------


def _only_code_errors(code):
    for fn in (parse, RELEASED.validate, DOCUMENTED.validate):
        try:
            arch = fn(code)
        except CodeError as err:
            assert err.position is None or 0 <= err.position <= len(code)
        else:
            assert len(code) in (51, 52)
            assert format_code(arch) == code.rjust(52, "1")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_code_error(code):
    _only_code_errors(code)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=51, max_size=52))
def test_digit_strings_raise_only_code_error(code):
    _only_code_errors(code)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(), st.none(), st.floats(), st.binary()), max_size=3))
def test_non_string_values_raise_code_error(values):
    for value in (values, tuple(values), *values):
        with pytest.raises(CodeError):
            parse(value)


# Block positions (52-char form) whose single-digit change is reported at that very position.
# Block 1's conv2 in stages 2-4 is the tie reference, so breaking it is reported at block 2's conv2.
_TIE_REFERENCES = {17, 27, 43}
_BLOCK_POSITIONS = [p for p in range(6, 52) if p not in _TIE_REFERENCES]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_BLOCK_POSITIONS), st.sampled_from("0123456789"), st.booleans(), st.booleans())
def test_single_digit_change_is_reported_where_it_was_made(pos, digit, short, released):
    space = RELEASED if released else DOCUMENTED
    code = put(GOOD, pos, digit)
    if short:
        code, pos = code[1:], pos - 1
    try:
        arch = space.validate(code)
    except CodeError as err:
        assert err.position == pos
    else:
        assert format_code(arch)[-51:] == code[-51:]
