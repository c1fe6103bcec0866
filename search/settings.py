"""The `search:` section read once into a frozen, checked settings object (bad values refused before
anything loads), and the checks of what a search is given (its screening setting, its weights' space)."""

import copy
import os
from dataclasses import dataclass

from encoding import get_space
from infra.config import exact_keys, get, set_key
from infra.errors import KitError

from .budget import budget_tables, objective_costs, parse_budgets

ALGORITHMS = ("nsga2", "random")
SEARCH_KEYS = ("out", "budgets", "costs", "space", "algorithm", "population", "offspring", "generations",
               "mutation_prob", "crossover_prob", "depth_uniform", "seed", "screen", "rescore_top", "cache",
               "background", "progress", "latency")
LATENCY_KEYS = ("batch_size", "holdout", "transfer", "transfer_codes")
FIXED_SECTIONS = ("model", "device")
FIXED_KEYS = ("evaluate.checkpoint", "evaluate.official", "evaluate.fewshot")


def _int(cfg, key, minimum):
    value = get(cfg, key, None)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise KitError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _prob(cfg, key):
    value = get(cfg, key, None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise KitError(f"{key} must be a probability in [0, 1], got {value!r}")
    return float(value)


def screen_config(cfg):
    """The config of the cheap screening setting (search.screen: config keys -> values), or None."""
    screen = get(cfg, "search.screen", None)
    if not screen:
        return None
    if not isinstance(screen, dict):
        raise KitError(f"search.screen must be a mapping of evaluate.* / data.* keys to values, got {screen!r}")
    c = copy.deepcopy(cfg)
    for key, value in screen.items():
        if str(key).split(".")[0] in FIXED_SECTIONS or key in FIXED_KEYS or not str(key).startswith(
                ("evaluate.", "data.")):
            raise KitError(f"search.screen changes {key!r}: a screening setting varies evaluate.* and data.* keys "
                           f"(the model, its weights and the device are those of the full setting)")
        set_key(c, key, value)
    return c


def space_within(inner, outer):
    """Every code of `inner` is a code of `outer`."""
    return (inner.size_code == outer.size_code and inner.stem_digits <= outer.stem_digits
            and all(a <= b for a, b in zip(inner.stage_digits, outer.stage_digits, strict=True))
            and all(lo2 <= lo1 and hi1 <= hi2 for (lo1, hi1), (lo2, hi2) in zip(inner.depth_ranges, outer.depth_ranges,
                                                                                 strict=True)))


def check_weights_space(kind, path, space):
    """Refuse a training checkpoint whose run (its config.yaml beside it or one folder up) trained another
    space than the one searched: the search would score digits the supernet never trained."""
    from infra.config import load_yaml

    if kind != "checkpoint":
        return
    here = os.path.dirname(os.path.abspath(path))
    for folder in (here, os.path.dirname(here)):
        run_config = os.path.join(folder, "config.yaml")
        if os.path.isfile(run_config):
            trained = get(load_yaml(run_config), "supernet.sampler.space", None)
            if trained and not space_within(space, get_space(trained)):
                raise KitError(f"checkpoint {path} is of space {trained!r} (its run's {run_config}): searching space "
                               f"{space.name!r} would score codes it never trained; use --space {trained}")
            return


@dataclass(frozen=True)
class SearchSettings:
    space: object
    algorithm: str
    budgets: tuple
    costs: tuple
    population: int
    offspring: int
    generations: int
    mutation_prob: float
    crossover_prob: float
    depth_uniform: bool
    seed: int
    rescore_top: int
    cache: str | None
    out: str
    background: str | None
    latency_batch: int
    latency_holdout: float
    transfer: str | None
    transfer_codes: int
    progress: bool

    @classmethod
    def from_config(cls, cfg):
        exact_keys(get(cfg, "search", None), SEARCH_KEYS, "search")  # every default: configs/imagenet.yaml
        exact_keys(get(cfg, "search.latency"), LATENCY_KEYS, "search.latency")
        out = get(cfg, "search.out")
        if not out:
            raise KitError("--out is required (config key search.out)")
        algorithm = get(cfg, "search.algorithm")
        if algorithm not in ALGORITHMS:
            raise KitError(f"search.algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
        texts = get(cfg, "search.budgets") or []
        if isinstance(texts, str):
            texts = [texts]
        budgets = tuple(parse_budgets(texts))
        population = _int(cfg, "search.population", 2)
        return cls(
            space=get_space(get(cfg, "search.space")),
            algorithm=algorithm,
            budgets=budgets,
            costs=tuple(objective_costs(budgets, get(cfg, "search.costs"))),
            population=population,
            offspring=_int(cfg, "search.offspring", 1) if get(cfg, "search.offspring") else population,
            generations=_int(cfg, "search.generations", 0),
            mutation_prob=_prob(cfg, "search.mutation_prob"),
            crossover_prob=_prob(cfg, "search.crossover_prob"),
            depth_uniform=bool(get(cfg, "search.depth_uniform")),
            seed=_int(cfg, "search.seed", 0),
            rescore_top=_int(cfg, "search.rescore_top", 0),
            cache=get(cfg, "search.cache"),
            out=out,
            background=get(cfg, "search.background"),
            latency_batch=_int(cfg, "search.latency.batch_size", 1),
            latency_holdout=float(get(cfg, "search.latency.holdout") or 0.0),
            transfer=get(cfg, "search.latency.transfer"),
            transfer_codes=_int(cfg, "search.latency.transfer_codes", 3),
            progress=bool(get(cfg, "search.progress")),
        )

    @property
    def tables(self):
        """{cost: the latency table its predictor is fitted on} (latency_ms, energy_mj)."""
        return budget_tables(self.budgets)

    @property
    def latency_table(self):
        return self.tables.get("latency_ms")

    @property
    def energy_table(self):
        return self.tables.get("energy_mj")
