"""evaluate.oracle.Oracle: built once, it scores codes from shared weights; several calls give what one call
gives and rebuild nothing; the records equal the evaluator's own on the same supernet; few-shot codes are
routed to their group's copy; the pinned setting names the weights."""

import os

import numpy as np
import paddle
import pytest
from fakedata import write_fashion_like

from encoding import DOCUMENTED, KitError, net_spec
from evaluate import oracle as O
from evaluate.evaluator import SubnetEvaluator
from evaluate.settings import EvalSettings
from infra.atomic import file_digest
from infra.config import resolve
from supernet import ResNet48Supernet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODES = [a.code() for a in (DOCUMENTED.max_arch(), *DOCUMENTED.sample_many(3, 3), DOCUMENTED.min_arch())]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("oracle")
    data = write_fashion_like(d / "fm", n_train=120, n_val=60)
    overrides = [f"data.fashion_mnist_dir={data}", "data.holdout=null", "data.resolution=16", "evaluate.subset=30",
                 "evaluate.batch_size=16", "evaluate.calibration.batches=2", "evaluate.calibration.batch_size=8"]
    cfg = resolve(os.path.join(ROOT, "configs", "demo.yaml"), overrides=overrides)
    paddle.seed(1)
    weights = str(d / "supernet.pdparams")
    paddle.save(ResNet48Supernet(net_spec(cfg)).state_dict(), weights)
    return {"dir": d, "overrides": overrides + [f"evaluate.checkpoint={weights}"], "weights": weights}


def config(setup, *extra):
    return resolve(os.path.join(ROOT, "configs", "demo.yaml"), overrides=setup["overrides"] + list(extra))


def strip(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_several_calls_score_what_one_call_scores_and_build_nothing_again(setup, monkeypatch):
    built = {"eval": 0, "calib": 0, "load": 0}
    for name, key in (("build_eval_set", "eval"), ("build_calibration_batches", "calib")):
        real = getattr(O, name)
        monkeypatch.setattr(O, name, lambda *a, _real=real, _key=key, **k: (built.__setitem__(_key, built[_key] + 1),
                                                                           _real(*a, **k))[1])
    from supernet.weights import WeightsSource

    real_load = WeightsSource.load
    monkeypatch.setattr(WeightsSource, "load", lambda self, *a, **k: (built.__setitem__("load", built["load"] + 1),
                                                                      real_load(self, *a, **k))[1])
    oracle = O.Oracle(config(setup))
    parts = oracle.score(CODES[:2]) + oracle.score(CODES[2:4]) + [oracle.score_one(CODES[4])]
    assert built == {"eval": 1, "calib": 1, "load": 1}
    whole = O.Oracle(config(setup)).score(CODES)
    assert strip(parts) == strip(whole)
    assert oracle.images_per_subnet == 30 + 2 * 8
    calibration, evaluation = oracle.seconds()
    assert calibration > 0 and evaluation > 0


def test_records_equal_the_evaluator_on_the_same_supernet(setup):
    cfg = config(setup)
    settings = EvalSettings.from_config(cfg)
    model = settings.source().load(net_spec(cfg))
    evaluator = SubnetEvaluator(model, O.build_eval_set(cfg, settings, on_gpu=False), 16, "recalibrate",
                                O.build_calibration_batches(cfg, settings))
    assert strip(O.Oracle(cfg).score(CODES[:3])) == strip([evaluator.evaluate(c) for c in CODES[:3]])
    # an oracle over a model in memory (the rank check's, fidelity's) scores that model
    assert strip(O.Oracle(cfg, model=model).score(CODES[:1])) == strip([evaluator.evaluate(CODES[0])])


def test_a_few_shot_split_routes_each_code_to_its_group(setup, tmp_path):
    from supernet.fewshot import parse_groups, split

    cfg = config(setup)
    groups = [{"name": "shallow", "depths": {3: [2, 5]}}, {"name": "deep", "depths": {3: [6, 8]}}]
    m = split(setup["weights"], parse_groups(groups), str(tmp_path / "split"))
    manifest = str(tmp_path / "split" / "manifest.json")
    paddle.seed(2)  # the deep group's copy differs from the source: its codes must score differently
    other = tmp_path / "other.pdparams"
    paddle.save(ResNet48Supernet(net_spec(cfg)).state_dict(), str(other))
    for g in m["groups"]:
        os.makedirs(os.path.dirname(os.path.join(os.path.dirname(manifest), g["weights"])), exist_ok=True)
        src = setup["weights"] if g["name"] == "shallow" else str(other)
        with open(src, "rb") as a, open(os.path.join(os.path.dirname(manifest), g["weights"]), "wb") as b:
            b.write(a.read())
    few = O.Oracle(config(setup, "evaluate.checkpoint=null", f"evaluate.fewshot={manifest}"))
    single = O.Oracle(cfg)
    by_depth = sorted(CODES, key=lambda c: int(c[3]))
    shallow = [c for c in by_depth if int(c[3]) <= 5]
    deep = [c for c in by_depth if int(c[3]) >= 6]
    assert shallow and deep, "the sample needs codes of both groups"
    assert [few.group_of(c) for c in shallow + deep] == ["shallow"] * len(shallow) + ["deep"] * len(deep)
    assert strip(few.score(shallow)) == strip(single.score(shallow))
    assert strip(few.score(deep)) != strip(single.score(deep))
    pinned = few.pinned()["weights"]
    assert pinned["kind"] == "fewshot" and pinned["sha256"].count("+") == 2


def test_the_pinned_setting_names_the_weights_and_an_in_memory_model_has_none(setup):
    oracle = O.Oracle(config(setup))
    pinned = oracle.pinned()
    assert pinned["weights"] == {"kind": "checkpoint", "sha256": file_digest(setup["weights"])}
    assert pinned["calibration"]["batches"] == 2 and pinned["eval"]["subset"] == 30 and pinned["amp"] == "none"
    with pytest.raises(KitError, match="in memory has no weights to pin"):
        O.Oracle(config(setup), model=oracle.source.load(oracle.spec)).pinned()
    assert np.isfinite(oracle.score_one(CODES[0])["loss"])
