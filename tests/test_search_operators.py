"""search/ without Paddle: genes <-> codes, the operators keep codes valid and within budget over many
generations (property-based), the seeded loop is deterministic and resumes from a pickle, budgets and
the hypervolume."""

import pickle
import re
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoding import DOCUMENTED, RELEASED, NetSpec, costs, format_code
from search.budget import (
    BudgetError,
    CostModel,
    budget_tables,
    check_reachable,
    objective_costs,
    parse_budget,
    parse_budgets,
)
from search.engine import Search, hypervolume, nondominated, rng_scope
from search.genome import N_VAR, Genome
from search.operators import BudgetRepair, ResampleMutation, UniformCrossover
from search.settings import SearchSettings

SPEC = NetSpec(width_mult=0.125, divisor=2, in_channels=1, num_classes=10)
RES = 56
COSTS = CostModel(SPEC, RES)
SPACES = {"released": RELEASED, "documented": DOCUMENTED}
MIN_MACS = {name: int(costs([s.min_arch()], SPEC, RES)[1][0]) for name, s in SPACES.items()}
MAX_MACS = {name: int(costs([s.max_arch()], SPEC, RES)[1][0]) for name, s in SPACES.items()}


def make_settings(space=RELEASED, budgets=("macs=3e6",), algorithm="nsga2", population=12, seed=0, generations=5):
    budgets = tuple(parse_budgets(budgets))
    return SearchSettings(space=space, algorithm=algorithm, budgets=budgets, costs=tuple(objective_costs(budgets,
                                                                                                         ["macs"])),
                          population=population, offspring=population, generations=generations, mutation_prob=0.1,
                          crossover_prob=0.9, depth_uniform=True, seed=seed, rescore_top=2, cache=None, out="unused",
                          background=None, latency_batch=1, latency_holdout=0.25, transfer=None, transfer_codes=3,
                          progress=False)


def fake_score(codes):
    """A deterministic 'accuracy' that grows with MACs but not monotonically (so the front is not trivial)."""
    macs = costs(codes, SPEC, RES)[1]
    return [{"top1": float(np.tanh(m / 3e6) * 0.8 + (zlib.crc32(c.encode()) % 1000) * 1e-5), "top5": 0.9, "loss": 1.0}
            for c, m in zip(codes, macs, strict=True)]


# --- genes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("space", [RELEASED, DOCUMENTED], ids=lambda s: s.name)
def test_genes_round_trip_every_sampled_code(space):
    genome = Genome(space)
    rng = np.random.default_rng(3)
    for arch in space.sample_many(200, seed=1, depth_uniform=True):
        x = genome.encode(arch, hidden=rng.integers(genome.lower, genome.upper + 1))
        assert genome.decode(x) == arch and genome.within_bounds(x)[0]
    assert genome.n_var == N_VAR == 31
    assert genome.decode(genome.min_genes()) == space.min_arch()


def test_released_bounds_are_the_spaces_digit_ranges():
    g = Genome(RELEASED)
    assert list(g.lower[:4]) == [2, 2, 2, 2] and list(g.upper[:4]) == [5, 5, 8, 5]
    assert g.upper[4] == 3  # stem: min(stem digits 3, stage-1 digits 3)
    assert list(g.upper[5:8]) == [3, 5, 7]  # tied conv2 digits of stages 2-4
    assert list(g.upper[8:13]) == [3] * 5 and list(g.upper[13:18]) == [3] * 5
    assert list(g.upper[18:26]) == [5] * 8 and list(g.upper[26:31]) == [7] * 5


@settings(max_examples=60, deadline=None)
@given(space=st.sampled_from(["released", "documented"]), data=st.data())
def test_any_gene_vector_in_bounds_decodes_to_a_valid_code(space, data):
    g = Genome(SPACES[space])
    x = [data.draw(st.integers(int(lo), int(hi))) for lo, hi in zip(g.lower, g.upper, strict=True)]
    code = format_code(g.decode(x))
    arch = SPACES[space].validate(code)  # ties, padding `00`, digit ranges: raises if anything is off
    assert code[26 + 2 * arch.depths[2]:42] == "00" * (8 - arch.depths[2])


