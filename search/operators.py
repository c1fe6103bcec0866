"""pymoo operators over `Genome` genes: sampling, uniform crossover, resample mutation, budget repair and
duplicate elimination by code. Every gene vector they return lies within the genome's bounds (so it
decodes to a valid code of the space) and, after the repair, meets at least one budget.

Randomness: pymoo 0.6.1 draws from numpy's global generator; these operators do too, so the search
can seed, save and restore that one state (`search.engine.rng_scope`) and get the same run again.
"""

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from .budget import BudgetError


def _generator():
    """A numpy Generator drawn from the global state (for encoding's Generator-based sampling)."""
    return np.random.default_rng(np.random.randint(0, 2**31 - 1))


class CodeProblem(Problem):
    """The genome's bounds for pymoo; objectives are computed outside (ask and tell)."""

    def __init__(self, genome, n_obj):
        super().__init__(n_var=genome.n_var, n_obj=n_obj, xl=genome.lower, xu=genome.upper, vtype=int)
        self.genome = genome


class BudgetRepair(Repair):
    """Shrinks each code that meets no budget until it meets one: one random cheaper move at a time
    (a block fewer or a digit narrower), so the repaired code stays near the one bred. Every cost is
    non-increasing under these moves, so the walk ends, at worst at the space's smallest code, which
    `budget.check_reachable` has shown meets every budget."""

    def __init__(self, genome, budgets, cost_model):
        super().__init__()
        self.genome, self.budgets, self.cost_model = genome, list(budgets), cost_model
        self.names = sorted({lim.cost for b in self.budgets for lim in b.limits})

    def feasible(self, X):
        if not self.budgets:
            return np.ones(len(X), dtype=bool)
        values = self.cost_model([self.genome.decode(x) for x in X], self.names)
        return np.any([b.met(values) for b in self.budgets], axis=0)

    def _do(self, problem, X, **kwargs):
        X = self.genome.clip(np.asarray(X, dtype=np.int64).copy())
        if not self.budgets or len(X) == 0:
            return X
        todo = np.flatnonzero(~self.feasible(X))
        while len(todo):
            for i in todo:
                moves = self.genome.shrink_moves(X[i])
                if not moves:
                    raise BudgetError(f"no code of space {self.genome.space.name!r} meets the budgets "
                                      f"{', '.join(map(str, self.budgets))}")
                gene, step = moves[np.random.randint(len(moves))]
                X[i, gene] += step
            todo = todo[~self.feasible(X[todo])]
        return X


class GeneSampling(Sampling):
    """Initial population: codes drawn as the space draws them (each stage's depth uniform first by
    default), repaired into the budget; hidden genes uniform."""

    def __init__(self, genome, depth_uniform=True):
        super().__init__()
        self.genome, self.depth_uniform = genome, depth_uniform

    def _do(self, problem, n_samples, **kwargs):
        return self.genome.sample(n_samples, _generator(), self.depth_uniform)


class UniformCrossover(Crossover):
    """Two parents -> two children; each gene from one parent or the other with probability 1/2
    (complementary children). Genes keep their positions, so children stay within the bounds."""

    def __init__(self, prob=0.9):
        super().__init__(2, 2, prob=prob)

    def _do(self, problem, X, **kwargs):
        _, n_matings, n_var = X.shape
        take = np.random.random((n_matings, n_var)) < 0.5
        a = np.where(take, X[0], X[1])
        b = np.where(take, X[1], X[0])
        return np.stack([a, b])


class ResampleMutation(Mutation):
    """Each gene, with probability `prob_gene`, is redrawn uniformly within its bounds (once-for-all's
    evolution finder mutates depth and width genes this way)."""

    def __init__(self, genome, prob_gene=0.1):
        super().__init__(prob=1.0)
        self.genome, self.prob_gene = genome, float(prob_gene)

    def _do(self, problem, X, **kwargs):
        X = np.asarray(X, dtype=np.int64).copy()
        hit = np.random.random(X.shape) < self.prob_gene
        fresh = np.floor(self.genome.lower + np.random.random(X.shape) * (self.genome.upper - self.genome.lower + 1))
        return np.where(hit, fresh.astype(np.int64), X)


class CodeDuplicates(DuplicateElimination):
    """Duplicates are gene vectors that decode to the same code (hidden genes do not count)."""

    def __init__(self, genome):
        super().__init__()
        self.genome = genome

    def _do(self, pop, other, is_duplicate):
        seen = set(self.genome.codes(other.get("X"))) if other is not None and len(other) else set()
        for i, code in enumerate(self.genome.codes(pop.get("X"))):
            if code in seen:
                is_duplicate[i] = True
            else:
                seen.add(code)
        return is_duplicate
