"""The supernet against its own exports and the cost model; training-step isolation; state I/O."""

import numpy as np
import paddle
import pytest

import encoding
from encoding import DOCUMENTED, RELEASED, CodeError, NetSpec
from supernet import DynamicBatchNorm2D, DynamicConv2D, DynamicLinear, ResNet48Supernet, StaticResNet, build_static

SMALL = NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10)
SMALL_IMAGENET_STEM = NetSpec(width_mult=0.125, stem="imagenet", in_channels=3, num_classes=10)


def trainable_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


def sample_codes():
    """22 codes: extremes of both spaces plus seeded samples of each."""
    out = [RELEASED.min_arch(), RELEASED.max_arch(), DOCUMENTED.min_arch(), DOCUMENTED.max_arch()]
    out += RELEASED.sample_many(9, seed=1) + DOCUMENTED.sample_many(9, seed=2)
    return out


def randomise_bn_stats(net, seed):
    rng = np.random.default_rng(seed)
    for bn in net.dynamic_bn_layers():
        n = bn.num_features
        bn._mean.set_value(rng.normal(0, 0.5, n).astype("float32"))
        bn._variance.set_value(rng.uniform(0.5, 2.0, n).astype("float32"))
        bn.weight.set_value(rng.uniform(0.5, 1.5, n).astype("float32"))
        bn.bias.set_value(rng.normal(0, 0.2, n).astype("float32"))


@pytest.fixture(scope="module")
def small_net():
    paddle.seed(0)
    return ResNet48Supernet(SMALL)


def test_eval_output_equals_export_for_many_codes(small_net):
    net = small_net
    net.train()
    net.set_active(RELEASED.sample_many(1, seed=5)[0])
    for _ in range(2):  # training-mode forwards make the running statistics non-trivial
        net(paddle.randn([4, 1, 28, 28]))
    randomise_bn_stats(net, seed=0)  # and every channel's, not only the ones that code used
    x = paddle.randn([3, 1, 28, 28])
    net.eval()
    archs = sample_codes()
    assert len(set(archs)) >= 20
    for arch in archs:
        net.set_active(arch)
        static = net.export()
        assert isinstance(static, StaticResNet) and static.arch == arch and not static.training
        np.testing.assert_allclose(net(x).numpy(), static(x).numpy(), rtol=1e-5, atol=1e-5, err_msg=arch.code())


def test_zero_init_residual_makes_depth_irrelevant_at_start():
    """With each block's last BN scale at 0, a block without downsample passes its input on,
    so the deepest subnet and the shallowest one of the same widths compute the same logits."""
    from encoding import Arch

    deep = Arch(size_code="1", stem=1, blocks=tuple(((1, 1),) * d for d in (5, 5, 8, 5)))
    shallow = Arch(size_code="1", stem=1, blocks=tuple(((1, 1),) * d for d in (1, 1, 1, 1)))
    x = paddle.randn([3, 1, 28, 28])
    paddle.seed(3)
    net = ResNet48Supernet(SMALL)
    net.eval()
    outputs = {}
    for zeroed in (False, True):
        if zeroed:
            net.zero_init_residual()
        for arch in (deep, shallow):
            net.set_active(arch)
            outputs[zeroed, arch] = net(x).numpy()
    assert np.abs(outputs[False, deep] - outputs[False, shallow]).max() > 1e-3
    np.testing.assert_array_equal(outputs[True, deep], outputs[True, shallow])


def test_export_and_build_static_param_counts_match_cost_model(small_net):
    for spec in (SMALL, SMALL_IMAGENET_STEM):
        net = small_net if spec is SMALL else ResNet48Supernet(spec)
        for arch in sample_codes():
            expected = encoding.params_of(arch, spec)
            assert trainable_params(net.export(arch)) == expected, arch.code()
            assert trainable_params(build_static(arch, spec)) == expected, arch.code()


def test_export_of_other_arch_leaves_active_alone(small_net):
    small_net.set_active(RELEASED.min_arch())
    other = RELEASED.max_arch().code()[1:]  # 51-character form
    assert small_net.export(other).arch == RELEASED.max_arch()
    assert small_net.active_arch == RELEASED.min_arch()


def _slices(net, arch):
    """{param name: leading-slice shape used by `arch`} from an independent static model."""
    static = build_static(arch, net.spec)
    slot = [0]
    for s, depth in enumerate(arch.depths):
        slot += [1 + sum(encoding.MAX_DEPTHS[:s]) + b for b in range(depth)]
    slot.append(sum(encoding.MAX_DEPTHS) + 1)
    out = {}
    for name, p in static.state_dict().items():
        _, i, rest = name.split(".", 2)
        out[f"blocks.{slot[int(i)]}.{rest}"] = tuple(p.shape)
    return out