# --- operators and repair ---------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=st.sampled_from(["released", "documented"]), frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_repair_puts_any_code_within_the_budget(space, frac, seed):
    limit = MIN_MACS[space] + frac * (MAX_MACS[space] - MIN_MACS[space])
    g = Genome(SPACES[space])
    repair = BudgetRepair(g, parse_budgets([f"macs={limit:.6e}"]), COSTS)
    with rng_scope({"numpy": np.random.RandomState(seed).get_state(), "python": __import__("random").getstate()}):
        X = np.random.randint(g.lower, g.upper + 1, size=(20, N_VAR))
        R = repair._do(None, X)
    assert g.within_bounds(R).all()
    macs = costs(g.codes(R), SPEC, RES)[1]
    assert (macs <= float(f"{limit:.6e}")).all()
    before = costs(g.codes(X), SPEC, RES)[1]
    kept = before <= float(f"{limit:.6e}")
    assert (R[kept] == X[kept]).all()  # codes already within the budget are left alone


def test_crossover_takes_each_gene_from_a_parent_and_mutation_stays_in_bounds():
    g = Genome(RELEASED)
    rng = np.random.default_rng(0)
    X = np.stack([g.sample(10, rng), g.sample(10, rng)])
    with rng_scope({"numpy": np.random.RandomState(1).get_state(), "python": __import__("random").getstate()}):
        a, b = UniformCrossover()._do(None, X)
        M = ResampleMutation(g, prob_gene=0.5)._do(None, X[0])
    assert ((a == X[0]) | (a == X[1])).all() and ((b == X[0]) | (b == X[1])).all()
    differ = X[0] != X[1]
    assert ((a == X[0]) == (b == X[1]))[differ].all()  # complementary children
    assert g.within_bounds(M).all() and (M != X[0]).any()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=st.sampled_from(["released", "documented"]), frac=st.floats(0.02, 0.6), seed=st.integers(0, 999),
       algorithm=st.sampled_from(["nsga2", "random"]))
def test_every_offspring_over_many_generations_is_valid_and_within_budget(space, frac, seed, algorithm):
    limit = float(f"{MIN_MACS[space] + frac * (MAX_MACS[space] - MIN_MACS[space]):.6e}")
    s = make_settings(SPACES[space], (f"macs={limit:.6e}",), algorithm, population=10, seed=seed)
    asked = []

    def score(codes):
        asked.extend(codes)
        return fake_score(codes)

    search = Search(s, COSTS)
    for _ in range(15):
        if search.step(score, COSTS) is None:
            break
    assert len(asked) >= 10
    for code in asked:
        SPACES[space].validate(code)
    assert (costs(asked, SPEC, RES)[1] <= limit).all()


def test_several_budgets_keep_codes_that_meet_one_of_them():
    s = make_settings(budgets=("macs=2.2e6", "params=1.5e5"), population=10)
    asked = []
    search = Search(s, COSTS)
    for _ in range(6):
        search.step(lambda codes: (asked.extend(codes), fake_score(codes))[1], COSTS)
    params, macs = costs(asked, SPEC, RES)
    assert ((macs <= 2.2e6) | (params <= 1.5e5)).all()
    assert not ((macs <= 2.2e6) & (params <= 1.5e5)).all()  # each budget alone admits codes the other refuses
    best = search.best_per_budget()
    assert costs([best["macs=2.2e6"]], SPEC, RES)[1][0] <= 2.2e6
    assert costs([best["params=1.5e5"]], SPEC, RES)[0][0] <= 1.5e5


# --- determinism and resume -------------------------------------------------------------------

def test_same_seed_same_run_and_another_seed_another():
    def run(seed):
        search = Search(make_settings(seed=seed), COSTS)
        for _ in range(5):
            search.step(fake_score, COSTS)
        return search.history, search.front_codes()

    assert run(4) == run(4)
    assert run(4)[1] != run(5)[1]


def test_a_search_resumed_from_its_pickle_ends_as_the_uninterrupted_one():
    whole = Search(make_settings(), COSTS)
    for _ in range(6):
        whole.step(fake_score, COSTS)
    part = Search(make_settings(), COSTS)
    for _ in range(3):
        part.step(fake_score, COSTS)
    np.random.seed(123)  # the caller's global random state must not leak into the search
    resumed = pickle.loads(pickle.dumps(part))
    for _ in range(3):
        resumed.step(fake_score, COSTS)
    assert resumed.history == whole.history and resumed.front_codes() == whole.front_codes()


