"""Budgeted search: the most accurate subnets under MACs, params, latency or energy budgets, scored from a
supernet's shared weights (evaluate.oracle), with pymoo's NSGA-II over codes kept valid by construction.

    python -m search run --config C --checkpoint CKPT --budget macs=2.5e9 --out DIR

genome (codes as integer genes), operators (pymoo sampling, crossover, mutation, budget repair),
budget (budgets and costs), latency_model (the latency and energy predictor), cache (scores on disk),
engine (the loop, checkpoints, hypervolume), report (front.json, front_archs.json, pareto.png),
settings (the `search:` section). docs/search.md: the method and its measurements.
"""
