"""Digits to channels (make_divisible, NetSpec, widths) and the params/MACs model, against hand arithmetic."""

import numpy as np
import pytest

from encoding import (
    DOCUMENTED,
    RATIOS,
    RELEASED,
    CodeError,
    KitError,
    NetSpec,
    Widths,
    costs,
    macs_of,
    make_divisible,
    params_of,
    parse,
    read_arch_list,
    widths,
)
from encoding.cost import spatial_sizes

# --- widths ---------------------------------------------------------------------------------

# make_divisible(base * ratio, 8) for ratios 1.0 .95 .9 .85 .8 .75 .7, worked by hand:
# nearest multiple of 8 = int(v + 4) // 8 * 8, at least 8, plus 8 when that is below 0.9 * v.
HAND_TABLE = {
    # 64: 64 | 60.8 -> 64.8 -> 64 | 57.6 -> 61.6 -> 56 | 54.4 -> 58.4 -> 56 | 51.2 -> 55.2 -> 48 | 48 -> 52 -> 48
    #     | 44.8 -> 48.8 -> 48          (no bump: 56 >= 51.84, 56 >= 48.96, 48 >= 46.08, 48 >= 40.32)
    64: [64, 64, 56, 56, 48, 48, 48],
    # 128: 128 | 121.6 -> 125.6 -> 120 | 115.2 -> 119.2 -> 112 | 108.8 -> 112.8 -> 112 | 102.4 -> 106.4 -> 104
    #      | 96 -> 100 -> 96 | 89.6 -> 93.6 -> 88
    128: [128, 120, 112, 112, 104, 96, 88],
    # 256: 256 | 243.2 -> 247.2 -> 240 | 230.4 -> 234.4 -> 232 | 217.6 -> 221.6 -> 216 | 204.8 -> 208.8 -> 208
    #      | 192 -> 196 -> 192 | 179.2 -> 183.2 -> 176
    256: [256, 240, 232, 216, 208, 192, 176],
    # 512: 512 | 486.4 -> 490.4 -> 488 | 460.8 -> 464.8 -> 464 | 435.2 -> 439.2 -> 432 | 409.6 -> 413.6 -> 408
    #      | 384 -> 388 -> 384 | 358.4 -> 362.4 -> 360
    512: [512, 488, 464, 432, 408, 384, 360],
}


@pytest.mark.parametrize("base", sorted(HAND_TABLE))
def test_width_table_by_hand(base):
    spec = NetSpec()
    assert [make_divisible(base * r, 8) for r in RATIOS] == HAND_TABLE[base]
    assert spec.width_table(base) == [0] + HAND_TABLE[base]
    assert [spec.channels(base, d) for d in range(1, 8)] == HAND_TABLE[base]


def test_make_divisible_minimum():
    assert make_divisible(1) == 8  # int(5) // 8 * 8 = 0, raised to the minimum 8
    assert make_divisible(3.9) == 8
    assert make_divisible(3, 8, min_value=16) == 16
    assert make_divisible(5, divisor=4) == 8  # int(7) // 4 * 4 = 4 < 0.9 * 5 = 4.5 -> bumped to 8


def test_make_divisible_bump():
    assert make_divisible(35) == 32  # int(39) // 8 * 8 = 32 >= 0.9 * 35 = 31.5: kept
    assert make_divisible(35.6) == 40  # int(39.6) // 8 * 8 = 32 < 0.9 * 35.6 = 32.04: bumped
    assert make_divisible(11.9) == 16  # 8 < 10.71: bumped
    assert make_divisible(12) == 16  # int(16) // 8 * 8 = 16: plain rounding up


def test_make_divisible_halfway_rounds_up():
    assert make_divisible(52) == 56  # halfway between 48 and 56: int(56) // 8 * 8 = 56
    assert make_divisible(60) == 64
    assert make_divisible(51.9) == 48  # int(55.9) // 8 * 8 = 48 >= 46.71


def test_width_mult():
    spec = NetSpec(width_mult=0.125)
    # 256 * 0.85 * 0.125 = 27.2 -> int(31.2) // 8 * 8 = 24 < 0.9 * 27.2 = 24.48 -> bumped to 32
    assert spec.channels(256, 4) == 32
    # 64 * 0.7 * 0.125 = 5.6 -> 8 (minimum); 512 * 0.7 * 0.125 = 44.8 -> int(48.8) -> 48
    assert spec.channels(64, 7) == 8
    assert spec.channels(512, 7) == 48
    assert spec.max_stem() == 8 and spec.max_stage(3) == 64
    # 256 * 0.8 * 0.125 = 25.6 -> int(29.6) -> 24 >= 23.04: kept
    assert spec.width_table(256) == [0, 32, 32, 32, 32, 24, 24, 24]


