"""Scoring subnets from a supernet's shared weights, and what that costs.

    python -m evaluate run --config C --checkpoint CKPT --archs ARCHS.json --out DIR   -> DIR/results.json
    python -m evaluate fidelity --config C --checkpoint CKPT --archs ARCHS.json --sample 200
    python -m evaluate merge --archs ARCHS.json --out DIR
    python -m evaluate latency ...
    python -m evaluate proxies --config C --archs ARCHS.json --out DIR                   -> DIR/results.json

Modules: `evaluator` (top-1/top-5/loss of one subnet at a time), `calibration` (BN
recalibration and the restore that keeps results order-free), `image_cache` (evaluation and
calibration images decoded once into tensors), `inputs` (supernet and images from a config),
`results_store` (resumable per-rank JSON-lines shards and the ordered merge), `fidelity`
(cheap settings vs the full one), `ledger` (time and energy per phase), `latency` and `proxy_run`
(`python -m evaluate proxies`: the zero-cost proxies of supernet.proxies over an architecture list).
Importing the package imports nothing heavy; PaddlePaddle loads with the modules that need it.
"""
