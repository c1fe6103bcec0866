"""The rank loss's prior computed on the fly: with `supernet.loss.rank.cost: PROXY` (zen, synflow, naswot,
gradnorm) each code the sampler draws is scored with that proxy (supernet.proxies, at the `evaluate.proxies`
settings) once per sitting, so the step's paths are ordered as a `python -m evaluate proxies` results file
with the same settings would order them (3rd place's ZenScore-guided rank loss, without a results file).

A code's score does not depend on when, in which process or on which rank it is computed: the proxies'
weights and inputs come from a numpy generator seeded by (seed, repeat, proxy) only, and the training's
global generators (python, numpy, Paddle's CPU and GPU ones) are saved before and restored after every
computation, so the training draws the same paths, batches and augmentations with the prior on or off.
With several ranks the step's new codes are shared out (rank r scores new[r::N]) and gathered, so every
rank holds the same value for every code, each computed once. A resumed run scores its codes again when
they are drawn (the same values: nothing is kept on disk).
"""

import time

from .proxy_settings import ProxyError


class ProxyPrior:
    """{code: score} of one proxy (`table`, what losses.prior_costs reads), filled by `update(archs)`."""

    def __init__(self, settings, spec, rank=0, world=1):
        if len(settings.names) != 1:
            raise ProxyError(f"the rank loss's prior is one proxy, got {', '.join(settings.names)}")
        self.settings, self.spec, self.name = settings, spec, settings.names[0]
        self.rank, self.world = rank, world
        self.table = {}      # code -> score
        self.undefined = {}  # code -> why the proxy is undefined for it: that path stays out of the pairs
        self.seconds = 0.0   # the last update's wall time on this rank (its share and the gather)

    def update(self, archs):
        """Score the codes of `archs` (Arch) that have no score yet; every rank calls it with the same
        `archs` (the sampler draws the same paths on all). Returns how many codes were new."""
        from runtime.device import gather_from_all

        new, seen = [], set(self.table) | set(self.undefined)
        for arch in archs:
            code = arch.code()
            if code not in seen:
                new.append(arch)
                seen.add(code)
        self.seconds = 0.0
        if not new:
            return 0
        t0 = time.perf_counter()
        for part in gather_from_all(self._score(new[self.rank::self.world])):
            for code, (value, why) in part.items():
                if why is None:
                    self.table[code] = value
                    continue
                self.undefined[code] = why
                if self.rank == 0:
                    print(f"rank loss prior: {self.name} is undefined for {code} ({why}); that path stays out "
                          f"of the rank loss's pairs", flush=True)
        self.seconds = time.perf_counter() - t0
        return len(new)

    def _score(self, archs):
        """{code: (score, None) or (None, why)} of `archs`, the training's generators left as they were."""
        import runtime.device as runtime

        from . import proxies

        out, state = {}, runtime.rng_state()
        try:
            for arch in archs:
                try:
                    values, _ = proxies.score_arch(arch, self.spec, self.settings)
                    out[arch.code()] = (values[self.name], None)
                except ProxyError as e:
                    out[arch.code()] = (None, str(e))
        finally:
            runtime.set_rng_state(state)
        return out
