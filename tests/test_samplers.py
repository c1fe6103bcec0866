import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
from fakedata import sampler_section

from encoding import (
    DOCUMENTED,
    RELEASED,
    ArchEntry,
    ArchListError,
    KitError,
    NetSpec,
    costs,
    get_space,
    macs_of,
    write_arch_list,
)
from supernet.samplers import PathSchedule, build_schedule, step_rng
from supernet.samplers.arch_list import ListSampler
from supernet.samplers.large import LargeBiasedSampler
from supernet.samplers.uniform import UniformSampler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _codes(paths):
    return [(p.kind, p.arch.code()) for p in paths]


@pytest.mark.parametrize("space", ["released", "documented"])
@pytest.mark.parametrize("strategy", ["uniform", "large"])
def test_codes_are_valid_in_their_space(strategy, space):
    schedule = build_schedule(sampler_section({"strategy": strategy, "space": space, "num_random": 3}), seed=5)
    target = RELEASED if space == "released" else DOCUMENTED
    for step in range(40):
        for path in schedule.paths(epoch=1, step=step):
            target.validate(path.arch.code())
    if space == "documented":  # the released space is strictly narrower: documented draws leave it
        drawn = [p.arch for s in range(40) for p in schedule.paths(1, s) if p.kind == "random"]
        assert not all(RELEASED.contains(a) for a in drawn)


def test_same_seed_epoch_step_gives_same_paths_and_others_differ():
    a = build_schedule(sampler_section({"strategy": "uniform", "num_random": 4}), seed=11)
    b = build_schedule(sampler_section({"strategy": "uniform", "num_random": 4}), seed=11)
    seq_a = [_codes(a.paths(e, s)) for e in range(2) for s in range(5)]
    seq_b = [_codes(b.paths(e, s)) for e in range(2) for s in reversed(range(5))]  # order of asking is irrelevant
    assert seq_a == [seq_b[e * 5 + 4 - s] for e in range(2) for s in range(5)]
    assert len({json.dumps(x) for x in seq_a}) == len(seq_a)  # every (epoch, step) draws anew
    c = build_schedule(sampler_section({"strategy": "uniform", "num_random": 4}), seed=12)
    assert _codes(c.paths(0, 0)) != _codes(a.paths(0, 0))


def test_random_paths_follow_the_step_generator():
    schedule = build_schedule(sampler_section({"strategy": "uniform", "depth_uniform": True, "num_random": 3,
                               "sandwich": False}), seed=3)
    rng = step_rng(3, 2, 7)
    expected = [RELEASED.sample(rng, depth_uniform=True).code() for _ in range(3)]
    assert [p.arch.code() for p in schedule.paths(2, 7)] == expected


def test_sandwich_puts_max_then_min_first():
    schedule = build_schedule(sampler_section({"strategy": "uniform", "space": "released", "num_random": 2}), seed=0)
    kinds = [p.kind for p in schedule.paths(0, 0)]
    assert kinds == ["max", "min", "random", "random"]
    paths = schedule.paths(0, 0)
    assert paths[0].arch.code() == "1558511111111111111111111111111111111111111111111111"
    assert paths[1].arch.code() == "1222233333000000333300000055550000000000007777000000"
    off = build_schedule(sampler_section({"strategy": "uniform", "sandwich": False, "num_random": 2}), seed=0)
    assert [p.kind for p in off.paths(0, 0)] == ["random", "random"]


def test_large_biased_keeps_the_largest_of_its_pool():
    spec = NetSpec(width_mult=0.25, stem="small", in_channels=1, num_classes=10)
    sampler = LargeBiasedSampler("released", pool=4, spec=spec, resolution=28)
    uniform = UniformSampler("released")
    for step in range(20):
        chosen = sampler.draw(step_rng(9, 0, step))
        rng = step_rng(9, 0, step)
        pool = [uniform.draw(rng) for _ in range(4)]
        pool_macs = [macs_of(a, spec, resolution=28) for a in pool]
        assert chosen == pool[int(np.argmax(pool_macs))]
    # and it shifts the distribution: mean MACs over 200 draws beat uniform's
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    big = costs([sampler.draw(rng_a) for _ in range(200)], spec, 28)[1].mean()
    small = costs([uniform.draw(rng_b) for _ in range(200)], spec, 28)[1].mean()
    assert big > 1.05 * small


def _write_list(path, codes):
    write_arch_list(path, [ArchEntry(f"arch{i + 1}", c) for i, c in enumerate(codes)])


def test_list_sampler_yields_only_list_codes_and_sandwiches_within_the_list(tmp_path):
    codes = [a.code() for a in RELEASED.sample_many(6, seed=4)]
    _write_list(tmp_path / "archs.json", codes)
    schedule = build_schedule(sampler_section({"strategy": "list", "arch_list": str(tmp_path / "archs.json"),
                               "num_random": 2}), seed=1)
    seen = set()
    for step in range(60):
        paths = schedule.paths(0, step)
        assert all(p.arch.code() in codes for p in paths)
        seen.update(p.arch.code() for p in paths if p.kind == "random")
    assert seen == set(codes)
    macs = costs(codes)[1]
    first = schedule.paths(0, 0)
    assert first[0].arch.code() == codes[int(np.argmax(macs))]
    assert first[1].arch.code() == codes[int(np.argmin(macs))]


def test_list_sampler_rejects_codes_outside_its_space(tmp_path):
    # stem digit 7 (allowed in 'documented' only); stage 1's conv2 digits are tied to it
    code = list(DOCUMENTED.max_arch().code())
    code[5] = "7"
    for b in range(5):
        code[6 + 2 * b + 1] = "7"
    code = "".join(code)
    assert DOCUMENTED.contains(code) and not RELEASED.contains(code)
    _write_list(tmp_path / "archs.json", [RELEASED.max_arch().code(), code])
    with pytest.raises(ArchListError, match=r"entry 'arch2' is not in space 'released'.*position 5"):
        ListSampler(tmp_path / "archs.json", "released")
    assert len(ListSampler(tmp_path / "archs.json", "documented").archs) == 2