MIN_CODE = "1222232353000000147400000062320000000000004727000000"


def test_widths_of_a_code():
    # stem digit 3 -> 56; stage 1 (2,3)(5,3) -> (64,56)(48,56); stage 2 (1,4)(7,4) -> (128,112)(88,112)
    # stage 3 (6,2)(3,2) -> (192,240)(232,240); stage 4 (4,7)(2,7) -> (432,360)(488,360)
    w = widths(MIN_CODE)
    assert w == Widths(
        stem=56,
        stages=(((64, 56), (48, 56)), ((128, 112), (88, 112)), ((192, 240), (232, 240)), ((432, 360), (488, 360))),
    )
    assert w.as_lists()[3] == [[432, 360], [488, 360]]
    assert widths(parse(MIN_CODE)) == w


def test_netspec_rejects_bad_values():
    with pytest.raises(KitError, match="unknown stem 'tiny'"):
        NetSpec(stem="tiny")
    with pytest.raises(KitError, match="one entry per stage"):
        NetSpec(stage_widths=(64, 128, 256))
    with pytest.raises(KitError, match="width_mult must be positive, got 0"):
        NetSpec(width_mult=0)
    with pytest.raises(KitError, match=r"unknown model config keys \['depth'\]"):
        NetSpec.from_dict({"depth": 3})


def test_netspec_dict_round_trip():
    spec = NetSpec(width_mult=0.25, stem="small", in_channels=1, num_classes=10)
    d = spec.to_dict()
    assert d["stage_widths"] == [64, 128, 256, 512] and d["stem"] == "small"
    assert NetSpec.from_dict(d) == spec
    assert NetSpec.from_dict(None) == NetSpec()


def test_spatial_sizes():
    # 7x7/2 pad 3: (224 + 6 - 7) // 2 + 1 = 112; pool 3x3/2 pad 1: (112 + 2 - 3) // 2 + 1 = 56
    assert spatial_sizes(NetSpec(), 224) == (112, [56, 28, 14, 7])
    # 3x3/1 pad 1 keeps 28; the last stride-2 stage: (7 + 2 - 3) // 2 + 1 = 4
    assert spatial_sizes(NetSpec(stem="small"), 28) == (28, [28, 14, 7, 4])


# --- params and MACs by hand ------------------------------------------------------------------
# conv weights k*k*cin*cout (no bias); BN 2*c; FC cin*classes + classes; MACs = conv weights * out area.


def test_cost_max_depths_all_full_width():
    code = "1" + "5585" + "1" + "11" * 5 + "11" * 5 + "11" * 8 + "11" * 5
    # widths: stem 64, stages 64 / 128 / 256 / 512; maps 112 (stem), 56 / 28 / 14 / 7
    params = (
        7 * 7 * 3 * 64 + 2 * 64  # stem conv + BN
        + 5 * (9 * 64 * 64 + 2 * 64 + 9 * 64 * 64 + 2 * 64)  # stage 1: 5 blocks, no downsample (stride 1, 64 -> 64)
        + 9 * 64 * 128 + 2 * 128 + 9 * 128 * 128 + 2 * 128 + 64 * 128 + 2 * 128  # stage 2 block 1 + downsample
        + 4 * (9 * 128 * 128 + 2 * 128 + 9 * 128 * 128 + 2 * 128)  # stage 2 blocks 2-5
        + 9 * 128 * 256 + 2 * 256 + 9 * 256 * 256 + 2 * 256 + 128 * 256 + 2 * 256  # stage 3 block 1 + downsample
        + 7 * (9 * 256 * 256 + 2 * 256 + 9 * 256 * 256 + 2 * 256)  # stage 3 blocks 2-8
        + 9 * 256 * 512 + 2 * 512 + 9 * 512 * 512 + 2 * 512 + 256 * 512 + 2 * 512  # stage 4 block 1 + downsample
        + 4 * (9 * 512 * 512 + 2 * 512 + 9 * 512 * 512 + 2 * 512)  # stage 4 blocks 2-5
        + 512 * 1000 + 1000  # FC
    )
    macs = (
        7 * 7 * 3 * 64 * 112 * 112
        + 5 * (9 * 64 * 64 + 9 * 64 * 64) * 56 * 56
        + (9 * 64 * 128 + 9 * 128 * 128 + 64 * 128) * 28 * 28
        + 4 * (9 * 128 * 128 + 9 * 128 * 128) * 28 * 28
        + (9 * 128 * 256 + 9 * 256 * 256 + 128 * 256) * 14 * 14
        + 7 * (9 * 256 * 256 + 9 * 256 * 256) * 14 * 14
        + (9 * 256 * 512 + 9 * 512 * 512 + 256 * 512) * 7 * 7
        + 4 * (9 * 512 * 512 + 9 * 512 * 512) * 7 * 7
        + 512 * 1000
    )
    assert params_of(code) == params
    assert macs_of(code) == macs
    assert code == RELEASED.max_arch().code() == DOCUMENTED.max_arch().code()


