"""The official training recipe's optimizer: SGD + momentum, linear warmup, cosine to zero.

The schedule is stepped once per iteration and is one cosine over the whole run. The official
`pretrain.py` wraps a per-epoch cosine schedule but steps it every iteration, so its cosine
restarts every T_max iterations (a few hundred on ImageNet); we deliberately do not copy that:
`lr_at` decays once, from the end of warmup to zero at `max_epoch`.
"""

import math

import paddle

from encoding import KitError


class OptimConfigError(KitError):
    """A `train:` optimizer setting is out of range."""


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


class WarmupCosine(paddle.optimizer.lr.LRScheduler):
    """`lr_at` as a Paddle scheduler; call `.step()` after every optimizer step.

    Its state (`last_epoch` = iterations done, `last_lr`) round-trips through state_dict.
    """

    def __init__(self, peak_lr, total_steps, warmup_steps, last_epoch=-1):
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        super().__init__(learning_rate=self.peak_lr, last_epoch=last_epoch)

    def get_lr(self):
        return lr_at(self.last_epoch, self.total_steps, self.warmup_steps, self.peak_lr)


def peak_lr(section, global_batch):
    """`lr` when given, else the linear scaling rule base_lr * global_batch / 256."""
    lr = section.get("lr")
    if lr is None:
        lr = float(section.get("base_lr", 0.1)) * global_batch / 256
    lr = float(lr)
    if not lr > 0:
        raise OptimConfigError(f"learning rate must be positive, got {lr}")
    return lr


def _no_decay(name, param):
    """BN scales/shifts and biases: every parameter with fewer than two dimensions."""
    return len(param.shape) < 2


def build_optimizer(model, section, global_batch, steps_per_epoch):
    """(optimizer, scheduler) from a `train:` config section.

    Keys: max_epoch, warmup (epochs, may be fractional), lr (null = base_lr * global_batch/256),
    base_lr (0.1), momentum (0.9), nesterov (false), weight_decay (1e-4),
    no_bn_decay (false: decay BN and biases too, as the official recipe does),
    grad_clip (null, or a max global gradient norm).
    """
    max_epoch = int(section.get("max_epoch", 90))
    warmup = float(section.get("warmup", 0) or 0)
    if max_epoch <= 0:
        raise OptimConfigError(f"max_epoch must be positive, got {max_epoch}")
    if warmup < 0 or warmup > max_epoch:
        raise OptimConfigError(f"warmup must be between 0 and max_epoch={max_epoch} epochs, got {warmup}")
    if steps_per_epoch <= 0:
        raise OptimConfigError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    weight_decay = float(section.get("weight_decay", 1e-4) or 0.0)
    momentum = float(section.get("momentum", 0.9))
    if weight_decay < 0 or not 0 <= momentum < 1:
        raise OptimConfigError(f"need weight_decay >= 0 and 0 <= momentum < 1, got {weight_decay}, {momentum}")
    total = max_epoch * steps_per_epoch
    scheduler = WarmupCosine(peak_lr(section, global_batch), total, round(warmup * steps_per_epoch))

    params = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    if section.get("no_bn_decay", False):
        groups = [
            {"params": [p for n, p in params if not _no_decay(n, p)], "weight_decay": weight_decay},
            {"params": [p for n, p in params if _no_decay(n, p)], "weight_decay": 0.0},
        ]
        parameters = [g for g in groups if g["params"]]
    else:
        parameters = [p for _, p in params]
    clip = section.get("grad_clip")
    grad_clip = paddle.nn.ClipGradByGlobalNorm(float(clip)) if clip else None
    optimizer = paddle.optimizer.Momentum(
        learning_rate=scheduler, momentum=momentum, parameters=parameters,
        use_nesterov=bool(section.get("nesterov", False)), weight_decay=weight_decay, grad_clip=grad_clip)
    return optimizer, scheduler
