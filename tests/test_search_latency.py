"""The latency predictor (search.latency_model) and the score cache (search.cache), without Paddle."""

import json

import numpy as np
import pytest

from encoding import RELEASED, NetSpec, widths
from evaluate.latency import TABLE_KIND, load_table
from search.cache import ScoreCache, setting_digest
from search.latency_model import LatencyModelError, LatencyPredictor, features, fit_table, transfer

SPEC = NetSpec(width_mult=0.125, divisor=2, in_channels=1, num_classes=10)
RES = 56
STAGE_HW = (14, 7, 4, 2)  # 56 px: stem stride 2 -> 28, max-pool -> 14, then stage strides 1, 2, 2, 2


def stage_terms(arch):
    """Per stage (blocks, conv MACs), worked out from encoding.widths: the other route to the features."""
    w = widths(arch, SPEC)
    cur, out = w.stem, []
    for hw, stage in zip(STAGE_HW, w.stages, strict=True):
        macs = 0
        for c1, c2 in stage:
            macs += 9 * (cur * c1 + c1 * c2) * hw * hw
            cur = c2
        out.append((len(stage), macs))
    return out


def known_latency(arch, scale=1.0, offset=0.0):
    """0.4 ms + 0.05 ms per block + 2 ns per MAC (stage 3 costs 1.5x), then scaled and offset."""
    terms = stage_terms(arch)
    ms = 0.4 + sum(0.05 * d + 2e-6 * m * (1.5 if s == 2 else 1.0) for s, (d, m) in enumerate(terms))
    return scale * ms + offset


def table(archs, latency, model=None, resolution=RES, energy=None):
    """A synthetic latency table; with `energy` (code -> mJ per image) also its energy column."""
    measured = {"measured": True, "method": "rapl"} if energy else {"measured": False, "reason": "no RAPL here"}
    return {"kind": TABLE_KIND, "format": 1, "device": "synthetic", "resolution": resolution, "batch_sizes": [1],
            "model": model or SPEC.to_dict(), "energy": measured,
            "codes": [{"id": f"a{i}", "code": a.code(), "macs": 0, "params": 0,
                       "latency": {"1": {"median_ms": float(latency(a)), "iqr_ms": 0.0}},
                       "energy": {"1": {"mj_per_image": float(energy(a)), "joules": 0.0, "images": 1}} if energy
                       else None}
                      for i, a in enumerate(archs)]}


def known_energy(arch):
    """2 mJ + 0.3 mJ per block + 5 nJ per MAC of stages 1-2 and 9 nJ per MAC of stages 3-4: not latency's mix."""
    return 2.0 + sum(0.3 * d + m * (5e-6 if s < 2 else 9e-6) for s, (d, m) in enumerate(stage_terms(arch)))


ARCHS = RELEASED.sample_many(80, seed=5, depth_uniform=True)


def test_features_match_the_hand_worked_stage_terms():
    A = features(ARCHS[:10], SPEC, RES)
    for row, arch in zip(A, ARCHS[:10], strict=True):
        terms = stage_terms(arch)
        assert row[0] == 1.0
        assert [row[1 + 3 * s] for s in range(4)] == [d for d, _ in terms]
        assert [row[3 + 3 * s] for s in range(4)] == [m for _, m in terms]


def test_a_known_linear_latency_is_recovered(tmp_path):
    path = tmp_path / "lat.json"
    path.write_text(json.dumps(table(ARCHS, known_latency)))
    model, report = fit_table(load_table(path), SPEC, RES, batch_size=1, holdout=0.25, seed=0, path=str(path))
    assert report["fit"] == 60 and report["held_out"] == 20 and report["srcc"] == pytest.approx(1.0)
    assert report["srcc_macs"] < 0.99  # MACs alone miss the per-block time and stage 3's dearer MACs
    fresh = RELEASED.sample_many(30, seed=99)
    assert model.predict(fresh) == pytest.approx([known_latency(a) for a in fresh], rel=1e-6)
    # (the weights themselves are not unique here: at 1/8 width every released stage-1 digit is 8 channels, so
    # stage 1's channels and MACs are multiples of its depth; the predictions are what must be right)
    assert (model.weights >= 0).all()


def test_a_known_linear_energy_is_recovered_from_the_tables_energy_column():
    model, report = fit_table(table(ARCHS, known_latency, energy=known_energy), SPEC, RES, batch_size=1,
                              holdout=0.25, seed=0, target="energy_mj")
    assert report["target"] == "energy_mj" and report["fit"] == 60 and report["held_out"] == 20
    assert report["srcc"] == pytest.approx(1.0) and report["srcc_macs"] < 0.99
    fresh = RELEASED.sample_many(30, seed=99)
    assert model.predict(fresh) == pytest.approx([known_energy(a) for a in fresh], rel=1e-6)
    assert not np.allclose(model.predict(fresh), [known_latency(a) for a in fresh])  # its own column, not latency's
    latency, _ = fit_table(table(ARCHS, known_latency, energy=known_energy), SPEC, RES, 1)
    assert latency.predict(fresh) == pytest.approx([known_latency(a) for a in fresh], rel=1e-6)


