"""`python -m submission make|validate`: every refusal and every validation error names its id."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from encoding import DOCUMENTED, ArchEntry, read_arch_list, write_arch_list
from submission.errors import SubmissionError
from submission.make import load_results, make_file, make_submission
from submission.validate import check_submission, validate_file

ROOT = Path(__file__).resolve().parent.parent
N = 8


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "submission", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def archs_path(tmp_path):
    codes = [a.code() for a in DOCUMENTED.sample_many(N + 1, seed=0)]
    path = tmp_path / "archs.json"
    write_arch_list(path, [ArchEntry(f"arch{i + 1}", c) for i, c in enumerate(codes[:N])])
    (tmp_path / "spare_code.txt").write_text(codes[N])  # a valid code not in the list
    return path


@pytest.fixture
def archs(archs_path):
    return read_arch_list(archs_path)


def records(archs):
    return [{"id": e.id, "code": e.code, "top1": 0.60 + 0.01 * i, "top5": 0.85 + 0.01 * i, "loss": 1.5 - 0.1 * i,
             "calibration": "recalibrate", "seconds": 0.5} for i, e in enumerate(archs)]


def submission_dict(archs):
    return {e.id: {"acc": 0.6 + 0.01 * i, "arch": e.code} for i, e in enumerate(archs)}


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


# --- validate ------------------------------------------------------------------------
def problems_of(data, archs):
    return check_submission(data, archs).problems


def test_valid_submission_passes_with_exit_0(tmp_path, archs_path, archs):
    sub = write_json(tmp_path / "sub.json", submission_dict(archs))
    assert validate_file(sub, archs).ok
    r = run_cli("validate", sub, "--archs", archs_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"all {N} ids" in r.stdout


def test_missing_id(archs):
    data = submission_dict(archs)
    del data["arch3"]
    [p] = problems_of(data, archs)
    assert p.kind == "missing" and "arch3" in p.message


def test_extra_id(archs):
    data = submission_dict(archs)
    data["arch99"] = {"acc": 0.5, "arch": archs[0].code}
    [p] = problems_of(data, archs)
    assert p.kind == "extra" and "arch99" in p.message


def test_changed_code(tmp_path, archs):
    data = submission_dict(archs)
    spare = (tmp_path / "spare_code.txt").read_text()
    data["arch2"]["arch"] = spare
    [p] = problems_of(data, archs)
    assert p.kind == "changed-code" and "arch2" in p.message and spare in p.message


def test_invalid_code(archs):
    data = submission_dict(archs)
    data["arch4"]["arch"] = archs[3].code[:-1] + "x"
    [p] = problems_of(data, archs)
    assert p.kind == "invalid-code" and "arch4" in p.message and "non-digit character 'x'" in p.message


@pytest.mark.parametrize("acc", ["0.7", None, True, [0.7]])
def test_non_numeric_acc(archs, acc):
    data = submission_dict(archs)
    data["arch5"]["acc"] = acc
    [p] = problems_of(data, archs)
    assert p.kind == "non-numeric" and "arch5" in p.message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_acc(tmp_path, archs, literal):
    data = submission_dict(archs)
    data["arch6"]["acc"] = "PLACEHOLDER"
    path = tmp_path / "sub.json"
    path.write_text(json.dumps(data).replace('"PLACEHOLDER"', literal))
    [p] = validate_file(path, archs).problems
    assert p.kind == "non-finite" and "arch6" in p.message


def test_duplicate_id(tmp_path, archs):
    text = json.dumps(submission_dict(archs))
    dup = f'"arch7": {{"acc": 0.1, "arch": "{archs[6].code}"}}'
    path = tmp_path / "sub.json"
    path.write_text(text[:-1] + ", " + dup + "}")
    [p] = validate_file(path, archs).problems
    assert p.kind == "duplicate" and "arch7" in p.message


def test_missing_key_in_entry(archs):
    data = submission_dict(archs)
    del data["arch1"]["acc"]
    [p] = problems_of(data, archs)
    assert p.kind == "bad-entry" and "arch1: no 'acc' key" in p.message


def test_all_equal_values_are_reported(archs):
    data = {e.id: {"acc": 0.5, "arch": e.code} for e in archs}
    [p] = problems_of(data, archs)
    assert p.kind == "all-equal"
    assert f"all {N} acc values are equal (0.5; ids arch1 .. arch{N})" in p.message and "undefined" in p.message


def test_mixed_fractions_and_percents(archs):
    data = submission_dict(archs)
    data["arch1"]["acc"] = 71.2
    [p] = problems_of(data, archs)
    assert p.kind == "mixed-units" and "arch1" in p.message
    assert "1 are > 1 (percents) while 7 are <= 1 (fractions)" in p.message


def test_negative_scores_are_not_taken_for_mixed_units(archs):
    data = {e.id: {"acc": -1.5 + 0.3 * i, "arch": e.code} for i, e in enumerate(archs)}  # -loss spans 1.0
    assert problems_of(data, archs) == []


def test_every_problem_is_reported_together_and_cli_exits_1(tmp_path, archs_path, archs):
    data = submission_dict(archs)
    del data["arch3"]
    data["arch99"] = {"acc": 0.5, "arch": archs[0].code}
    data["arch5"]["acc"] = "high"
    sub = write_json(tmp_path / "sub.json", data)
    assert sorted(p.kind for p in validate_file(sub, archs).problems) == ["extra", "missing", "non-numeric"]
    r = run_cli("validate", sub, "--archs", archs_path)
    assert r.returncode == 1
    for ident in ("arch3", "arch99", "arch5"):
        assert ident in r.stdout


def test_other_order_is_only_a_warning(tmp_path, archs):
    data = dict(reversed(list(submission_dict(archs).items())))
    report = check_submission(data, archs)
    assert report.ok and "first difference at position 1: arch8 where the list has arch1" in report.warnings[0]


def test_unreadable_files(tmp_path, archs):
    bad = tmp_path / "bad.json"
    bad.write_text('{"arch1": ')
    [p] = validate_file(bad, archs).problems
    assert "malformed JSON at line 1" in p.message
    [p] = validate_file(tmp_path / "absent.json", archs).problems
    assert "no such file" in p.message
    [p] = check_submission([1, 2], archs).problems
    assert "expected a JSON object" in p.message


# --- make ----------------------------------------------------------------------------
def test_make_follows_list_order_and_round_trips_through_validate(tmp_path, archs_path, archs):
    recs = records(archs)
    results = write_json(tmp_path / "results.json", list(reversed(recs)))
    out = tmp_path / "submit.json"
    r = run_cli("make", "--results", results, "--archs", archs_path, "--out", out)
    assert r.returncode == 0, r.stderr
    written = json.loads(out.read_text())
    assert list(written) == [e.id for e in archs]
    assert written == {rec["id"]: {"acc": rec["top1"], "arch": rec["code"]} for rec in recs}
    r = run_cli("validate", out, "--archs", archs_path)
    assert r.returncode == 0, r.stdout


def test_make_metric_and_unit(tmp_path, archs):
    recs = records(archs)
    entries, _ = make_submission(recs, archs, metric="top5", unit="percent")
    assert [e.acc for e in entries] == pytest.approx([100 * r["top5"] for r in recs])
    entries, _ = make_submission(recs, archs, metric="neg_loss")
    assert [e.acc for e in entries] == pytest.approx([-r["loss"] for r in recs])


def test_make_accepts_results_keyed_by_id(tmp_path, archs):
    recs = records(archs)
    path = write_json(tmp_path / "results.json", {r["id"]: {k: v for k, v in r.items() if k != "id"} for r in recs})
    loaded, problems = load_results(path)
    assert problems == []
    entries, _ = make_submission(loaded, archs)
    assert [(e.id, e.acc) for e in entries] == [(r["id"], r["top1"]) for r in recs]


def test_make_reads_all_percent_results_as_percents(archs):
    recs = records(archs)
    for r in recs:
        r["top1"] *= 100
    entries, notes = make_submission(recs, archs)
    assert [e.acc for e in entries] == pytest.approx([0.60 + 0.01 * i for i in range(N)])
    assert "read as percents" in notes[0]


def _refused(tmp_path, archs_path, recs, *flags, text=None):
    results = tmp_path / "results.json"
    results.write_text(text if text is not None else json.dumps(recs))
    out = tmp_path / "submit.json"
    r = run_cli("make", "--results", results, "--archs", archs_path, "--out", out, *flags)
    assert r.returncode == 1, r.stdout + r.stderr
    assert not out.exists()
    assert "refusing to write" in r.stderr
    return r.stderr


def test_make_refuses_a_missing_id(tmp_path, archs_path, archs):
    recs = [r for r in records(archs) if r["id"] != "arch4"]
    assert "arch4: no result" in _refused(tmp_path, archs_path, recs)


def test_make_refuses_a_changed_code(tmp_path, archs_path, archs):
    recs = records(archs)
    recs[1]["code"] = recs[2]["code"]
    assert "arch2: result code" in _refused(tmp_path, archs_path, recs)


def test_make_refuses_a_non_finite_value(tmp_path, archs_path, archs):
    recs = records(archs)
    recs[2]["top1"] = "PLACEHOLDER"
    text = json.dumps(recs).replace('"PLACEHOLDER"', "NaN")
    assert "arch3: top1 nan is not finite" in _refused(tmp_path, archs_path, recs, text=text)


def test_make_refuses_mixed_units(tmp_path, archs_path, archs):
    recs = records(archs)
    recs[5]["top1"] = 66.0
    err = _refused(tmp_path, archs_path, recs)
    assert "mix of fractions and percents" in err and "arch6" in err


@pytest.mark.parametrize("break_it,message", [
    (lambda recs: recs.append({**recs[0], "id": "arch99"}), "arch99: result for an id that is not in the official"),
    (lambda recs: recs.append(dict(recs[0])), "arch1: more than one result record"),
    (lambda recs: recs[3].pop("top1"), "arch4: result record has no 'top1'"),
    (lambda recs: recs[3].pop("code"), "arch4: result record has no 'code'"),
    (lambda recs: recs[3].update(top1=-0.2), "arch4: top1 -0.2 is outside [0, 1]"),
    (lambda recs: recs[3].update(top1="0.7"), "arch4: top1 '0.7' is not a number"),
    (lambda recs: [r.update(top1=0.5) for r in recs], "all 8 top1 values are equal"),
])
def test_make_refuses_other_bad_results(tmp_path, archs, break_it, message):
    recs = records(archs)
    break_it(recs)
    results = write_json(tmp_path / "results.json", recs)
    out = tmp_path / "submit.json"
    with pytest.raises(SubmissionError, match="nothing written") as e:
        make_file(results, archs, out)
    assert message in str(e.value)
    assert not out.exists()


def test_make_refuses_percent_of_a_loss(archs):
    with pytest.raises(SubmissionError, match="percent makes no sense for 'neg_loss'"):
        make_submission(records(archs), archs, metric="neg_loss", unit="percent")


def test_make_leaves_an_existing_file_alone_when_refusing(tmp_path, archs_path, archs):
    out = tmp_path / "submit.json"
    out.write_text("previous")
    recs = records(archs)[1:]
    results = write_json(tmp_path / "results.json", recs)
    r = run_cli("make", "--results", results, "--archs", archs_path, "--out", out)
    assert r.returncode == 1 and out.read_text() == "previous"


def test_make_with_a_missing_list_is_a_clear_error(tmp_path):
    r = run_cli("make", "--results", tmp_path / "r.json", "--archs", tmp_path / "absent.json",
                "--out", tmp_path / "o.json")
    assert r.returncode == 1 and "absent.json: no such file" in r.stderr


def test_repeated_key_inside_an_entry(tmp_path, archs):
    text = json.dumps(submission_dict(archs))
    path = tmp_path / "sub.json"
    path.write_text(text.replace('"arch2": {"acc"', '"arch2": {"acc": 0.3, "acc"', 1))
    [p] = validate_file(path, archs).problems
    assert p.kind == "duplicate" and "arch2: key 'acc' appears more than once" in p.message


def test_cli_caps_each_kind_of_problem(tmp_path):
    codes = [a.code() for a in DOCUMENTED.sample_many(30, seed=2)]
    archs_path = tmp_path / "archs.json"
    write_arch_list(archs_path, [ArchEntry(f"arch{i + 1}", c) for i, c in enumerate(codes)])
    sub = write_json(tmp_path / "sub.json", {})
    r = run_cli("validate", sub, "--archs", archs_path)
    assert r.returncode == 1 and "INVALID" in r.stdout
    assert "arch20: id of the official list is missing" in r.stdout and "arch21:" not in r.stdout
    assert "... and 10 more 'missing' problems (use --limit 0 to see all)" in r.stdout
    r = run_cli("validate", sub, "--archs", archs_path, "--limit", "0")
    assert "arch30: id of the official list is missing" in r.stdout and "more 'missing'" not in r.stdout


@pytest.mark.parametrize("content,message", [
    ([{"code": "1"}], "record 0 is not an object with a string 'id'"),
    ({"arch1": [1]}, "arch1: record is list, not an object"),
    ({"arch1": {"id": "arch2", "top1": 0.5}}, "arch1: record's own id is 'arch2'"),
])
def test_bad_results_records_are_named(tmp_path, content, message):
    _, problems = load_results(write_json(tmp_path / "results.json", content))
    assert message in problems[0].message


def test_results_of_the_wrong_shape(tmp_path):
    with pytest.raises(SubmissionError, match="expected a JSON list of records or an object keyed by id, got int"):
        load_results(write_json(tmp_path / "results.json", 3))
    text = '{"arch1": {"top1": 0.5}, "arch1": {"top1": 0.6}}'
    (tmp_path / "dup.json").write_text(text)
    _, problems = load_results(tmp_path / "dup.json")
    assert "arch1: duplicate id" in problems[0].message


def test_submission_tools_never_import_paddle():
    code = ("import sys, submission.__main__, submission.make, submission.validate, submission.score, "
            "submission.plot, submission.metrics, submission.baselines; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'paddle'))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_unreadable_submission_path_names_it(tmp_path):
    # a directory where a file belongs: the kit's error with the path, not a raw IsADirectoryError
    from submission import jsonfile
    from submission.errors import SubmissionError

    with pytest.raises(SubmissionError, match=f"{tmp_path}: cannot read"):
        jsonfile.load(tmp_path)
