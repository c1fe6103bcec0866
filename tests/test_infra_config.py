"""`infra.config`: the one YAML reader the supernet, evaluation and submission packages share."""

import os

import pytest

from infra.config import ConfigError, load_yaml, merge


def test_base_chain_merges_nested_sections_key_by_key(tmp_path):
    os.makedirs(tmp_path / "sub")
    (tmp_path / "root.yaml").write_text("model: {width_mult: 1.0, stem: imagenet}\n"
                                        "evaluate: {subset: 5000, calibration: {batches: 2, batch_size: 256}}\n")
    (tmp_path / "sub" / "mid.yaml").write_text("base: ../root.yaml\nevaluate: {calibration: {batches: 4}}\n")
    (tmp_path / "sub" / "leaf.yaml").write_text("base: mid.yaml\nmodel: {width_mult: 0.5}\nextra: [1, 2]\n")
    cfg = load_yaml(tmp_path / "sub" / "leaf.yaml")
    assert cfg == {"model": {"width_mult": 0.5, "stem": "imagenet"},
                   "evaluate": {"subset": 5000, "calibration": {"batches": 4, "batch_size": 256}},
                   "extra": [1, 2]}


def test_merge_leaves_its_inputs_alone():
    base = {"a": {"b": 1, "c": [1]}}
    out = merge(base, {"a": {"b": 2}})
    out["a"]["c"].append(2)
    assert base == {"a": {"b": 1, "c": [1]}} and out == {"a": {"b": 2, "c": [1, 2]}}


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=f"config file {tmp_path}/none.yaml does not exist"):
        load_yaml(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("model: [\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="list.yaml must hold a mapping at top level"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "orphan.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_yaml(tmp_path / "orphan.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") == {}