def test_bad_sampler_settings_are_named(tmp_path):
    with pytest.raises(KitError, match="unknown sampler strategy 'sandwichh'"):
        build_schedule(sampler_section({"strategy": "sandwichh"}), seed=0)
    with pytest.raises(KitError, match="needs supernet.sampler.arch_list"):
        build_schedule(sampler_section({"strategy": "list"}), seed=0)
    with pytest.raises(KitError, match="supernet.sampler.space: unknown search space 'big'"):
        build_schedule(sampler_section({"space": "big"}), seed=0)
    with pytest.raises(KitError, match="pool must be at least 1, got 0"):
        build_schedule(sampler_section({"strategy": "large", "large_pool": 0}), seed=0)
    with pytest.raises(KitError, match="no paths to train"):
        PathSchedule(UniformSampler(), num_random=0, sandwich=False)
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ArchListError, match="architecture list is empty"):
        ListSampler(tmp_path / "empty.json")


RANK_SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, os.path.join(os.environ["PYTHONPATH"], "tests"))
    from fakedata import sampler_section
    from supernet.samplers import build_schedule
    rank = int(os.environ["PADDLE_TRAINER_ID"])
    schedule = build_schedule(sampler_section({"strategy": "large", "num_random": 2, "large_pool": 3}), seed=7)
    codes = [[p.arch.code() for p in schedule.paths(epoch, step)] for epoch in range(2) for step in range(5)]
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
        json.dump(codes, f)
""")


@pytest.mark.slow
def test_two_launched_ranks_draw_the_same_codes(tmp_path):
    import paddle

    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() == 1:
        pytest.skip("paddle.distributed.launch cannot place 2 processes on a 1-GPU CUDA build")
    script = tmp_path / "draw.py"
    script.write_text(RANK_SCRIPT)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
         "--log_dir", str(tmp_path / "log"), str(script), str(tmp_path)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0 == rank1
    assert len(rank0) == 10 and len({tuple(x) for x in rank0}) == 10
    local = build_schedule(sampler_section({"strategy": "large", "num_random": 2, "large_pool": 3}), seed=7)
    assert rank0[7] == [p.arch.code() for p in local.paths(1, 2)]


def test_progressive_shrinking_widens_depth_then_width_by_epoch():
    from supernet.samplers.uniform import ProgressiveSampler, shrunk_space

    released = get_space("released")
    assert shrunk_space(released, 0, 0).size() == 1  # only the largest subnet
    s = shrunk_space(released, 2, 1)
    assert s.depth_ranges == ((3, 5), (3, 5), (6, 8), (3, 5)) and s.stage_digits == (2, 2, 2, 2) and s.stem_digits == 2
    assert shrunk_space(released, 10, 10) == replace(released, name=shrunk_space(released, 10, 10).name)

    sched = build_schedule(sampler_section({"strategy": "uniform", "num_random": 3, "progressive":
                            {"depth_epochs": [1, 2], "width_epochs": [3]}}), seed=5)
    for epoch, (depth, width) in enumerate([(0, 0), (1, 0), (2, 0), (2, 1)]):
        allowed = shrunk_space(released, depth, width)
        paths = [p for step in range(20) for p in sched.paths(epoch, step)]
        assert all(allowed.contains(p.arch) for p in paths), epoch
        assert {p.arch for p in paths if p.kind == "max"} == {released.max_arch()}
        assert {p.arch for p in paths if p.kind == "min"} == {allowed.min_arch()}
        if depth:  # the relaxed bound is reached
            assert min(p.arch.depths[2] for p in paths) == 8 - depth
    assert sched.paths(2, 7) == sched.paths(2, 7)  # a function of (seed, epoch, step): nothing to resume
    with pytest.raises(KitError, match="progressive.depth_epochs must be ascending epochs >= 0"):
        ProgressiveSampler(depth_epochs=[3, 1])
    with pytest.raises(KitError, match="progressive shrinks the uniform sampler"):
        build_schedule(sampler_section({"strategy": "large", "progressive": {"depth_epochs": [1]}}), seed=0)


def test_pool_top_keeps_the_largest_of_the_pool_and_adds_a_path_every_third_step():
    from encoding import widths

    sched = build_schedule(sampler_section({"strategy": "pool_top", "pool_size": 40, "pool_keep": 4, "sandwich": False,
                            "extra_random_every": 3}), seed=9)
    for step in range(6):
        paths = sched.paths(1, step)
        rng = step_rng(9, 1, step)  # the same draws, counted by hand
        pool = [UniformSampler("released").draw(rng) for _ in range(40)]

        def chans(a):
            w = widths(a)
            return w.stem + sum(sum(pair) for stage in w.stages for pair in stage)

        top = sorted(range(40), key=lambda i: (-chans(pool[i]), i))[:4]
        assert [p.arch for p in paths[:4]] == [pool[i] for i in top]
        assert len(paths) == (5 if step in (2, 5) else 4)
        if step in (2, 5):
            assert paths[4].arch == UniformSampler("released").draw(rng)  # the next uniform draw
    with pytest.raises(KitError, match="need 1 <= keep <= pool"):
        build_schedule(sampler_section({"strategy": "pool_top", "pool_size": 3, "pool_keep": 4}), seed=0)
    with pytest.raises(KitError, match="pool_by must be channels or macs"):
        build_schedule(sampler_section({"strategy": "pool_top", "pool_by": "params"}), seed=0)
