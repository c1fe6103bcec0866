"""One training step in process: which loss each path gets, and that gradients add up over paths.

Every expected number is recomputed from the same weights by an independent route (numpy
losses, one backward of the summed loss), before the trainer takes its step.
"""

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from test_train_supernet import DEMO, make_image_folder, tiny_overrides

from encoding import KitError
from supernet.samplers import Path


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("images"))


def trainer(image_dir, tmp_path, *extra):
    from supernet.train import Trainer
    from train_supernet import load_config

    cfg, _ = load_config([DEMO, *tiny_overrides(image_dir, str(tmp_path / "run"), *extra)])
    t = Trainer(cfg)
    t.epoch, t.step, t.last_checkpoint = 0, 0, None
    return t


def log_softmax(z, t=1.0):
    z = z / t
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def kl(student, teacher, t=1.0):
    lt, ls = log_softmax(teacher, t), log_softmax(student, t)
    return float((np.exp(lt) * (lt - ls)).sum(axis=1).mean() * t * t)


def smoothed_ce(logits, labels, eps):
    lp = log_softmax(logits)
    nll = -lp[np.arange(len(labels)), labels]
    return float(((1 - eps) * nll - eps * lp.mean(axis=1)).mean())


def first_batch(t):
    t.loader.set_epoch(0)
    return next(iter(t.loader))


def run_step_capturing_grads(t, x, y, paths):
    """The trainer's step, with the gradients it hands to the optimizer captured."""
    captured = {}
    original = t.optimizer.step

    def step():
        captured.update({n: p.grad.numpy().copy() for n, p in t.model.named_parameters() if p.grad is not None})
        original()

    t.optimizer.step = step
    return t.train_step(x, y, paths, global_step=0), captured


def test_inplace_distillation_step(image_dir, tmp_path):
    # zero_init_residual off: with every block's last BN scale at 0 most gradients would be 0
    t = trainer(image_dir, tmp_path, "supernet.loss.inplace_distill=true", "supernet.zero_init_residual=false",
                "supernet.loss.label_smoothing=0.1", "supernet.loss.temperature=2.0",
                "supernet.optim.warmup=1")  # the lr below is worked out for a 1-epoch warmup
    x, y = first_batch(t)
    paths = t.schedule.paths(0, 0)
    assert [p.kind for p in paths] == ["max", "min", "random"]
    logits, total = {}, None
    for p in paths:  # independent route: same weights, numpy losses, one backward of the sum
        t.model.set_active(p.arch)
        out = t.model(x)
        logits[p.kind] = out.numpy()
        if p.kind == "max":
            loss = F.cross_entropy(out, y, label_smoothing=0.1)
        else:
            teacher = paddle.to_tensor(logits["max"])
            loss = 4.0 * F.kl_div(F.log_softmax(out / 2.0, axis=1), F.log_softmax(teacher / 2.0, axis=1),
                                  reduction="batchmean", log_target=True)
        total = loss if total is None else total + loss
    total.backward()
    expected_grads = {n: p.grad.numpy().copy() for n, p in t.model.named_parameters() if p.grad is not None}
    t.model.clear_gradients(set_to_zero=False)
    labels = y.numpy().reshape(-1)
    expected = [smoothed_ce(logits["max"], labels, 0.1), kl(logits["min"], logits["max"], 2.0),
                kl(logits["random"], logits["max"], 2.0)]
    before = {n: p.numpy().copy() for n, p in t.model.named_parameters()}
    values, grads = run_step_capturing_grads(t, x, y, paths)
    np.testing.assert_allclose(values, expected, rtol=1e-4)
    assert sorted(grads) == sorted(expected_grads)
    for n in grads:
        # per-path backward passes accumulate in another order than one backward of the sum:
        # float32 rounding on the scale of the tensor's largest gradient
        scale = float(np.abs(expected_grads[n]).max())
        np.testing.assert_allclose(grads[n], expected_grads[n], rtol=1e-3, atol=1e-5 * scale, err_msg=n)
    # first SGD step from zero velocity: p - lr * (g + wd * p)
    lr = 0.1 * 16 / 256 / 4  # base_lr * batch / 256, and warmup (1 epoch = 4 steps) starts at 1/4 of it
    wd = 1e-4
    for n, p in t.model.named_parameters():
        np.testing.assert_allclose(p.numpy(), before[n] - lr * (grads[n] + wd * before[n]), rtol=1e-5, atol=1e-7,
                                   err_msg=n)


def test_external_teacher_teaches_every_path(image_dir, tmp_path):
    from supernet.static import build_static

    spec_run = trainer(image_dir, tmp_path)  # only for its NetSpec
    paddle.seed(123)
    teacher = build_static(spec_run.model.max_arch(), spec_run.spec)
    path = str(tmp_path / "teacher.pdparams")
    paddle.save(teacher.state_dict(), path)
    teacher.eval()
    t = trainer(image_dir, tmp_path, f"supernet.loss.teacher={path}", "supernet.loss.temperature=1.0")
    assert not t.inplace
    x, y = first_batch(t)
    teacher_logits = teacher(x).numpy()
    paths = t.schedule.paths(0, 0)
    expected = []
    for p in paths:
        t.model.set_active(p.arch)
        expected.append(kl(t.model(x).numpy(), teacher_logits))
    values, _ = run_step_capturing_grads(t, x, y, paths)
    np.testing.assert_allclose(values, expected, rtol=1e-4)
    assert all(p.stop_gradient for p in t.teacher.parameters())


