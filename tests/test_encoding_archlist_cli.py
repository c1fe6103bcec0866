"""Architecture-list JSON I/O (order, errors, atomic writes) and the `python -m encoding` command line."""

import json
import os
import subprocess
import sys

import pytest

from encoding import (
    DOCUMENTED,
    RELEASED,
    ArchEntry,
    ArchListError,
    KitError,
    atomic_write_json,
    costs,
    parse,
    read_arch_list,
    widths,
    write_arch_list,
)
from encoding.archlist import dumps_arch_list, loads_arch_list

GOOD = "1252233313000000223212122253130000000000006515000000"
DOC_ONLY = "1252235313000000223212122253130000000000006515000000"  # stage 1 conv1 digit 5: outside released
OTHER = "1447233323333300331313230025153545153545003252000000"


# --- reading ------------------------------------------------------------------------------------


def test_read_keeps_file_order_and_values(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(f'{{"z9": {{"acc": 0.5, "arch": "{GOOD}"}}, "a1": {{"arch": "{OTHER}"}}, '
                    '"m5": {"acc": 1, "arch": "x"}}')
    entries = read_arch_list(path)
    assert [e.id for e in entries] == ["z9", "a1", "m5"]
    assert entries[0] == ArchEntry("z9", GOOD, 0.5)
    assert entries[1].acc == 0.0  # missing acc reads as 0.0
    assert entries[2].code == "x"  # codes are checked by the spaces, not by the reader


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a1": {"acc": 0.0, "arch": "1"}', "malformed JSON at line 1 column"),
        ("", "malformed JSON at line 1 column 1"),
        ('{"a1": {"acc": 0.0}}', "entry 'a1' has no 'arch' key"),
        (f'{{"a1": "{GOOD}"}}', "entry 'a1' is not an object"),
        (f'{{"a1": {{"arch": "{GOOD}"}}, "a2": {{"arch": "{GOOD}"}}, "a1": {{"arch": "{OTHER}"}}}}',
         "duplicate id 'a1'"),
        (f'["{GOOD}"]', "expected a JSON object of id -> {'acc', 'arch'}, got list"),
        ('{"a1": {"arch": 125}}', "entry 'a1' has a non-string 'arch': 125"),
    ],
    ids=["truncated", "empty", "no-arch", "not-object", "duplicate", "top-level-list", "arch-not-string"],
)
def test_malformed_lists_raise_arch_list_error(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ArchListError) as info:
        read_arch_list(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert isinstance(info.value, KitError)


def test_missing_file(tmp_path):
    with pytest.raises(ArchListError, match="no such file"):
        read_arch_list(tmp_path / "absent.json")


# --- writing ------------------------------------------------------------------------------------


def test_write_then_read_back(tmp_path):
    entries = [ArchEntry(f"arch{i + 1}", a.code(), acc=i / 7) for i, a in enumerate(RELEASED.sample_many(30, seed=2))]
    entries.reverse()  # an order that is not sorted by id must survive
    path = tmp_path / "sub" / "list.json"  # missing directories are created
    write_arch_list(path, entries)
    assert read_arch_list(path) == entries
    assert loads_arch_list(dumps_arch_list(entries)) == entries
    assert json.loads(path.read_text())["arch30"] == {"acc": 29 / 7, "arch": entries[0].code}


def test_write_rejects_duplicates_and_non_finite_acc(tmp_path):
    path = tmp_path / "list.json"
    with pytest.raises(ArchListError, match="duplicate id 'a'"):
        write_arch_list(path, [ArchEntry("a", GOOD), ArchEntry("a", OTHER)])
    with pytest.raises(ArchListError, match="entry 'b': acc nan is not finite"):
        write_arch_list(path, [ArchEntry("b", GOOD, float("nan"))])
    assert not path.exists()


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "list.json"
    old = [ArchEntry("arch1", GOOD, 0.25)]
    write_arch_list(path, old)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_arch_list(path, [ArchEntry("arch1", OTHER), ArchEntry("arch2", GOOD)])
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_json(path, {"x": 1})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.json"]
    monkeypatch.undo()
    assert read_arch_list(path) == old


def test_written_file_has_the_umask_mode(tmp_path):
    # mkstemp's 0600 would make results unreadable to the rest of a group sharing a cluster
    old_mask = os.umask(0o022)
    try:
        write_arch_list(tmp_path / "list.json", [ArchEntry("a", GOOD)])
    finally:
        os.umask(old_mask)
    assert (tmp_path / "list.json").stat().st_mode & 0o777 == 0o644


# --- command line -------------------------------------------------------------------------------


def cli(repo_root, *args):
    return subprocess.run([sys.executable, "-m", "encoding", *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=60)


def test_describe_json_matches_library(repo_root):
    out = cli(repo_root, "describe", "--json", GOOD, OTHER[1:])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    params, macs = costs([GOOD, OTHER])
    for line, code, p, m in zip(lines, [GOOD, OTHER], params, macs, strict=True):
        rec = json.loads(line)
        assert set(rec) == {"id", "arch", "depths", "stem", "widths", "params", "macs"}
        w = widths(code)
        assert rec["id"] is None
        assert rec["arch"] == code  # the 51-character input comes back in the 52-character form
        assert rec["depths"] == list(parse(code).depths)
        assert rec["stem"] == w.stem
        assert rec["widths"] == w.as_lists()
        assert (rec["params"], rec["macs"]) == (int(p), int(m))


def test_describe_text(repo_root):
    out = cli(repo_root, "describe", GOOD)
    assert out.returncode == 0, out.stderr
    p, m = costs([GOOD])
    assert out.stdout.splitlines()[0] == GOOD
    assert f"depths [2, 5, 2, 2]  stem 56  params {int(p[0]):,}  MACs@224 {int(m[0]) / 1e9:.3f} G" in out.stdout
    assert "stage 1: (56,56) (64,56)" in out.stdout  # (3,3) (1,3) at base 64


def test_describe_file(repo_root, tmp_path):
    path = tmp_path / "list.json"
    write_arch_list(path, [ArchEntry("second", OTHER), ArchEntry("first", GOOD)])
    out = cli(repo_root, "describe", "--json", "--file", path)
    assert out.returncode == 0, out.stderr
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["id"], r["arch"]) for r in recs] == [("second", OTHER), ("first", GOOD)]
    text = cli(repo_root, "describe", "--file", path)
    assert text.stdout.splitlines()[0] == f"second: {OTHER}"


