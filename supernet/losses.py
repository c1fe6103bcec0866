"""The supernet's two losses: label-smoothed cross-entropy and distillation from a teacher's logits.

Distillation uses the KL form, KL(p_teacher || p_student) = soft cross-entropy minus the
teacher's entropy. Its gradient with respect to the student is that of the soft cross-entropy,
but its value is 0 when the student matches the teacher, so a logged distillation loss reads
as "distance to the teacher" rather than carrying the teacher's entropy as an offset.
"""

import paddle
import paddle.nn.functional as F

from encoding import KitError


def smoothed_cross_entropy(logits, labels, smoothing=0.0):
    """Mean over the batch of -((1 - e) log p_y + e * mean_k log p_k) (uniform label smoothing)."""
    if not 0.0 <= smoothing < 1.0:
        raise KitError(f"label smoothing must be in [0, 1), got {smoothing}")
    log_probs = F.log_softmax(logits.astype("float32"), axis=-1)
    labels = labels.reshape([-1]).astype("int64")
    nll = -paddle.take_along_axis(log_probs, labels.unsqueeze(-1), axis=-1).squeeze(-1)
    if smoothing == 0.0:
        return nll.mean()
    uniform = -log_probs.mean(axis=-1)
    return ((1.0 - smoothing) * nll + smoothing * uniform).mean()


def distillation_loss(student_logits, teacher_logits, temperature=1.0):
    """Mean over the batch of T^2 * KL(softmax(teacher / T) || softmax(student / T)).

    The teacher's logits are detached here, so no gradient ever reaches the teacher (in
    in-place distillation the teacher is the max subnet, whose weights the student shares).
    T^2 keeps the gradient scale independent of the temperature.
    """
    if temperature <= 0:
        raise KitError(f"distillation temperature must be positive, got {temperature}")
    t = float(temperature)
    teacher = teacher_logits.detach().astype("float32") / t
    student = student_logits.astype("float32") / t
    teacher_log_probs = F.log_softmax(teacher, axis=-1)
    student_log_probs = F.log_softmax(student, axis=-1)
    kl = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(axis=-1)
    return kl.mean() * (t * t)


def pairwise_rank_loss(losses, costs, margin=0.0):
    """Hinge loss that orders the subnets of one step by a cost proxy (MACs or params): for every
    pair (i, j) with costs[i] > costs[j], max(0, margin + losses[i] - losses[j]), averaged over
    those pairs. The bigger subnet is asked for a loss at least `margin` below the smaller's
    (3rd place's FLOPs-guided rank loss). 0 when no two costs differ.
    """
    if len(losses) != len(costs):
        raise KitError(f"rank loss: {len(losses)} losses for {len(costs)} costs")
    if margin < 0:
        raise KitError(f"rank loss margin must be >= 0, got {margin}")
    terms = [F.relu(losses[i] - losses[j] + float(margin))
             for i in range(len(costs)) for j in range(len(costs)) if costs[i] > costs[j]]
    if not terms:
        return paddle.zeros([], dtype="float32")
    return paddle.stack([t.reshape([]) for t in terms]).mean()


def read_cost_table(path, field):
    """{code: float} of `field` in a results file (`python -m evaluate proxies` or `run`: a list of records
    with 'code', or an object keyed by id): the rank loss's prior when supernet.loss.rank.cost is
    FIELD@RESULTS (3rd place's ZenScore-guided variant: cost zen@runs/proxies/results.json)."""
    import json
    import math

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise KitError(f"supernet.loss.rank.cost: cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise KitError(f"supernet.loss.rank.cost: {path} is not JSON ({e})") from None
    records = list(data.values()) if isinstance(data, dict) else data
    table = {}
    for i, rec in enumerate(records if isinstance(records, list) else []):
        value = rec.get(field) if isinstance(rec, dict) else None
        if not isinstance(rec, dict) or not isinstance(rec.get("code"), str) or isinstance(value, bool) \
                or not isinstance(value, int | float) or not math.isfinite(value):
            raise KitError(f"supernet.loss.rank.cost: record {i} of {path} has no code and finite {field!r}")
        table.setdefault(rec["code"], float(value))
    if len(set(table.values())) < 2:
        raise KitError(f"supernet.loss.rank.cost: {path} has {len(table)} codes with {len(set(table.values()))} "
                       f"distinct {field!r} values; a ranking prior needs at least 2")
    return table


def prior_costs(table, codes):
    """(indices, costs) of the codes that `table` scores: a path the results file does not cover
    (e.g. the sandwich's max and min beside a list sampler) stays out of the rank loss's pairs."""
    keep = [i for i, c in enumerate(codes) if c in table]
    return keep, [table[codes[i]] for i in keep]
