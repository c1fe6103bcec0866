"""Few-shot supernets: groups by stage depths, routing, the split, group fine-tuning and evaluation through
the routing into one results file (in one process and over two launched ranks)."""

import json
import os
import shutil

import pytest
from fakedata import sampler_section
from test_evaluate_cli import cli, reference, setup, without_seconds  # noqa: F401 (fixtures)

from encoding import RELEASED, ArchEntry, KitError, read_arch_list, write_arch_list
from supernet.fewshot import main as fewshot_main
from supernet.fewshot import parse_groups, read_manifest, route, split
from supernet.samplers import build_schedule, restricted_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO = [{"name": "shallow", "depths": {3: [2, 5]}}, {"name": "deep", "depths": {"stage3": [6, 8]}}]


def test_groups_route_each_code_to_the_first_that_holds_it():
    shallow, deep = parse_groups(TWO)
    assert shallow.depth_ranges == ((2, 5), (2, 5), (2, 5), (2, 5)) and deep.depth_ranges[2] == (6, 8)
    for arch in RELEASED.sample_many(50, seed=3):
        assert route([shallow, deep], arch).name == ("shallow" if arch.depths[2] <= 5 else "deep")
    # the first match wins: a catch-all after a narrow group
    narrow, rest = parse_groups([{"name": "d4-2", "depths": {4: [2, 2]}}, {"name": "rest"}])
    assert route([narrow, rest], RELEASED.min_arch()).name == "d4-2"
    assert route([narrow, rest], RELEASED.max_arch()).name == "rest"
    with pytest.raises(KitError, match=r"depths \[5, 5, 8, 5\]\) is in no few-shot group \(d4-2\)"):
        route([narrow], RELEASED.max_arch())


@pytest.mark.parametrize("groups,message", [
    ([], "must be a non-empty list"),
    ([{"depths": {3: [2, 5]}}], r"groups\[0\] needs a name"),
    ([{"name": "a", "depths": {3: [1, 5]}}], r"stage 3 depths \[1, 5\] must be \[lo, hi\] within \[2, 8\]"),
    ([{"name": "a", "depths": {5: [2, 3]}}], "stages 1-4"),
    ([{"name": "a"}, {"name": "a"}], "must be distinct folder names"),
])
def test_bad_groups_are_named(groups, message):
    with pytest.raises(KitError, match=message):
        parse_groups(groups)


def test_a_groups_sampler_draws_only_its_codes():
    deep = parse_groups(TWO)[1]
    sched = build_schedule(sampler_section(num_random=4, depth_ranges=[list(r) for r in deep.depth_ranges]), seed=1)
    paths = [p for step in range(25) for p in sched.paths(0, step)]
    assert all(deep.contains(p.arch) for p in paths)
    assert {p.arch.depths[2] for p in paths} == {6, 7, 8}
    assert {p.arch for p in paths if p.kind == "min"} == {restricted_space("released", deep.depth_ranges).min_arch()}
    with pytest.raises(KitError, match="depth_ranges must be 4 \\[lo, hi\\] pairs"):
        build_schedule(sampler_section({"depth_ranges": [[2, 5]]}), seed=0)


def test_a_groups_list_sampler_draws_the_lists_codes_of_that_group(tmp_path):
    """2nd place fine-tunes each few-shot supernet on the released list's codes: strategy 'list' with a
    group's depth_ranges samples the list's codes whose depths lie in the group, sandwich included."""
    shallow, deep = parse_groups(TWO)
    archs = RELEASED.sample_many(60, seed=5)
    listed = tmp_path / "list.json"
    write_arch_list(str(listed), [ArchEntry(f"arch{i}", a.code()) for i, a in enumerate(archs)])
    in_group = {a.code() for a in archs if deep.contains(a)}
    assert 0 < len(in_group) < len(archs)
    section = {"strategy": "list", "arch_list": str(listed), "num_random": 4,
               "depth_ranges": [list(r) for r in deep.depth_ranges]}
    paths = [p for step in range(25) for p in build_schedule(sampler_section(section), seed=2).paths(0, step)]
    assert {p.arch.code() for p in paths} <= in_group
    assert len({p.arch.code() for p in paths if p.kind == "random"}) > len(in_group) // 2  # the group's codes, not one
    # a group none of the list's codes is in is refused by name
    write_arch_list(str(listed), [ArchEntry(f"arch{i}", a.code()) for i, a in enumerate(archs) if shallow.contains(a)])
    with pytest.raises(KitError, match=r"no code has its stage depths within supernet.sampler.depth_ranges "
                                       r"\[\[2, 5\], \[2, 5\], \[6, 8\], \[2, 5\]\]"):
        build_schedule(sampler_section(section), seed=0)