def test_official_initialisation_loads_the_given_weights(image_dir, tmp_path):
    from supernet.model import ResNet48Supernet

    base = trainer(image_dir, tmp_path)
    paddle.seed(7)
    other = ResNet48Supernet(base.spec)
    path = str(tmp_path / "resnet48.pdparams")
    paddle.save(other.state_dict(), path)
    from supernet.pretrained import reorder_channels

    sorted_ = reorder_channels(other.state_dict())  # the default, as the official demo loads them
    t = trainer(image_dir, tmp_path, "supernet.init=official", f"supernet.pretrained={path}")
    for n, p in t.model.state_dict().items():
        np.testing.assert_array_equal(p.numpy(), sorted_[n], err_msg=n)
    assert not np.array_equal(base.model.blocks[0].conv.weight.numpy(), t.model.blocks[0].conv.weight.numpy())
    t = trainer(image_dir, tmp_path / "plain", "supernet.init=official", f"supernet.pretrained={path}",
                "supernet.reorder=false")
    for (n, p), q in zip(t.model.state_dict().items(), other.state_dict().values(), strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
    assert not np.array_equal(sorted_["blocks.2.conv1.weight"], other.state_dict()["blocks.2.conv1.weight"].numpy())


def test_plain_cross_entropy_when_distillation_is_off(image_dir, tmp_path):
    t = trainer(image_dir, tmp_path, "supernet.loss.inplace_distill=false", "supernet.loss.label_smoothing=0")
    x, y = first_batch(t)
    arch = t.schedule.sampler.smallest()
    paths = [Path("max", t.schedule.sampler.largest()), Path("random", arch)]
    expected = []
    for p in paths:
        t.model.set_active(p.arch)
        expected.append(smoothed_ce(t.model(x).numpy(), y.numpy().reshape(-1), 0.0))
    values, _ = run_step_capturing_grads(t, x, y, paths)
    np.testing.assert_allclose(values, expected, rtol=1e-4)


def test_supernet_initialisation_and_a_groups_depth_ranges(image_dir, tmp_path):
    """A few-shot group's fine-tuning: the source supernet's weights, paths only from the group."""
    from supernet.model import ResNet48Supernet

    base = trainer(image_dir, tmp_path)
    paddle.seed(11)
    source = ResNet48Supernet(base.spec)
    path = str(tmp_path / "init.pdparams")
    paddle.save(source.state_dict(), path)
    t = trainer(image_dir, tmp_path / "group", "supernet.init=supernet", f"supernet.pretrained={path}",
                "supernet.sampler.depth_ranges=[[2,5],[2,5],[2,4],[2,5]]")
    for (n, p), q in zip(t.model.state_dict().items(), source.state_dict().values(), strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
    depths = {p.arch.depths[2] for step in range(10) for p in t.schedule.paths(0, step)}
    assert depths <= {2, 3, 4} and len(depths) > 1


def test_rank_loss_step_adds_the_weighted_hinge_of_the_paths_cross_entropies(image_dir, tmp_path):
    from encoding import costs

    t = trainer(image_dir, tmp_path, "supernet.zero_init_residual=false", "supernet.loss.label_smoothing=0",
                "supernet.loss.rank.weight=0.5", "supernet.loss.rank.margin=0.05", "supernet.sampler.num_random=2")
    x, y = first_batch(t)
    paths = t.schedule.paths(0, 0)
    _, macs = costs([p.arch for p in paths], t.spec, t.resolution)
    assert len(set(macs.tolist())) == len(paths)
    total, ces = None, []
    for p in paths:  # independent route: numpy-free sum of the losses plus the hinge written out by pairs
        t.model.set_active(p.arch)
        ce = F.cross_entropy(t.model(x), y)
        ces.append(ce)
        total = ce if total is None else total + ce
    pairs = [(i, j) for i in range(len(paths)) for j in range(len(paths)) if macs[i] > macs[j]]
    hinge = sum(F.relu(ces[i] - ces[j] + 0.05) for i, j in pairs) / len(pairs)
    (total + 0.5 * hinge).backward()
    expected_grads = {n: p.grad.numpy().copy() for n, p in t.model.named_parameters() if p.grad is not None}
    t.model.clear_gradients(set_to_zero=False)
    values, grads = run_step_capturing_grads(t, x, y, paths)
    np.testing.assert_allclose(values, [c.item() for c in ces], rtol=1e-5)
    assert t.rank_log == {"rank_weight": 0.5, "rank_loss": pytest.approx(hinge.item(), rel=1e-5)}
    for n in expected_grads:
        scale = float(np.abs(expected_grads[n]).max())
        np.testing.assert_allclose(grads[n], expected_grads[n], rtol=1e-3, atol=1e-5 * scale, err_msg=n)


def test_rank_loss_settings_are_checked(image_dir, tmp_path):
    from infra.config import ConfigError

    with pytest.raises(ConfigError, match="rank.cost must be macs or params"):
        trainer(image_dir, tmp_path, "supernet.loss.rank.cost=flops")
    with pytest.raises(KitError, match="schedule must be one of constant, linear"):
        trainer(image_dir, tmp_path, "supernet.loss.rank.schedule=step")