def test_an_energy_predictor_refuses_a_table_without_energy():
    with pytest.raises(LatencyModelError, match=r"^t.json has no energy measurements: no RAPL here; an "
                                                r"energy_mj budget needs a table from `python -m evaluate latency` "
                                                r"where RAPL or NVML reads energy$"):
        fit_table(table(ARCHS, known_latency), SPEC, RES, 1, path="t.json", target="energy_mj")
    old = table(ARCHS, known_latency)
    del old["energy"]
    with pytest.raises(LatencyModelError, match=r"has no energy measurements: the table predates energy"):
        fit_table(old, SPEC, RES, 1, path="t.json", target="energy_mj")
    other = dict(SPEC.to_dict(), width_mult=0.25)  # another config's table: refused as for latency
    with pytest.raises(LatencyModelError, match=r"a latency table of another config"):
        fit_table(table(ARCHS, known_latency, model=other, energy=known_energy), SPEC, RES, 1, target="energy_mj")


def test_transfer_refits_on_a_few_codes_of_a_second_table():
    source, _ = fit_table(table(ARCHS, known_latency), SPEC, RES, 1)
    # another device: everything 3x slower plus 1 ms, and blocks of stage 1 cost extra launch time
    other = table(ARCHS, lambda a: known_latency(a, 3.0, 1.0) + 0.3 * a.depths[0])
    model, report = transfer(source, other, 1, n_codes=30, seed=0)
    assert report["fit"] == 30 and report["held_out"] == 50
    assert report["srcc"] == pytest.approx(1.0) and report["srcc_source"] < 1.0
    assert all(w >= 0 for w in model.weights)


def test_the_prediction_never_drops_when_a_code_grows():
    model, _ = fit_table(table(ARCHS, lambda a: known_latency(a) * (1 + 0.1 * np.sin(len(a.code()) + a.stem))),
                         SPEC, RES, 1)
    assert (model.weights >= 0).all()
    small = model.predict([RELEASED.min_arch()])[0]
    assert (model.predict(ARCHS) >= small).all()


def test_a_table_of_another_config_or_batch_size_is_refused():
    other = dict(SPEC.to_dict(), width_mult=0.25)
    with pytest.raises(LatencyModelError, match=r"a latency table of another config \(model model.width_mult: "
                                                r"was 0.25, now 0.125\)"):
        fit_table(table(ARCHS, known_latency, model=other), SPEC, RES, 1, path="t.json")
    with pytest.raises(LatencyModelError, match="measured at 224 px, this search's input is 56 px"):
        fit_table(table(ARCHS, known_latency, resolution=224), SPEC, RES, 1, path="t.json")
    with pytest.raises(LatencyModelError, match=r"no batch size 32 \(it has \[1\]\)"):
        fit_table(table(ARCHS, known_latency), SPEC, RES, 32, path="t.json")
    with pytest.raises(LatencyModelError, match="too few to fit"):
        fit_table(table(ARCHS[:4], known_latency), SPEC, RES, 1, holdout=0.25, path="t.json")


def test_predictor_pickles():
    import pickle

    model, _ = fit_table(table(ARCHS, known_latency), SPEC, RES, 1)
    again = pickle.loads(pickle.dumps(model))
    assert isinstance(again, LatencyPredictor) and (again.predict(ARCHS) == model.predict(ARCHS)).all()


# --- the score cache --------------------------------------------------------------------------

def test_cache_round_trip_and_a_torn_last_record(tmp_path):
    path = tmp_path / "scores.jsonl"
    digest = setting_digest({"eval": {"subset": 20}})
    assert digest == setting_digest({"eval": {"subset": 20}}) != setting_digest({"eval": {"subset": 40}})
    cache = ScoreCache(path)
    cache.add_setting(digest, {"eval": {"subset": 20}})
    codes = [a.code() for a in ARCHS[:3]]
    cache.put(digest, codes[0], {"top1": 0.5, "top5": 0.9, "loss": 1.2, "seconds": 3.0})
    cache.put(digest, codes[1], {"top1": 0.25, "top5": 0.5, "loss": 2.0})
    cache.close()
    with open(path, "ab") as f:
        f.write(b'{"id": "' + codes[2].encode() + b'", "setting": "')  # killed mid-record
    again = ScoreCache(path)
    assert again.get(digest, codes[0]) == {"top1": 0.5, "top5": 0.9, "loss": 1.2}
    assert again.missing(digest, [codes[2], codes[0], codes[2], codes[1]]) == [codes[2]]
    assert again.missing("another", codes[:1]) == codes[:1] and again.count(digest) == 2
    assert again.settings == {digest: {"eval": {"subset": 20}}}
    assert path.read_text().endswith("}\n")  # the torn record was cut away before anything is appended
    reader = ScoreCache(path, writer=False)
    reader.put(digest, codes[2], {"top1": 0.1, "top5": 0.2, "loss": 3.0})  # in memory only
    assert len(path.read_text().splitlines()) == 3
