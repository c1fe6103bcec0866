"""The plain standalone model: layout of its parameter names, parameter counts, shapes."""

import pathlib
import subprocess
import sys

import numpy as np
import paddle
import pytest

import encoding
import supernet
from encoding import DOCUMENTED, RELEASED, KitError, NetSpec
from supernet import StaticResNet, build_static

SMALL = NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10)
SMALL_IMAGENET_STEM = NetSpec(width_mult=0.125, stem="imagenet", in_channels=3, num_classes=10)


def trainable_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


def codes():
    out = [RELEASED.min_arch(), RELEASED.max_arch(), DOCUMENTED.min_arch()]
    out += RELEASED.sample_many(6, seed=11) + DOCUMENTED.sample_many(6, seed=12)
    return out


@pytest.mark.parametrize("spec", [SMALL, SMALL_IMAGENET_STEM], ids=["small-stem", "imagenet-stem"])
def test_param_count_matches_cost_model(spec):
    for arch in codes():
        model = build_static(arch, spec)
        assert trainable_params(model) == encoding.params_of(arch, spec), arch.code()


def test_full_size_max_arch_param_count_by_hand():
    # stem 7*7*3*64 + 2*64; stage 1: 5 x (2*9*64*64 + 4*64); stage 2: first block
    # 9*64*128 + 9*128*128 + 4*128 + downsample (64*128 + 2*128), then 4 x (2*9*128*128 + 4*128);
    # stages 3 and 4 alike (8 and 5 blocks); fc 512*1000 + 1000.
    stem = 9408 + 128
    stage1 = 5 * 73984
    stage2 = 230144 + 4 * 295424
    stage3 = 919040 + 7 * 1180672
    stage4 = 3673088 + 4 * 4720640
    fc = 513000
    model = build_static(RELEASED.max_arch(), NetSpec())
    assert trainable_params(model) == stem + stage1 + stage2 + stage3 + stage4 + fc == 34043688


def test_key_layout_follows_the_standalone_model():
    # depths 2,3,4,2: blocks.0 stem, blocks.1-2 stage 1, 3-5 stage 2, 6-9 stage 3, 10-11 stage 4, 12 head
    code = "1" + "2342" + "1" + "1111000000" + "2121210000" + "3131313100000000" + "1414000000"
    model = build_static(code, SMALL)
    keys = set(model.state_dict())
    assert len(model.blocks) == 13
    assert {k.split(".")[1] for k in keys if ".downsample." in k} == {"3", "6", "10"}
    for k in ("blocks.0.conv.weight", "blocks.0.bn._mean", "blocks.0.bn._variance", "blocks.2.conv1.weight",
              "blocks.2.bn2.bias", "blocks.3.downsample.0.weight", "blocks.3.downsample.1._mean",
              "blocks.12.fc.weight", "blocks.12.fc.bias"):
        assert k in keys, k
    assert not any(k.startswith("blocks.13.") for k in keys)
    last = SMALL.channels(512, 4)
    assert model.state_dict()["blocks.12.fc.weight"].shape == [last, 10]
    # stage-3 block 1: conv1 digit 3 on base 256, input = stage-2 width (digit 1 on base 128)
    assert model.state_dict()["blocks.6.conv1.weight"].shape == [SMALL.channels(256, 3), SMALL.channels(128, 1), 3, 3]
    assert model.arch == encoding.parse(code) and model.spec == SMALL
    assert isinstance(model, StaticResNet)


def test_forward_shapes_both_stems():
    arch = RELEASED.sample_many(1, seed=3)[0]
    assert build_static(arch, SMALL)(paddle.randn([2, 1, 28, 28])).shape == [2, 10]
    assert build_static(arch.code(), SMALL_IMAGENET_STEM)(paddle.randn([2, 3, 64, 64])).shape == [2, 10]


def test_zero_init_residual_turns_every_block_without_downsample_into_the_identity():
    net = build_static(RELEASED.max_arch(), SMALL)
    net.eval()
    seen = []
    for block in net.blocks[1:-1]:
        if block.downsample is None:
            block.register_forward_post_hook(lambda layer, inputs, output: seen.append((inputs[0], output)))
    x = paddle.randn([2, 1, 16, 16])
    net(x)
    assert len(seen) == 20 and all(np.abs(i.numpy() - o.numpy()).max() > 1e-3 for i, o in seen)
    seen.clear()
    net.zero_init_residual()
    net(x)
    assert len(seen) == 20  # 23 blocks less the first of stages 2-4 (stage 1: stride 1, the stem's width)
    for i, o in seen:
        np.testing.assert_array_equal(i.numpy(), o.numpy())


def test_bad_inputs_have_clear_errors():
    with pytest.raises(KitError, match="spec must be an encoding.NetSpec"):
        build_static(RELEASED.max_arch(), {"width_mult": 0.5})
    with pytest.raises(encoding.CodeError, match="wrong length"):
        build_static("1234", SMALL)


def test_import_supernet_does_not_import_paddle():
    code = ("import sys, supernet, infra.config; assert 'paddle' not in sys.modules, 'paddle imported'; "
            "supernet.StaticResNet; assert 'paddle' in sys.modules; print(sorted(supernet.__all__))")
    root = pathlib.Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(root))
    assert out.returncode == 0, out.stderr
    assert "'ResNet48Supernet'" in out.stdout and "'build_static'" in out.stdout
    with pytest.raises(AttributeError, match="module 'supernet' has no attribute 'nope'"):
        supernet.nope  # noqa: B018
