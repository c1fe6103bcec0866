"""Scores of codes under one evaluation setting, through the score cache and the shared-weight oracle,
shared out over the ranks of a distributed launch."""

import contextlib
import time


def setting_of(cfg, settings, device):
    """(pinned setting, its digest): what decides an oracle's scores under `settings` on `device` (the cache's
    key; the device kind and its float32 math are pinned, so CPU and GPU scores never mix)."""
    from encoding import net_spec

    from .cache import setting_digest

    pinned = settings.pinned(net_spec(cfg), settings.source(), device)
    return pinned, setting_digest(pinned)


class Scorer:
    """Scores of codes under one evaluation setting: from the cache, else from the oracle (built once, on the
    first code the cache lacks: under several ranks on every rank at once, its images decoded once over them);
    under several ranks each scores its share of the missing codes and every rank gets all of them."""

    def __init__(self, cfg, settings, cache, rank, world, device, ledger=None):
        self.cfg, self.settings, self.cache = cfg, settings, cache
        self.rank, self.world, self.device, self.ledger = rank, world, device, ledger
        self.pinned, self.digest = setting_of(cfg, settings, device)
        cache.add_setting(self.digest, self.pinned)
        self.oracle = None
        self.calls = 0

    def _oracle(self):
        if self.oracle is None:
            from evaluate.oracle import Oracle

            t0 = time.perf_counter()
            self.oracle = Oracle(self.cfg, self.settings, self.device, across_ranks=self.world > 1)
            if self.rank == 0:
                print(f"oracle {self.digest}: {self.oracle.describe()} (setup {time.perf_counter() - t0:.1f} s)",
                      flush=True)
        return self.oracle

    def __call__(self, codes, phase="generation"):
        from evaluate.results_store import rank_share
        from runtime.device import gather_from_all

        missing = self.cache.missing(self.digest, codes)
        mine = rank_share(missing, self.rank, self.world)
        if self.oracle is None and self.world > 1:  # its images are decoded once over the ranks: all build it
            if any(gather_from_all(bool(mine))):
                self._oracle()
        got = {}
        if mine:
            oracle = self._oracle()
            with (self.ledger.phase(phase, images=len(mine) * oracle.images_per_subnet, subnets=len(mine))
                  if self.ledger else contextlib.nullcontext()):
                got = {c: {k: float(r[k]) for k in ("top1", "top5", "loss")} for c, r in zip(mine, oracle.score(mine),
                                                                                          strict=True)}
        got = {k: v for part in gather_from_all(got) for k, v in part.items()}
        for code in missing:
            self.cache.put(self.digest, code, got[code])
        self.calls += len(mine)
        return [self.cache.get(self.digest, c) for c in codes]
