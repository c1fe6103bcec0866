"""A proxy's results as the rank loss's prior (supernet.loss.rank.cost FIELD@RESULTS, 3rd place's
ZenScore-guided variant): the pairs follow the file's scores, unscored paths stay out, bad files are named."""

import json

import paddle.nn.functional as F
import pytest
from test_train_supernet_step import first_batch, image_dir, trainer  # noqa: F401 (image_dir: a fixture)

from encoding import KitError
from infra.config import ConfigError
from supernet.losses import prior_costs, read_cost_table


def write_results(path, rows):
    path.write_text(json.dumps([{"id": f"n{i}", "code": code, "zen": value} for i, (code, value) in enumerate(rows)]))
    return path


def test_read_cost_table_and_prior_costs(tmp_path):
    path = write_results(tmp_path / "r.json", [("c1", 3.0), ("c2", 1.0), ("c1", 9.0)])
    assert read_cost_table(path, "zen") == {"c1": 3.0, "c2": 1.0}  # a repeated code: its first score
    assert prior_costs({"c1": 3.0, "c2": 1.0}, ["c2", "cx", "c1"]) == ([0, 2], [1.0, 3.0])
    with pytest.raises(KitError, match="record 0 of .* has no code and finite 'naswot'"):
        read_cost_table(path, "naswot")
    with pytest.raises(KitError, match="1 distinct 'zen' values"):
        read_cost_table(write_results(tmp_path / "flat.json", [("c1", 1.0), ("c2", 1.0)]), "zen")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(KitError, match="is not JSON"):
        read_cost_table(tmp_path / "bad.json", "zen")


def test_the_prior_orders_the_scored_paths_and_leaves_the_others_out(image_dir, tmp_path):  # noqa: F811
    probe = trainer(image_dir, tmp_path / "probe", "supernet.sampler.num_random=2")
    paths = probe.schedule.paths(0, 0)  # max, min and two random paths: the same schedule below (same seed)
    codes = [p.arch.code() for p in paths]
    assert len(set(codes)) == 4
    # scores that invert the paths' order (the max path lowest), and no score for the last path
    results = write_results(tmp_path / "zen.json", [(c, float(-k)) for k, c in enumerate(codes[:3])])
    t = trainer(image_dir, tmp_path / "run", "supernet.zero_init_residual=false", "supernet.loss.label_smoothing=0",
                "supernet.loss.inplace_distill=false", "supernet.loss.rank.weight=0.5",
                "supernet.loss.rank.margin=0.05", "supernet.sampler.num_random=2",
                f"supernet.loss.rank.cost=zen@{results}")
    x, y = first_batch(t)
    assert [p.arch.code() for p in t.schedule.paths(0, 0)] == codes
    ces = []
    for p in paths[:3]:  # independent route: the hinge written out for the prior's pairs
        t.model.set_active(p.arch)
        ces.append(F.cross_entropy(t.model(x), y).item())
    prior = [0.0, -1.0, -2.0]
    pairs = [(i, j) for i in range(3) for j in range(3) if prior[i] > prior[j]]
    hinge = sum(max(0.0, ces[i] - ces[j] + 0.05) for i, j in pairs) / len(pairs)
    t.train_step(x, y, t.schedule.paths(0, 0), global_step=0)
    assert t.rank_log == {"rank_weight": 0.5, "rank_loss": pytest.approx(hinge, rel=1e-4), "rank_paths": 3}


def test_a_bad_prior_is_refused_before_training(image_dir, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match=r"rank.cost must be macs or params, a proxy computed per sampled code "
                                          r"\(zen, synflow, naswot, gradnorm\) or FIELD@RESULTS .*got 'zenn'$"):
        trainer(image_dir, tmp_path, "supernet.loss.rank.cost=zenn")
    with pytest.raises(ConfigError, match=r"got 'zen@'$"):  # FIELD@ without its file
        trainer(image_dir, tmp_path, "supernet.loss.rank.cost=zen@")
    with pytest.raises(KitError, match="naswot needs evaluate.proxies.batch_size >= 2"):  # the proxy's settings too
        trainer(image_dir, tmp_path, "supernet.loss.rank.cost=naswot", "evaluate.proxies.batch_size=1")
    with pytest.raises(ConfigError, match="absent.json is not a file"):
        trainer(image_dir, tmp_path, f"supernet.loss.rank.cost=zen@{tmp_path / 'absent.json'}")
