"""Budgets (`macs=2.5e9`, `params=2e7`, `latency_ms=5@TABLE.json`, `energy_mj=20@TABLE.json`, or several
joined by commas, all of which must hold) and the costs they limit, computed from codes alone.

Each `--budget` is one question, "the most accurate code under this budget"; a search with several
keeps every code that meets at least one of them, and reports the best code per budget. Costs:
  macs, params    encoding.costs at the config's model and input resolution;
  latency_ms      the latency predictor (search.latency_model) fitted on the table after `@`;
  energy_mj       the same predictor fitted on that table's energy per image (where it was measured).
"""

import re
from dataclasses import dataclass

import numpy as np

from encoding import costs, format_code
from infra.errors import KitError

COST_NAMES = ("macs", "params", "latency_ms", "energy_mj")
UNITS = {"macs": "MACs", "params": "params", "latency_ms": "ms", "energy_mj": "mJ"}
TABLE_COSTS = ("latency_ms", "energy_mj")  # predicted from a latency table (search.latency_model.TARGETS)


class BudgetError(KitError):
    """A budget that cannot be read, names an unknown cost, or no code of the space can meet."""


@dataclass(frozen=True)
class Limit:
    cost: str
    limit: float
    table: str = None  # latency_ms, energy_mj: the latency table the predictor is fitted on

    def __str__(self):
        return f"{self.cost}<={self.limit:g}" + (f"@{self.table}" if self.table else "")


@dataclass(frozen=True)
class Budget:
    limits: tuple
    text: str

    def __str__(self):
        return self.text

    def met(self, values):
        """Bool array: which rows of `values` (cost name -> array) meet every limit."""
        n = len(next(iter(values.values())))
        ok = np.ones(n, dtype=bool)
        for lim in self.limits:
            ok &= np.asarray(values[lim.cost], dtype=np.float64) <= lim.limit
        return ok

    def excess(self, values):
        """Per row, the largest cost / limit over the limits (<= 1: met)."""
        ratios = [np.asarray(values[lim.cost], dtype=np.float64) / lim.limit for lim in self.limits]
        return np.max(np.stack(ratios), axis=0)


_NUMBER = re.compile(r"^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$")


def parse_budget(text):
    """A Budget from `cost=limit[@table][,cost=limit...]`."""
    text = str(text).strip()
    limits = []
    for term in text.split(","):
        term = term.strip()
        if "=" not in term:
            raise BudgetError(f"budget {text!r}: {term!r} is not of the form cost=limit (e.g. macs=2.5e9)")
        cost, value = (p.strip() for p in term.split("=", 1))
        if cost not in COST_NAMES:
            raise BudgetError(f"budget {text!r}: unknown cost {cost!r}; known: {', '.join(COST_NAMES)}")
        table = None
        if "@" in value:
            value, table = (p.strip() for p in value.split("@", 1))
        if cost in TABLE_COSTS and not table:
            raise BudgetError(f"budget {text!r}: {cost} budgets name their latency table (from python -m evaluate "
                              f"latency), e.g. {cost}=5@latency.json")
        if cost not in TABLE_COSTS and table:
            raise BudgetError(f"budget {text!r}: only {' and '.join(TABLE_COSTS)} take a table (@{table})")
        if not _NUMBER.match(value) or float(value) <= 0:
            raise BudgetError(f"budget {text!r}: limit {value!r} is not a positive number")
        limits.append(Limit(cost, float(value), table))
    names = [lim.cost for lim in limits]
    if len(set(names)) != len(names):
        raise BudgetError(f"budget {text!r} limits one cost twice")
    return Budget(tuple(limits), text)


def parse_budgets(texts):
    budgets = [parse_budget(t) for t in texts or ()]
    for cost in TABLE_COSTS:
        tables = sorted({lim.table for b in budgets for lim in b.limits if lim.cost == cost})
        if len(tables) > 1:
            raise BudgetError(f"{cost} budgets name several tables ({', '.join(tables)}): one table per cost "
                              f"and search")
    return budgets


def budget_tables(budgets):
    """{cost: the table its budgets name} for the costs predicted from a latency table."""
    return {lim.cost: lim.table for b in budgets for lim in b.limits if lim.table}


def objective_costs(budgets, default):
    """The costs minimised beside accuracy: every cost a budget limits (first-seen order), else `default`."""
    names = []
    for b in budgets:
        names += [lim.cost for lim in b.limits if lim.cost not in names]
    names = names or list(default)
    unknown = [n for n in names if n not in COST_NAMES]
    if unknown:
        raise BudgetError(f"search.costs: unknown cost {unknown[0]!r}; known: {', '.join(COST_NAMES)}")
    tables = budget_tables(budgets)
    for cost in TABLE_COSTS:
        if cost in names and cost not in tables:
            raise BudgetError(f"{cost} as an objective needs a latency table: give --budget {cost}=X@TABLE.json")
    return names


class CostModel:
    """Every cost of codes: MACs and params at the config's model and resolution, latency and energy by their
    predictors (`predictors`: {cost in TABLE_COSTS: predictor})."""

    def __init__(self, spec, resolution=None, predictors=None):
        self.spec, self.resolution, self.predictors = spec, resolution, dict(predictors or {})

    def __call__(self, archs, names=COST_NAMES):
        archs = list(archs)
        params, macs = costs(archs, self.spec, self.resolution)
        out = {"macs": macs.astype(np.float64), "params": params.astype(np.float64)}
        for cost, predictor in self.predictors.items():
            if cost in names:
                out[cost] = predictor.predict(archs)
        return {k: v for k, v in out.items() if k in names}

    def available(self):
        return [n for n in COST_NAMES if n not in TABLE_COSTS or n in self.predictors]


def check_reachable(budgets, cost_model, space):
    """Refuse a budget that even the space's cheapest code (its min_arch, the cheapest under every cost) breaks."""
    cheapest = space.min_arch()
    values = cost_model([cheapest])
    for b in budgets:
        for lim in b.limits:
            value = float(values[lim.cost][0])
            if value > lim.limit:
                raise BudgetError(f"budget {b.text!r} cannot be met in space {space.name!r}: its cheapest code "
                                  f"{format_code(cheapest)} has {value:.6g} {UNITS[lim.cost]} (limit {lim.limit:g})")