def test_one_step_touches_only_the_active_slices():
    paddle.seed(1)
    net = ResNet48Supernet(SMALL)
    net.train()
    # partial depths everywhere; narrow stem, downsamples and fc input; mixed conv1 widths
    arch = DOCUMENTED.validate("1" + "3254" + "3" + "2313330000" + "4222000000" + "1525354555000000" + "1222324200")
    net.set_active(arch)
    used = _slices(net, arch)
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=net.parameters())
    logits = net(paddle.randn([4, 1, 28, 28]))
    paddle.nn.functional.cross_entropy(logits, paddle.to_tensor([0, 1, 2, 3])).backward()
    opt.step()
    params = dict(net.named_parameters())
    checked = 0
    for name, value in net.state_dict().items():
        old = before[name]
        shape = used.get(name)
        grad = params[name].grad if name in params else None
        if shape is None:  # unused tensor: no gradient at all, nothing moved
            assert grad is None or not np.any(grad.numpy()), name
            np.testing.assert_array_equal(value.numpy(), old, err_msg=name)
            continue
        inside = tuple(slice(0, n) for n in shape)
        mask = np.ones(old.shape, dtype=bool)
        mask[inside] = False
        new = value.numpy()
        if name in params:
            g = grad.numpy()
            assert g.shape == tuple(old.shape)
            assert not np.any(g[mask]), f"{name}: non-zero gradient outside the active slice"
            assert np.any(g[inside]), f"{name}: no gradient inside the active slice"
        else:  # BN running statistics
            assert np.all(new[inside] != old[inside]), f"{name}: active statistics did not move"
        np.testing.assert_array_equal(new[mask], old[mask], err_msg=f"{name}: changed outside the slice")
        checked += 1
    assert checked == len(used)


def test_switching_codes_never_reallocates():
    paddle.seed(2)
    net = ResNet48Supernet(SMALL)
    net.train()

    def snapshot():
        return [(name, id(p), p.data_ptr(), tuple(p.shape)) for name, p in net.named_parameters()]

    first = snapshot()
    buffers = [(n, b.data_ptr()) for n, b in net.named_buffers()]
    opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=net.parameters())
    for arch in RELEASED.sample_many(3, seed=3) + [RELEASED.min_arch(), DOCUMENTED.max_arch()]:
        net.set_active(arch)
        net(paddle.randn([2, 1, 28, 28])).mean().backward()
        opt.step()
        opt.clear_grad()
        assert snapshot() == first
        assert [(n, b.data_ptr()) for n, b in net.named_buffers()] == buffers
    assert len(first) == len(list(net.parameters()))


def test_dynamic_layer_inventory(small_net):
    bns = small_net.dynamic_bn_layers()
    # stem + 23 blocks x 2 + 3 downsamples
    assert len(bns) == 1 + 2 * 23 + 3 and all(isinstance(b, DynamicBatchNorm2D) for b in bns)
    small_net.set_active(RELEASED.min_arch())  # depths 2,2,2,2 -> stem + 8 x 2 + 3 downsamples
    assert len(small_net.dynamic_bn_layers(active_only=True)) == 1 + 16 + 3
    assert sum(isinstance(m, DynamicConv2D) for m in small_net.sublayers()) == 1 + 46 + 3
    assert sum(isinstance(m, DynamicLinear) for m in small_net.sublayers()) == 1


def test_save_load_round_trip(tmp_path, small_net):
    paddle.seed(3)
    small_net.train()
    small_net.set_active(DOCUMENTED.sample_many(1, seed=9)[0])
    small_net(paddle.randn([4, 1, 28, 28]))
    path = str(tmp_path / "supernet.pdparams")
    paddle.save(small_net.state_dict(), path)
    fresh = ResNet48Supernet(SMALL)
    fresh.set_state_dict(paddle.load(path))
    x = paddle.randn([2, 1, 28, 28])
    small_net.eval()
    fresh.eval()
    for arch in (small_net.active_arch, RELEASED.max_arch()):
        small_net.set_active(arch)
        fresh.set_active(arch)
        np.testing.assert_array_equal(small_net(x).numpy(), fresh(x).numpy())


def test_broken_ties_are_clear_errors(small_net):
    code = RELEASED.max_arch().code()
    stage2 = code[:19] + "2" + code[20:]  # stage 2 block 2 conv2 digit
    with pytest.raises(CodeError, match=r"position 19: broken width tie: stage 2 block 2 conv2 digit 2 differs "
                                        r"from block 1's conv2 digit 1"):
        small_net.set_active(stage2)
    stem = code[:5] + "3" + code[6:]  # stem digit 3, stage 1 conv2 digits still 1
    with pytest.raises(CodeError, match=r"position 7: broken width tie: stage 1 block 1 conv2 digit 1 differs "
                                        r"from the stem digit 3"):
        small_net.set_active(stem)
    with pytest.raises(CodeError, match=r"position 6: .*broken width tie"):  # 51-char form, own indexing
        small_net.set_active(stem[1:])
    with pytest.raises(CodeError, match="wrong length"):
        small_net.set_active("11")
    assert small_net.active_arch != encoding.parse(stem)


def test_full_size_forward_at_224():
    paddle.seed(4)
    net = ResNet48Supernet(NetSpec())
    net.eval()
    net.set_active(RELEASED.sample_many(1, seed=4)[0])
    with paddle.no_grad():
        assert net(paddle.randn([1, 3, 224, 224])).shape == [1, 1000]
