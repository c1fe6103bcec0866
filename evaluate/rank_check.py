"""Supernet training's per-epoch rank check: Kendall tau and Pearson of shared-weight accuracies
against a ground truth, measured the way `python -m evaluate run` measures (monitoring only)."""

import time

from encoding import KitError, read_arch_list


class RankCheck:
    """Kendall tau and Pearson of supernet accuracies vs a ground-truth list, once per epoch.

    Ranking quality, not supernet accuracy, is what the challenge scores, and it can peak before
    the loss does; this shows it per epoch. The ground truth is only read to score: it never
    reaches the loss. Every rank evaluates its share of the codes; results are gathered.
    """

    def __init__(self, cfg, rc, rank=0, world=1):
        import paddle

        from .oracle import Oracle, build_calibration_batches, build_eval_set
        from .settings import EvalSettings

        entries = read_arch_list(rc["gt"])
        limit = rc.get("max_archs")
        if limit is not None and limit < len(entries):  # evenly spaced, so the subset spans the list
            picks = sorted({round(i * (len(entries) - 1) / max(limit - 1, 1)) for i in range(limit)})
            entries = [entries[i] for i in picks]
        if len(entries) < 2:
            raise KitError(f"supernet.rank_check.gt {rc['gt']}: need at least 2 codes to rank, got {len(entries)}")
        self.entries = entries
        self.rank, self.world = rank, world
        # Images, BN calibration, batch size and AMP are the `evaluate:` section's, built by the
        # evaluate package itself, so the curve shows what `python -m evaluate run` would measure.
        device = paddle.device.get_device()
        settings = EvalSettings.from_config(cfg)
        # every rank builds the check at the same point (the trainer's epoch end): the images are decoded
        # once over the ranks, each its share, all-gathered
        eval_set = build_eval_set(cfg, settings, on_gpu=device.startswith("gpu"), across_ranks=world > 1)
        calib = build_calibration_batches(cfg, settings, across_ranks=world > 1)
        self.make = lambda model: Oracle(cfg, settings, device, model=model, eval_set=eval_set, calib_batches=calib)

    def run(self, model):
        """{'kendall_tau', 'pearson', 'archs', 'mean_top1', 'seconds'} (tau/pearson None if undefined)."""
        from runtime.device import gather_from_all

        t0 = time.perf_counter()
        active = model.active_arch
        oracle = self.make(model)
        mine = {e.id: oracle.score_one(e.code)["top1"] for e in self.entries[self.rank::self.world]}
        model.set_active(active)
        mine = {k: v for part in gather_from_all(mine) for k, v in part.items()}
        pred = [mine[e.id] for e in self.entries]
        truth = [float(e.acc) for e in self.entries]
        tau, pearson, note = _rank_metrics(pred, truth)
        out = {"kendall_tau": tau, "pearson": pearson, "archs": len(pred),
               "mean_top1": sum(pred) / len(pred), "seconds": time.perf_counter() - t0,
               "top1": {e.id: mine[e.id] for e in self.entries}}
        if note:
            out["note"] = note
        return out


def _rank_metrics(pred, truth):
    """(Kendall tau-b, Pearson, note): the leaderboard's metrics, None with a note where undefined."""
    from submission.metrics import kendall_tau_b, or_undefined, pearson

    (tau, note), (r, _) = or_undefined(kendall_tau_b, pred, truth), or_undefined(pearson, pred, truth)
    return tau, r, note
