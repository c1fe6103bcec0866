"""The search loop: pymoo's NSGA-II (or random search, the baseline) asked for candidates, the oracle's
scores told back, one generation at a time, with a checkpoint after each.

Objectives (all minimised, all in [0, 1]): 1 - top-1, then each cost divided by the cost of the
space's largest code; the hypervolume (pymoo's HV) is over these with reference point (1, ..., 1).
The archive is every code scored in this search; the front is its non-dominated part (not only the
last population). Every run draws from one random state, seeded from search.seed, kept in the
checkpoint with the pickled algorithm: a run killed at any point and rerun continues from its last
finished generation and ends with the same front (scores come back from the cache).
"""

import contextlib
import os
import pickle
import random
import warnings

import numpy as np

from infra.atomic import atomic_replace
from infra.config import differences
from infra.errors import KitError

from .genome import Genome
from .operators import BudgetRepair, CodeDuplicates, CodeProblem, GeneSampling, ResampleMutation, UniformCrossover

CHECKPOINT = "checkpoint.pkl"
CHECKPOINT_FORMAT = 2  # 2: the cost model's predictors by cost (energy_mj beside latency_ms)


def initial_rng(seed):
    return {"numpy": np.random.RandomState(int(seed)).get_state(), "python": random.Random(int(seed)).getstate()}


@contextlib.contextmanager
def rng_scope(state):
    """Run the body on the search's own global random state (pymoo draws from numpy's global one), then
    store the advanced state back into `state` and put the caller's back."""
    saved = np.random.get_state(), random.getstate()
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    try:
        with warnings.catch_warnings():  # pymoo 0.6.1's crowding distance still calls numpy's row_stack
            warnings.filterwarnings("ignore", message=".*row_stack.*", category=DeprecationWarning)
            yield
    finally:
        state["numpy"], state["python"] = np.random.get_state(), random.getstate()
        np.random.set_state(saved[0])
        random.setstate(saved[1])