def test_describe_errors(repo_root):
    bad = cli(repo_root, "describe", GOOD[:10] + "x" + GOOD[11:])
    assert bad.returncode == 1
    assert "at position 10: non-digit character 'x'" in bad.stderr
    nothing = cli(repo_root, "describe")
    assert nothing.returncode == 2 and "give codes or --file" in nothing.stderr


def test_check_accepts_a_valid_list(repo_root, tmp_path):
    path = tmp_path / "list.json"
    archs = RELEASED.sample_many(25, seed=8)
    write_arch_list(path, [ArchEntry(f"arch{i}", a.code()) for i, a in enumerate(archs)])
    out = cli(repo_root, "check", path)
    assert out.returncode == 0, out.stderr
    assert f"25 valid codes in {path}" in out.stdout
    assert "fit spaces: documented, released" in out.stdout
    _, macs = costs(archs)
    assert f"max {macs.max() / 1e9:.3f} G" in out.stdout


def test_check_names_the_invalid_entry(repo_root, tmp_path):
    path = tmp_path / "list.json"
    bad = GOOD[:10] + "1" + GOOD[11:]  # non-zero padding in stage 1
    write_arch_list(path, [ArchEntry("ok1", GOOD), ArchEntry("broken7", bad), ArchEntry("ok2", OTHER)])
    out = cli(repo_root, "check", path)
    assert out.returncode == 1
    assert "1 of 3 entries are invalid" in out.stderr
    assert "broken7: invalid subnet code" in out.stderr and "at position 10" in out.stderr
    assert "ok1" not in out.stderr


def test_check_space_released_rejects_documented_only_code(repo_root, tmp_path):
    path = tmp_path / "list.json"
    write_arch_list(path, [ArchEntry("a1", GOOD), ArchEntry("wide", DOC_ONLY)])
    assert DOCUMENTED.contains(DOC_ONLY)
    default = cli(repo_root, "check", path)
    assert default.returncode == 0, default.stderr
    assert "\nfit spaces: documented\n" in default.stdout  # not released
    out = cli(repo_root, "check", path, "--space", "released")
    assert out.returncode == 1
    assert "wide: " in out.stderr and "at position 6" in out.stderr and "'released'" in out.stderr


def test_check_malformed_file(repo_root, tmp_path):
    path = tmp_path / "list.json"
    path.write_text("{")
    out = cli(repo_root, "check", path)
    assert out.returncode == 1
    assert out.stderr.startswith(f"error: {path}: malformed JSON")


def test_sample_writes_a_list_check_accepts(repo_root, tmp_path):
    path = tmp_path / "drawn.json"
    out = cli(repo_root, "sample", "--space", "released", "--n", 40, "--seed", 3, "--depth-uniform",
              "--prefix", "s", "--out", path)
    assert out.returncode == 0, out.stderr
    assert f"wrote 40 codes from space 'released' (seed 3) to {path}" in out.stdout
    entries = read_arch_list(path)
    assert [e.id for e in entries] == [f"s{i}" for i in range(1, 41)]
    assert [e.code for e in entries] == [a.code() for a in RELEASED.sample_many(40, 3, depth_uniform=True)]
    check = cli(repo_root, "check", path, "--space", "released")
    assert check.returncode == 0, check.stderr
    assert f"40 valid codes in {path}" in check.stdout


def test_spaces_lists_sizes(repo_root):
    out = cli(repo_root, "spaces")
    assert out.returncode == 0, out.stderr
    for space in (DOCUMENTED, RELEASED):
        assert f"{space.name}: {space.size():,} codes; min {space.min_arch().code()}" in out.stdout


def test_check_the_challenge_list(repo_root, challenge_list_path):
    # the README's claim: 45,000 valid codes, MACs at 224 px between 1.380 G and 4.859 G
    out = cli(repo_root, "check", challenge_list_path, "--space", "released")
    assert out.returncode == 0, out.stderr
    assert f"45000 valid codes in {challenge_list_path}" in out.stdout
    assert "fit spaces: documented, released" in out.stdout
    assert "MACs@224: min 1.380 G" in out.stdout and "max 4.859 G" in out.stdout


def test_duplicate_key_inside_an_entry_is_not_called_an_id(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"arch1": {"acc": 0.0, "arch": "1", "arch": "2"}}')
    with pytest.raises(ArchListError, match="duplicate key 'arch'"):
        read_arch_list(path)


def test_unreadable_list_files_are_arch_list_errors(tmp_path):
    with pytest.raises(ArchListError, match="cannot read"):
        read_arch_list(tmp_path)  # a directory
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"arch1": {"acc": 0.0, "arch": "\xe9"}}')
    with pytest.raises(ArchListError, match="not UTF-8"):
        read_arch_list(bad)