def test_the_search_leaves_the_callers_random_state_alone():
    np.random.seed(7)
    expected = np.random.random()
    np.random.seed(7)
    search = Search(make_settings(), COSTS)
    search.step(fake_score, COSTS)
    assert np.random.random() == expected


# --- budgets ----------------------------------------------------------------------------------

def test_budget_texts():
    b = parse_budget("macs=2.5e9,latency_ms=5@t.json")
    assert [(lim.cost, lim.limit, lim.table) for lim in b.limits] == [("macs", 2.5e9, None),
                                                                       ("latency_ms", 5.0, "t.json")]
    assert b.met({"macs": np.array([2e9, 3e9, 2e9]), "latency_ms": np.array([4.0, 4.0, 6.0])}).tolist() == [
        True, False, False]
    e = parse_budget("energy_mj=12.5@t.json, latency_ms=5@t.json")
    assert [(lim.cost, lim.limit, lim.table) for lim in e.limits] == [("energy_mj", 12.5, "t.json"),
                                                                       ("latency_ms", 5.0, "t.json")]
    assert e.met({"energy_mj": np.array([12.5, 13.0]), "latency_ms": np.array([1.0, 1.0])}).tolist() == [True, False]
    assert str(e.limits[0]) == "energy_mj<=12.5@t.json"


def test_energy_and_latency_budgets_each_name_one_table():
    budgets = parse_budgets(["energy_mj=3@e.json", "latency_ms=5@l.json,macs=1e9", "energy_mj=2@e.json"])
    assert budget_tables(budgets) == {"energy_mj": "e.json", "latency_ms": "l.json"}
    assert objective_costs(budgets, ["macs"]) == ["energy_mj", "latency_ms", "macs"]
    with pytest.raises(BudgetError, match=r"energy_mj budgets name several tables \(a.json, b.json\)"):
        parse_budgets(["energy_mj=3@a.json", "energy_mj=2@b.json"])
    with pytest.raises(BudgetError, match=r"energy_mj as an objective needs a latency table: give --budget "
                                          r"energy_mj=X@TABLE.json"):
        objective_costs([], ["macs", "energy_mj"])  # search.costs without a budget naming the table


@pytest.mark.parametrize("text, message", [
    ("flops=1e9", "unknown cost 'flops'; known: macs, params, latency_ms, energy_mj"),
    ("macs", "is not of the form cost=limit"),
    ("macs=-3", "is not a positive number"),
    ("macs=abc", "is not a positive number"),
    ("latency_ms=5", "latency_ms budgets name their latency table"),
    ("energy_mj=5", "energy_mj budgets name their latency table (from python -m evaluate latency), e.g. "
                    "energy_mj=5@latency.json"),
    ("params=5@t.json", "only latency_ms and energy_mj take a table"),
    ("energy_mj=0@t.json", "is not a positive number"),
    ("macs=1e9,macs=2e9", "limits one cost twice"),
])
def test_bad_budgets_are_named(text, message):
    with pytest.raises(BudgetError, match=re.escape(message)):
        parse_budget(text)


def test_a_budget_no_code_can_meet_names_the_cheapest_codes_cost():
    with pytest.raises(BudgetError) as e:
        check_reachable(parse_budgets(["macs=1e5"]), COSTS, RELEASED)
    assert str(e.value) == (f"budget 'macs=1e5' cannot be met in space 'released': its cheapest code "
                            f"{RELEASED.min_arch().code()} has {MIN_MACS['released']:.6g} MACs (limit 100000)")
    check_reachable(parse_budgets([f"macs={MIN_MACS['released']}"]), COSTS, RELEASED)  # exactly the cheapest: fine


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_the_spaces_smallest_code_is_the_cheapest_under_every_cost(seed):
    arch = RELEASED.sample(np.random.default_rng(seed))
    p, m = costs([arch, RELEASED.min_arch()], SPEC, RES)
    assert p[0] >= p[1] and m[0] >= m[1]


# --- the front and its hypervolume ------------------------------------------------------------