def nondominated(F):
    """Indices of the non-dominated rows of F (minimisation), duplicates of a front point kept once."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    if len(F) == 0:
        return np.zeros(0, dtype=np.int64)
    front = NonDominatedSorting().do(np.asarray(F, dtype=np.float64), only_non_dominated_front=True)
    return np.sort(np.asarray(front, dtype=np.int64))


def hypervolume(F):
    from pymoo.indicators.hv import HV

    F = np.asarray(F, dtype=np.float64)
    if len(F) == 0:
        return 0.0
    return float(HV(ref_point=np.ones(F.shape[1]))(F))


class RandomSearch:
    """The baseline: each generation `n` new codes drawn as the initial population is (repaired into the
    budgets), none drawn before; told scores are kept only in the archive."""

    def __init__(self, genome, sampling, repair, population, offspring):
        self.genome, self.sampling, self.repair = genome, sampling, repair
        self.population, self.offspring = population, offspring
        self.seen, self.generation = set(), 0

    def ask(self):
        n = self.population if self.generation == 0 else self.offspring
        rows, tries = [], 0
        while len(rows) < n and tries < 100:
            tries += 1
            X = self.repair._do(None, self.sampling._do(None, n))
            for x, code in zip(X, self.genome.codes(X), strict=True):
                if code not in self.seen and len(rows) < n:
                    self.seen.add(code)
                    rows.append(x)
        return np.array(rows, dtype=np.int64).reshape(-1, self.genome.n_var)

    def tell(self, X, F):
        self.generation += 1


class Search:
    """One search: the algorithm, its random state, the archive and the generation reached.

    `score(codes)` -> list of {'top1', ...} (the cache and the ranks are behind it); `cost_model(archs,
    names)` -> {cost: array}. Picklable (the checkpoint) except for those two, which are set again.
    """

    def __init__(self, settings, cost_model):
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.termination import NoTermination

        s = self.settings = settings
        self.genome = Genome(s.space)
        self.cost_names = list(s.costs)
        top = cost_model([s.space.max_arch()], self.cost_names)
        self.norm = np.array([float(top[c][0]) for c in self.cost_names])
        self.rng = initial_rng(s.seed)
        self.generation = 0  # generations finished (0: not even the initial population)
        self.archive = {}  # code -> {'top1', ..., 'costs': {...}, 'generation': g}
        self.history = []  # one log record per finished generation
        self.score_digest = None  # the evaluation setting that scores this search (set by the command)
        problem = CodeProblem(self.genome, 1 + len(self.cost_names))
        repair = BudgetRepair(self.genome, s.budgets, cost_model)
        sampling = GeneSampling(self.genome, s.depth_uniform)
        with rng_scope(self.rng):
            if s.algorithm == "random":
                self.algorithm = RandomSearch(self.genome, sampling, repair, s.population, s.offspring)
            else:
                self.algorithm = NSGA2(pop_size=s.population, n_offsprings=s.offspring, sampling=sampling,
                                       crossover=UniformCrossover(s.crossover_prob),
                                       mutation=ResampleMutation(self.genome, s.mutation_prob), repair=repair,
                                       eliminate_duplicates=CodeDuplicates(self.genome))
                self.algorithm.setup(problem, termination=NoTermination(), verbose=False)
        self.problem = problem

    # --- objectives ---------------------------------------------------------------------
    def objectives(self, records):
        """F rows: 1 - top1, then each cost over the largest code's."""
        return np.array([[1.0 - r["top1"]] + [r["costs"][c] / n for c, n in zip(self.cost_names, self.norm,
                                                                                 strict=True)]
                         for r in records], dtype=np.float64).reshape(-1, 1 + len(self.cost_names))

    def front_codes(self):
        codes = list(self.archive)
        idx = nondominated(self.objectives([self.archive[c] for c in codes]))
        front = [codes[i] for i in idx]
        return sorted(front, key=lambda c: (self.archive[c]["costs"][self.cost_names[0]], c))

    def best_per_budget(self, key="top1", records=None):
        """{budget text: code} of the highest `key` score among codes meeting the budget (None: none)."""
        records = self.archive if records is None else records
        out = {}
        codes = list(records)
        for b in self.settings.budgets:
            values = {c: np.array([records[x]["costs"][c] for x in codes]) for c in {lim.cost for lim in b.limits}}
            ok = b.met(values) if codes else np.zeros(0, dtype=bool)
            inside = [c for c, m in zip(codes, ok, strict=True) if m]
            first = b.limits[0].cost  # ties in accuracy: the cheaper code (it dominates), then the code
            out[b.text] = (max(inside, key=lambda c: (records[c][key], -records[c]["costs"][first], c))
                           if inside else None)
        return out

    # --- one generation -----------------------------------------------------------------
    def step(self, score, cost_model):
        """Ask, score, tell; returns the generation's log record (None when the algorithm has nothing
        new to ask)."""
        with rng_scope(self.rng):
            if isinstance(self.algorithm, RandomSearch):
                pop, X = None, self.algorithm.ask()
            else:
                pop = self.algorithm.ask()
                X = pop.get("X").astype(np.int64) if pop is not None and len(pop) else np.zeros((0, 1))
        if len(X) == 0:
            return None
        codes = self.genome.codes(X)
        archs = [self.genome.decode(x) for x in X]
        values = cost_model(archs, self.cost_names + [n for n in cost_model.available() if n not in self.cost_names])
        scores = score(codes)
        new = 0
        records = []
        for i, code in enumerate(codes):
            rec = {**{k: float(v) for k, v in scores[i].items()},
                   "costs": {name: float(values[name][i]) for name in values}}
            records.append(rec)
            if code not in self.archive:
                self.archive[code] = {**rec, "generation": self.generation}
                new += 1
        F = self.objectives(records)
        with rng_scope(self.rng):
            if isinstance(self.algorithm, RandomSearch):
                self.algorithm.tell(X, F)
            else:
                from pymoo.core.evaluator import Evaluator
                from pymoo.problems.static import StaticProblem

                Evaluator().eval(StaticProblem(self.problem, F=F), pop)
                self.algorithm.tell(infills=pop)
        front = self.front_codes()
        best = self.best_per_budget()
        record = {
            "generation": self.generation, "evaluations": new, "cumulative_evaluations": len(self.archive),
            "front_size": len(front),
            "hypervolume": hypervolume(self.objectives([self.archive[c] for c in front])),
            "best": {b: ({"code": c, "top1": self.archive[c]["top1"], "costs": self.archive[c]["costs"]}
                         if c else None) for b, c in best.items()},
        }
        self.generation += 1
        self.history.append(record)
        return record

    # --- checkpoints --------------------------------------------------------------------
    def save(self, out):
        state = {"format": CHECKPOINT_FORMAT, "search": self}

        def write(tmp):
            with open(tmp, "wb") as f:
                pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)

        atomic_replace(os.path.join(out, CHECKPOINT), write)

    @staticmethod
    def load(out, settings):
        """The checkpointed search in `out`, or None; refuses one of other settings."""
        path = os.path.join(out, CHECKPOINT)
        if not os.path.exists(path):
            return None
        try:
            with open(path, "rb") as f:
                state = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
            raise KitError(f"{path} is not a readable search checkpoint ({type(e).__name__}); remove it to start over"
                           ) from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise KitError(f"{path} is not a search checkpoint of this kit's format; remove it to start over")
        search = state["search"]
        changed = differences(search_key(search.settings), search_key(settings))
        if changed:
            raise KitError(f"{out} holds a search with other settings ({'; '.join(changed)}): use another --out or "
                           f"remove {path}")
        return search


def search_key(s):
    """What must match for a checkpoint to be continued (the number of generations may grow)."""
    from infra.atomic import file_digest

    tables = {}
    for name, path in (("latency_table", s.latency_table), ("energy_table", s.energy_table),
                       ("transfer_table", s.transfer)):
        if path:
            tables[name] = file_digest(path)[:16] if os.path.isfile(path) else path
    return {"space": s.space.name, "algorithm": s.algorithm, "budgets": [b.text for b in s.budgets],
            "costs": list(s.costs), "population": s.population, "offspring": s.offspring,
            "mutation_prob": s.mutation_prob, "crossover_prob": s.crossover_prob, "depth_uniform": s.depth_uniform,
            "seed": s.seed, "latency_batch": s.latency_batch, "latency_holdout": s.latency_holdout,
            "transfer_codes": s.transfer_codes, **tables}