def test_cost_min_depths_mixed_digits():
    # MIN_CODE: depths 2,2,2,2; widths as in test_widths_of_a_code; stem 56
    params = (
        7 * 7 * 3 * 56 + 2 * 56  # stem
        + 9 * 56 * 64 + 2 * 64 + 9 * 64 * 56 + 2 * 56  # s1 b1: 56 -> 64 -> 56, no downsample (56 == 56)
        + 9 * 56 * 48 + 2 * 48 + 9 * 48 * 56 + 2 * 56  # s1 b2: 56 -> 48 -> 56
        + 9 * 56 * 128 + 2 * 128 + 9 * 128 * 112 + 2 * 112 + 56 * 112 + 2 * 112  # s2 b1 + downsample 56 -> 112
        + 9 * 112 * 88 + 2 * 88 + 9 * 88 * 112 + 2 * 112  # s2 b2
        + 9 * 112 * 192 + 2 * 192 + 9 * 192 * 240 + 2 * 240 + 112 * 240 + 2 * 240  # s3 b1 + downsample
        + 9 * 240 * 232 + 2 * 232 + 9 * 232 * 240 + 2 * 240  # s3 b2
        + 9 * 240 * 432 + 2 * 432 + 9 * 432 * 360 + 2 * 360 + 240 * 360 + 2 * 360  # s4 b1 + downsample
        + 9 * 360 * 488 + 2 * 488 + 9 * 488 * 360 + 2 * 360  # s4 b2
        + 360 * 1000 + 1000  # FC
    )
    macs = (
        7 * 7 * 3 * 56 * 112 * 112
        + (9 * 56 * 64 + 9 * 64 * 56 + 9 * 56 * 48 + 9 * 48 * 56) * 56 * 56
        + (9 * 56 * 128 + 9 * 128 * 112 + 56 * 112 + 9 * 112 * 88 + 9 * 88 * 112) * 28 * 28
        + (9 * 112 * 192 + 9 * 192 * 240 + 112 * 240 + 9 * 240 * 232 + 9 * 232 * 240) * 14 * 14
        + (9 * 240 * 432 + 9 * 432 * 360 + 240 * 360 + 9 * 360 * 488 + 9 * 488 * 360) * 7 * 7
        + 360 * 1000
    )
    p, m = costs([MIN_CODE])
    assert p.dtype == np.int64 and m.dtype == np.int64
    assert (int(p[0]), int(m[0])) == (params, macs)
    assert params_of(MIN_CODE[1:]) == params  # the 51-character form costs the same


