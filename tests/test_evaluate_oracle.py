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


# Under 2 gloo ranks (or one plain process): the evaluation images and calibration batches decoded across
# ranks, with rounds of two images (many all-gather rounds, shares of unequal length), one image for two
# ranks, rank 1 contributing only (keep=False), and rank 1 failing to decode: every case saved per rank.
ACROSS_RANKS = """
import json, os, sys
sys.path.insert(0, {root!r})
from runtime import cpu_speed
cpu_speed.default_threads()
import numpy as np
from evaluate import oracle as O
from evaluate.settings import EvalSettings
from imagedata import datasets, loaders
from infra.config import resolve
from runtime.device import init_distributed

decoded = [0]
real_getitem = datasets.SampleDataset.__getitem__
def counting(self, key):
    decoded[0] += 1
    return real_getitem(self, key)
datasets.SampleDataset.__getitem__ = counting
loaders.GATHER_ROUND_BYTES = 2 * 3 * 32 * 32  # two 3x32x32 uint8 images per rank and round
rank, world = init_distributed()
out, overrides = sys.argv[1], sys.argv[2:]
cfg = resolve({demo!r}, overrides=overrides)
settings = EvalSettings.from_config(cfg)
eval_set = O.build_eval_set(cfg, settings, on_gpu=False, across_ranks=True)
calib = O.build_calibration_batches(cfg, settings, across_ranks=True)
saved = dict(eval_images=eval_set.images.numpy(), eval_labels=eval_set.labels.numpy(),
             calib=np.stack([b.numpy() for b in calib]))
counts = {{"eval_and_calib": decoded[0]}}
one = resolve({demo!r}, overrides=[*overrides, "evaluate.subset=1"])
saved["one"] = O.build_eval_set(one, EvalSettings.from_config(one), on_gpu=False, across_ranks=True).images.numpy()
dataset = O._split_dataset(cfg, "val", augment=False)
got = loaders.gather(dataset, np.arange(len(dataset))[::-1], across_ranks=True, keep=rank == 0)
counts["contributor_got"] = None if got is None else len(got[0])
if got is not None:
    saved["reversed"], saved["reversed_labels"] = got
if rank == 1:  # (a dataset raising inside Paddle's loader thread hangs that loader itself: fail just after it)
    loaders._decode = lambda *a: (_ for _ in ()).throw(RuntimeError("disk gone"))
try:
    loaders.gather(dataset, np.arange(len(dataset)), across_ranks=True)
    counts["error"] = None
except Exception as e:
    counts["error"] = f"{{type(e).__name__}}: {{e}}"
np.savez(os.path.join(out, f"rank{{rank}}.npz"), **saved)
with open(os.path.join(out, f"rank{{rank}}.json"), "w") as f:
    json.dump(counts, f)
"""


@pytest.mark.slow
def test_images_decoded_across_two_ranks_equal_one_process_decoding_them_all(tmp_path):
    import json
    import subprocess
    import sys

    from test_data_images import write_image_tree

    tree = write_image_tree(str(tmp_path / "tree"), per_class=4, val_per_class=3)  # 9 val images, a corrupt one
    driver = tmp_path / "driver.py"
    driver.write_text(ACROSS_RANKS.format(root=ROOT, demo=os.path.join(ROOT, "configs", "demo.yaml")))
    overrides = ["device=cpu", "data.name=imagenet", f"data.image_dir={tree}", "data.layout=folders",
                 "data.holdout=null", "data.resolution=32", "data.val_resize=36", "data.num_workers=0",
                 "model.in_channels=3", "evaluate.subset=0", "evaluate.calibration.mode=recalibrate",
                 "evaluate.calibration.batches=3", "evaluate.calibration.batch_size=4",
                 "evaluate.calibration.augment=true"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    runs = {}
    for nproc in (1, 2):
        out = tmp_path / f"out{nproc}"
        out.mkdir()
        cmd = [sys.executable, str(driver), str(out), *overrides]
        if nproc > 1:
            cmd[1:1] = ["-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "logs")]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("*"))) if nproc > 1 else ""
        assert proc.returncode == 0, (proc.stdout + proc.stderr + logs)[-4000:]
        runs[nproc] = [(dict(np.load(out / f"rank{r}.npz")), json.loads((out / f"rank{r}.json").read_text()))
                       for r in range(nproc)]
    (alone, alone_counts), = runs[1]
    assert alone["eval_images"].shape == (9, 3, 32, 32) and alone["calib"].shape == (3, 4, 3, 32, 32)
    for r, (arrays, _) in enumerate(runs[2]):
        for key in ("eval_images", "eval_labels", "calib", "one"):  # bit for bit, on both ranks
            assert np.array_equal(arrays[key], alone[key]), (r, key)
    # each image decoded once in the job: 9 evaluation + 12 calibration images, shared 5 + 6 and 4 + 6
    (rank0, counts0), (rank1, counts1) = runs[2]
    assert alone_counts["eval_and_calib"] == 21
    assert (counts0["eval_and_calib"], counts1["eval_and_calib"]) == (11, 10)
    # a contributing rank gets nothing back; the keeping one gets the images in the order asked for
    assert counts1["contributor_got"] is None and counts0["contributor_got"] == 9
    assert np.array_equal(rank0["reversed"], alone["reversed"]) and "reversed" not in rank1
    assert np.array_equal(rank0["reversed_labels"], alone["reversed_labels"])
    assert np.array_equal(alone["reversed_labels"][::-1], alone["eval_labels"])
    # a rank that cannot decode its share stops both: its own error, and one line naming it on the other
    assert counts1["error"] == "RuntimeError: disk gone" and alone_counts["error"] is None
    assert counts0["error"] == ("DataError: rank(s) 1 could not decode their share of the images "
                                "(their logs say why)")