def test_hypervolume_and_front_by_hand():
    F = np.array([[0.5, 0.5], [0.2, 0.8], [0.6, 0.6], [0.9, 0.1]])
    assert nondominated(F).tolist() == [0, 1, 3]
    # boxes to (1, 1): [0.5,1]x[0.5,1] + [0.2,0.5]x[0.8,1] + [0.9,1]x[0.1,0.5] = 0.25 + 0.06 + 0.04
    assert hypervolume(F[[0, 1, 3]]) == pytest.approx(0.35)
    assert hypervolume(F) == pytest.approx(0.35)


def test_summary_compares_hypervolumes_at_an_equal_number_of_codes(tmp_path, capsys):
    import json

    from search.__main__ import main

    def folder(name, algorithm, seed, points):
        d = tmp_path / name
        d.mkdir()
        (d / "search_log.jsonl").write_text("".join(json.dumps({"generation": g, "cumulative_evaluations": n,
                                                                "hypervolume": hv}) + "\n"
                                                    for g, (n, hv) in enumerate(points)))
        (d / "front.json").write_text(json.dumps({"algorithm": algorithm, "seed": seed}))
        return str(d)

    a = folder("a", "nsga2", 0, [(10, 0.1), (20, 0.3), (30, 0.5)])
    b = folder("b", "nsga2", 1, [(10, 0.2), (20, 0.5)])
    c = folder("c", "random", 0, [(10, 0.2), (25, 0.25), (40, 0.4)])
    assert main(["summary", a, b, c]) == 0
    out = capsys.readouterr().out
    assert "hypervolume after 20 scored codes" in out  # the fewest any folder reached
    assert f"{c}: random seed 0, 0.2000 (final 0.4000 after 40)" in out  # 25 > 20: the generation before
    assert "nsga2: 0.4000 +- 0.1414 (sd) over 2 runs" in out and "random: 0.2000 over 1 runs" in out
    assert main(["summary", a, c, "--at", "35"]) == 0
    assert "nsga2: 0.5000 over 1 runs" in capsys.readouterr().out
    assert main(["summary", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: no search_log.jsonl (not a search folder?)"


def test_the_search_section_is_checked_when_read():
    from infra.config import default_config, load_yaml, set_key
    from infra.errors import KitError
    from search.settings import screen_config

    cfg = load_yaml(default_config("demo"))
    set_key(cfg, "search.out", "somewhere")
    s = SearchSettings.from_config(cfg)
    assert (s.population, s.offspring, s.generations, s.space.name, s.costs) == (16, 16, 8, "released", ("macs",))
    assert get_key(screen_config(cfg), "evaluate.subset") == 500 and get_key(cfg, "evaluate.subset") is None
    for key, value, message in [
        ("search.algorithm", "annealing", "search.algorithm must be one of nsga2, random, got 'annealing'"),
        ("search.space", "tiny", "unknown search space 'tiny'"),
        ("search.mutation_prob", 1.5, "search.mutation_prob must be a probability in [0, 1], got 1.5"),
        ("search.costs", ["flops"], "search.costs: unknown cost 'flops'"),
        ("search.costs", ["latency_ms"], "latency_ms as an objective needs a latency table"),
        ("search.screen", {"model.width_mult": 0.5}, "search.screen changes 'model.width_mult'"),
        ("search.out", None, "--out is required (config key search.out)"),
    ]:
        bad = __import__("copy").deepcopy(cfg)
        set_key(bad, key, value)
        with pytest.raises(KitError, match=re.escape(message)):
            SearchSettings.from_config(bad)
            screen_config(bad)


def get_key(cfg, key):
    from infra.config import get

    return get(cfg, key)


def test_without_a_budget_the_whole_front_over_every_cost_asked():
    import dataclasses

    s = dataclasses.replace(make_settings(budgets=()), costs=("macs", "params"))
    search = Search(s, COSTS)
    for _ in range(4):
        search.step(fake_score, COSTS)
    assert search.best_per_budget() == {}
    front = search.front_codes()
    records = [search.archive[c] for c in front]
    F = search.objectives(records)
    assert F.shape == (len(front), 3) and len(nondominated(F)) == len(front)
    others = [c for c in search.archive if c not in front]
    assert others and all(  # every code off the front is dominated by one on it
        any((fo <= fx).all() and (fo < fx).any() for fo in F)
        for fx in search.objectives([search.archive[c] for c in others]))
    assert max(costs(list(search.archive), SPEC, RES)[1]) > 4e6  # unconstrained: large codes are tried too