def test_cost_released_min_arch():
    code = RELEASED.min_arch().code()
    assert code == "1222233333000000333300000055550000000000007777000000"
    # stem 56 (digit 3); stage 1 all 56; stage 2 all 112 (digit 3); stage 3 all 208 (digit 5); stage 4 all 360 (digit 7)
    params = (
        7 * 7 * 3 * 56 + 2 * 56
        + 2 * (9 * 56 * 56 + 2 * 56 + 9 * 56 * 56 + 2 * 56)
        + 9 * 56 * 112 + 2 * 112 + 9 * 112 * 112 + 2 * 112 + 56 * 112 + 2 * 112
        + 9 * 112 * 112 + 2 * 112 + 9 * 112 * 112 + 2 * 112
        + 9 * 112 * 208 + 2 * 208 + 9 * 208 * 208 + 2 * 208 + 112 * 208 + 2 * 208
        + 9 * 208 * 208 + 2 * 208 + 9 * 208 * 208 + 2 * 208
        + 9 * 208 * 360 + 2 * 360 + 9 * 360 * 360 + 2 * 360 + 208 * 360 + 2 * 360
        + 9 * 360 * 360 + 2 * 360 + 9 * 360 * 360 + 2 * 360
        + 360 * 1000 + 1000
    )
    macs = (
        7 * 7 * 3 * 56 * 112 * 112
        + 4 * 9 * 56 * 56 * 56 * 56
        + (9 * 56 * 112 + 9 * 112 * 112 + 56 * 112 + 2 * 9 * 112 * 112) * 28 * 28
        + (9 * 112 * 208 + 9 * 208 * 208 + 112 * 208 + 2 * 9 * 208 * 208) * 14 * 14
        + (9 * 208 * 360 + 9 * 360 * 360 + 208 * 360 + 2 * 9 * 360 * 360) * 7 * 7
        + 360 * 1000
    )
    assert (params_of(code), macs_of(code)) == (params, macs)


SMALL = NetSpec(width_mult=0.25, stem="small", in_channels=1, num_classes=10)


def test_cost_small_stem_28px():
    # width_mult 0.25 tables (by hand as above): 64 -> 16 for every digit (11.2 -> 8 < 10.08 -> bumped to 16);
    # 128 -> [32, 32, 32, 32, 24, 24, 24] (27.2 -> 24 < 24.48 -> 32); 256 -> [64, 64, 56, 56, 48, 48, 48];
    # 512 -> [128, 120, 112, 112, 104, 96, 88].
    # depths 3,2,4,2; stem digit 2 -> 16; s1 (1,2)(4,2)(7,2) -> 16s; s2 (5,6)(1,6) -> (24,24)(32,24);
    # s3 (2,3)(5,3)(7,3)(3,3) -> (64,56)(48,56)(48,56)(56,56); s4 (6,4)(2,4) -> (96,112)(120,112)
    code = "1324221242720000561600000023537333000000006424000000"
    assert widths(code, SMALL).stages[2] == ((64, 56), (48, 56), (48, 56), (56, 56))
    # 3x3/1 stem, no pool: maps 28 (stem), 28 / 14 / 7 / 4
    params = (
        3 * 3 * 1 * 16 + 2 * 16  # stem conv (1 input channel) + BN
        + 3 * (9 * 16 * 16 + 2 * 16 + 9 * 16 * 16 + 2 * 16)  # stage 1, no downsample
        + 9 * 16 * 24 + 2 * 24 + 9 * 24 * 24 + 2 * 24 + 16 * 24 + 2 * 24  # s2 b1 + downsample
        + 9 * 24 * 32 + 2 * 32 + 9 * 32 * 24 + 2 * 24  # s2 b2
        + 9 * 24 * 64 + 2 * 64 + 9 * 64 * 56 + 2 * 56 + 24 * 56 + 2 * 56  # s3 b1 + downsample
        + 2 * (9 * 56 * 48 + 2 * 48 + 9 * 48 * 56 + 2 * 56)  # s3 b2, b3
        + 9 * 56 * 56 + 2 * 56 + 9 * 56 * 56 + 2 * 56  # s3 b4
        + 9 * 56 * 96 + 2 * 96 + 9 * 96 * 112 + 2 * 112 + 56 * 112 + 2 * 112  # s4 b1 + downsample
        + 9 * 112 * 120 + 2 * 120 + 9 * 120 * 112 + 2 * 112  # s4 b2
        + 112 * 10 + 10  # FC, 10 classes
    )
    macs = (
        3 * 3 * 1 * 16 * 28 * 28
        + 3 * (9 * 16 * 16 + 9 * 16 * 16) * 28 * 28
        + (9 * 16 * 24 + 9 * 24 * 24 + 16 * 24 + 9 * 24 * 32 + 9 * 32 * 24) * 14 * 14
        + (9 * 24 * 64 + 9 * 64 * 56 + 24 * 56 + 2 * (9 * 56 * 48 + 9 * 48 * 56) + 2 * 9 * 56 * 56) * 7 * 7
        + (9 * 56 * 96 + 9 * 96 * 112 + 56 * 112 + 9 * 112 * 120 + 9 * 120 * 112) * 4 * 4
        + 112 * 10
    )
    p, m = costs([code], SMALL, resolution=28)
    assert (int(p[0]), int(m[0])) == (params, macs)
    assert params_of(code, SMALL) == params
    assert macs_of(code, SMALL, resolution=28) == macs


