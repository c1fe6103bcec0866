"""The official training recipe's optimizer: SGD + momentum, linear warmup, then a cosine.

Two learning-rate schedules, both stepped once per iteration (`train.lr_schedule`):

- `cosine` (the kit's): linear warmup, then ONE cosine from the peak to 0 at `max_epoch`.
- `official`: what the challenge's `pretrain.py` gets from
  `LinearWarmup(CosineAnnealingDecay(lr, max_epoch), warmup_steps, 0., lr)` stepped after every
  batch by `paddle.Model.fit`: after warmup the cosine's period is 2 x max_epoch ITERATIONS (its
  T_max counts epochs but is stepped per batch), so the rate swings between the peak and 0 every
  max_epoch iterations for the whole run.

Warmup iterations follow the official formula, int(train images / global batch) x warmup epochs.
"""

import math

import paddle

from .settings import SCHEDULES, OptimConfigError


def lr_at(step, total_steps, warmup_steps, peak_lr):
    """Learning rate of iteration `step` (0-based) of `total_steps`.

    Warmup: iterations 0..W-1 ramp linearly, peak_lr * (step + 1) / W, so the first iteration
    already learns and iteration W-1 reaches the peak. Then cosine from peak_lr at iteration W
    to 0 at iteration `total_steps` (one past the last).
    """
    if total_steps <= 0:
        raise OptimConfigError(f"total_steps must be positive, got {total_steps}")
    warmup_steps = min(max(int(warmup_steps), 0), total_steps)
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = total_steps - warmup_steps
    if span <= 0:
        return peak_lr
    progress = min(max(step - warmup_steps, 0), span) / span
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def official_lr_at(step, warmup_steps, peak_lr, max_epoch):
    """Learning rate of iteration `step` (0-based) under the official schedule.

    Warmup: peak_lr * step / W (0 at the first iteration), as LinearWarmup(start_lr=0). Then the
    closed form of CosineAnnealingDecay(peak_lr, T_max=max_epoch) at step - W, which LinearWarmup
    asks for: peak_lr * (1 + cos(pi * (step - W) / max_epoch)) / 2, periodic in the iteration.
    W = 0 (which the official script cannot run: LinearWarmup requires W > 0) is the cosine alone.
    """
    if max_epoch <= 0:
        raise OptimConfigError(f"max_epoch must be positive, got {max_epoch}")
    warmup_steps = max(int(warmup_steps), 0)
    if step < warmup_steps:
        return (peak_lr - 0.0) * float(step) / float(warmup_steps) + 0.0
    return 0.0 + (peak_lr - 0.0) * (1 + math.cos(math.pi * (step - warmup_steps) / max_epoch)) / 2


class WarmupCosine(paddle.optimizer.lr.LRScheduler):
    """`lr_at` (schedule 'cosine') or `official_lr_at` (schedule 'official') as a Paddle
    scheduler; call `.step()` after every optimizer step.

    Its state (`last_epoch` = iterations done, `last_lr`) round-trips through state_dict.
    """

    def __init__(self, peak_lr, total_steps, warmup_steps, last_epoch=-1, schedule="cosine", max_epoch=None):
        if schedule not in SCHEDULES:
            raise OptimConfigError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if schedule == "official" and not (isinstance(max_epoch, int) and max_epoch > 0):
            raise OptimConfigError(f"the official schedule needs an integer max_epoch > 0, got {max_epoch!r}")
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.schedule, self.max_epoch = schedule, max_epoch
        super().__init__(learning_rate=self.peak_lr, last_epoch=last_epoch)

    def get_lr(self):
        if self.schedule == "official":
            return official_lr_at(self.last_epoch, self.warmup_steps, self.peak_lr, self.max_epoch)
        return lr_at(self.last_epoch, self.total_steps, self.warmup_steps, self.peak_lr)


def warmup_iterations(warmup_epochs, train_images, global_batch):
    """The official count: int(train images / global batch) x warmup epochs (rounded when fractional)."""
    return int(round(int(train_images / global_batch) * float(warmup_epochs)))


def peak_lr(optim, global_batch):
    """`optim.lr` when given, else the linear scaling rule base_lr * global_batch / 256."""
    return float(optim.lr) if optim.lr is not None else float(optim.base_lr) * global_batch / 256


def _no_decay(name, param):
    """BN scales/shifts and biases: every parameter with fewer than two dimensions."""
    return len(param.shape) < 2


def use_multi_tensor(setting, device, every_step_all_grads, key):
    """Whether Momentum updates all parameters in one merged kernel (`multi_tensor`: true, false, auto = on
    a GPU, where it saves a kernel launch per parameter; the same per-element arithmetic: equal updates
    on CPU, tests/test_loop_sync.py). Paddle's merged update fixes its parameter list at the first step
    and refuses (or, with as many gradients, mispairs) a later step whose parameters with a gradient
    differ, so it needs every parameter to get a gradient at every step (`every_step_all_grads`: the
    supernet only with sandwich paths, the max path touching every weight): auto is off otherwise and
    true is refused."""
    if setting == "auto":
        return str(device).startswith("gpu") and every_step_all_grads
    if setting and not every_step_all_grads:
        raise OptimConfigError(f"{key}=true needs every parameter to get a gradient at every step: set "
                               f"supernet.sampler.sandwich=true (the max path trains every weight) or {key}=false")
    return bool(setting)


def build_optimizer(model, optim, global_batch, steps_per_epoch, train_images, every_step_all_grads=True,
                    where="train"):
    """(optimizer, scheduler) of OptimSettings `optim` (supernet.settings: the `train:` section's keys, or
    `supernet.optim` over supernet.epochs): warmup epochs (iterations by `warmup_iterations`), then the lr
    schedule; no_bn_decay false decays BN and biases too, as the official recipe does; grad_clip a max
    global gradient norm or None; multi_tensor as `use_multi_tensor` decides (`where` names the section;
    the device is the one Paddle computes on)."""
    if steps_per_epoch <= 0:
        raise OptimConfigError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    total = optim.max_epoch * steps_per_epoch
    scheduler = WarmupCosine(peak_lr(optim, global_batch), total,
                             min(warmup_iterations(optim.warmup, train_images, global_batch), total),
                             schedule=optim.lr_schedule, max_epoch=optim.max_epoch)

    params = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    if optim.no_bn_decay:
        groups = [
            {"params": [p for n, p in params if not _no_decay(n, p)], "weight_decay": optim.weight_decay},
            {"params": [p for n, p in params if _no_decay(n, p)], "weight_decay": 0.0},
        ]
        parameters = [g for g in groups if g["params"]]
    else:
        parameters = [p for _, p in params]
    grad_clip = paddle.nn.ClipGradByGlobalNorm(float(optim.grad_clip)) if optim.grad_clip else None
    multi = use_multi_tensor(optim.multi_tensor, paddle.device.get_device(), every_step_all_grads,
                             f"{where}.multi_tensor")
    optimizer = paddle.optimizer.Momentum(
        learning_rate=scheduler, momentum=optim.momentum, parameters=parameters,
        use_nesterov=optim.nesterov, weight_decay=optim.weight_decay, grad_clip=grad_clip, use_multi_tensor=multi)
    return optimizer, scheduler