def test_split_command_writes_the_manifest_copies_and_commands(tmp_path, capsys):
    ckpt = tmp_path / "supernet.pdparams"
    ckpt.write_bytes(b"weights")
    config = tmp_path / "c.yaml"
    config.write_text(f"base: {os.path.join(ROOT, 'configs', 'demo.yaml')}\nsupernet:\n  fewshot:\n"
                      f"    groups: {json.dumps(TWO)}\n")
    args = ["split", "--config", str(config), "--checkpoint", str(ckpt), "--out", str(tmp_path / "fs")]
    assert fewshot_main(args) == 0
    out = capsys.readouterr().out
    groups, weights = read_manifest(str(tmp_path / "fs" / "manifest.json"))
    assert [g.name for g in groups] == ["shallow", "deep"]
    assert weights["deep"] == str(tmp_path / "fs" / "deep" / "supernet.pdparams")
    assert (tmp_path / "fs" / "deep" / "init.pdparams").read_bytes() == b"weights"
    assert (f"supernet.output_dir={tmp_path / 'fs' / 'deep'} supernet.init=supernet "
            f"supernet.pretrained={tmp_path / 'fs' / 'deep' / 'init.pdparams'} "
            f"'supernet.sampler.depth_ranges=[[2,5],[2,5],[6,8],[2,5]]'") in out
    assert fewshot_main(["split", "--config", str(config), "--checkpoint", str(tmp_path / "no"), "--out", "x"]) == 1
    assert "--checkpoint" in capsys.readouterr().err


def test_one_group_split_evaluates_like_the_original_supernet(setup, reference, tmp_path):  # noqa: F811
    fs = tmp_path / "fs"
    split(setup["ckpt"], parse_groups([{"name": "all"}]), str(fs))
    early = cli(setup, tmp_path / "early", "--fewshot", str(fs / "manifest.json"), "--checkpoint", "")
    assert early.returncode == 1 and "few-shot groups without fine-tuned weights (all)" in early.stderr
    shutil.copyfile(fs / "all" / "init.pdparams", fs / "all" / "supernet.pdparams")  # a fine-tuning of 0 steps
    proc = cli(setup, tmp_path / "routed", "--fewshot", str(fs / "manifest.json"), "--checkpoint", "")
    assert proc.returncode == 0, proc.stderr
    assert without_seconds((tmp_path / "routed" / "results.json").read_text()) == without_seconds(reference)


def test_two_groups_route_over_two_launched_ranks_into_one_results_file(setup, reference, tmp_path):  # noqa: F811
    entries = read_arch_list(setup["archs"])
    short_ids = {e.id for e in entries if e.code[2] <= "4"}  # code[2] = stage 2 depth
    assert short_ids and len(short_ids) < len(entries)
    fs = tmp_path / "fs"
    split(setup["ckpt"], parse_groups([{"name": "short", "depths": {2: [2, 4]}}, {"name": "rest"}]), str(fs))
    shutil.copyfile(fs / "rest" / "init.pdparams", fs / "rest" / "supernet.pdparams")
    # the short group's copy: other weights (the original's, every tensor halved), so routing shows
    import paddle

    from runtime.checkpoint import load_checkpoint

    state = load_checkpoint(setup["ckpt"])["model"]
    paddle.save({k: v * 0.5 for k, v in state.items()}, str(fs / "short" / "supernet.pdparams"))
    proc = cli(setup, tmp_path / "routed", "--fewshot", str(fs / "manifest.json"), "--checkpoint", "", launch=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    routed = {r["id"]: r for r in json.loads((tmp_path / "routed" / "results.json").read_text())}
    original = {r["id"]: r for r in json.loads(reference)}
    assert list(routed) == list(original)
    for i, r in routed.items():
        same = (r["loss"], r["top1"]) == (original[i]["loss"], original[i]["top1"])
        assert same == (i not in short_ids), i