# --- an independent route: layer-by-layer loop over widths() ----------------------------------


def _reference(code, spec, resolution):
    """Plain loop over the layers, from widths() alone: the second route to the vectorised model."""
    k, s, pad, pool = {"imagenet": (7, 2, 3, True), "small": (3, 1, 1, False)}[spec.stem]
    w = widths(code, spec)
    h = (resolution + 2 * pad - k) // s + 1
    params = k * k * spec.in_channels * w.stem + 2 * w.stem
    macs = k * k * spec.in_channels * w.stem * h * h
    if pool:
        h = (h + 2 - 3) // 2 + 1
    cin = w.stem
    for stage, stride in zip(w.stages, spec.stage_strides, strict=True):
        h = (h + 2 - 3) // stride + 1
        for b, (c1, c2) in enumerate(stage):
            layers = [(9, cin, c1), (9, c1, c2)]
            if b == 0 and (stride != 1 or cin != c2):
                layers.append((1, cin, c2))
            for kk, ci, co in layers:
                params += kk * ci * co + 2 * co
                macs += kk * ci * co * h * h
            cin = c2
    params += cin * spec.num_classes + spec.num_classes
    macs += cin * spec.num_classes
    return params, macs


@pytest.mark.parametrize(
    ("spec", "resolution"),
    [
        (NetSpec(), 224),
        (SMALL, 28),
        (NetSpec(width_mult=0.125, stem="small", num_classes=10), 32),
        # a narrower stem than stage 1: stage 1's first block then needs a downsample although its stride is 1
        (NetSpec(stem_width=32, width_mult=0.5), 64),
    ],
    ids=["imagenet224", "small28", "small32-w0.125", "stem32-w0.5"],
)
def test_vectorised_costs_match_layer_loop(spec, resolution):
    archs = DOCUMENTED.sample_many(150, seed=3) + RELEASED.sample_many(150, seed=4, depth_uniform=True)
    p, m = costs(archs, spec, resolution=resolution)
    for arch, pi, mi in zip(archs, p, m, strict=True):
        assert (int(pi), int(mi)) == _reference(arch.code(), spec, resolution)


def test_costs_of_empty_list():
    p, m = costs([])
    assert p.shape == (0,) and m.shape == (0,)


def test_costs_reject_bad_code():
    with pytest.raises(CodeError, match="position 5: stem ratio digit 9"):
        costs([MIN_CODE, MIN_CODE[:5] + "9" + MIN_CODE[6:]])


def test_challenge_list_macs_range(challenge_list_path):
    archs = [e.code for e in read_arch_list(challenge_list_path)]
    p, m = costs(archs)  # one vectorised call for all 45,000
    assert len(m) == 45000
    assert round(m.min() / 1e9, 3) == 1.380
    assert round(m.max() / 1e9, 3) == 4.859
    assert m.min() >= macs_of(RELEASED.min_arch()) and m.max() <= macs_of(RELEASED.max_arch())
    assert p.min() >= params_of(RELEASED.min_arch()) and p.max() <= params_of(RELEASED.max_arch())
    print(f"challenge list: MACs {m.min() / 1e9:.3f}-{m.max() / 1e9:.3f} G, params {p.min():,}-{p.max():,}")


def test_channels_rejects_digit_outside_ratio_table():
    # Digit 0 marks an inactive block; asking for its channels is a bug, not ratio 0.7 (RATIOS[-1]).
    with pytest.raises(KitError, match="ratio digit 0 is out of range 1-7"):
        NetSpec().channels(64, 0)
    with pytest.raises(KitError, match="ratio digit 8"):
        NetSpec().channels(64, 8)


def test_bulk_digit_check_agrees_with_parse_on_single_digit_changes():
    # digit_matrix checks well-formed 52-char strings in bulk; any code parse rejects must be
    # rejected there too, with parse's own message.
    from encoding import digit_matrix

    good = RELEASED.max_arch().code()
    for pos in range(len(good)):
        for ch in "0123456789":
            code = good[:pos] + ch + good[pos + 1:]
            try:
                expected = parse(code).code()
            except CodeError as e:
                with pytest.raises(CodeError) as got:
                    digit_matrix([good, code])
                assert str(got.value) == str(e)
            else:
                row = digit_matrix([good, code])[1]
                assert "".join(str(d) for d in row) == expected
