"""Loading the official resnet48.pdparams layout, checked with a synthetic checkpoint of the same keys."""

import numpy as np
import paddle
import pytest

from encoding import RELEASED, KitError, NetSpec
from supernet import ResNet48Supernet, load_official_resnet48, load_official_static, official_keys


def synthetic_official_state(seed=0):
    """Random tensors under the official key names and shapes, written out by hand."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(key, out, inp, k):
        state[key] = rng.normal(0, (2.0 / (inp * k * k)) ** 0.5, (out, inp, k, k)).astype("float32")

    def bn(prefix, c):
        state[f"{prefix}.weight"] = rng.uniform(0.5, 1.5, c).astype("float32")
        state[f"{prefix}.bias"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{prefix}._mean"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{prefix}._variance"] = rng.uniform(0.5, 1.5, c).astype("float32")

    conv("blocks.0.conv.weight", 64, 3, 7)
    bn("blocks.0.bn", 64)
    index, cin = 1, 64
    for depth, width in zip((5, 5, 8, 5), (64, 128, 256, 512), strict=True):
        for b in range(depth):
            conv(f"blocks.{index}.conv1.weight", width, cin, 3)
            bn(f"blocks.{index}.bn1", width)
            conv(f"blocks.{index}.conv2.weight", width, width, 3)
            bn(f"blocks.{index}.bn2", width)
            if b == 0 and index != 1:
                conv(f"blocks.{index}.downsample.0.weight", width, cin, 1)
                bn(f"blocks.{index}.downsample.1", width)
            cin, index = width, index + 1
    assert index == 24
    state["blocks.24.fc.weight"] = rng.normal(0, 0.05, (512, 1000)).astype("float32")
    state["blocks.24.fc.bias"] = rng.normal(0, 0.05, 1000).astype("float32")
    return state


@pytest.fixture(scope="module")
def official():
    return synthetic_official_state()


def test_expected_keys_are_the_official_ones(official):
    expected = official_keys()
    assert set(expected) == set(official) and len(expected) == 252
    assert all(expected[k] == v.shape for k, v in official.items())
    assert sorted({k.split(".")[1] for k in expected if "downsample" in k}) == ["11", "19", "6"]


def test_supernet_max_export_equals_static_loaded_from_same_dict(official, tmp_path):
    path = str(tmp_path / "resnet48.pdparams")
    paddle.save({k: paddle.to_tensor(v) for k, v in official.items()}, path)
    net = load_official_resnet48(ResNet48Supernet(NetSpec()), path)
    teacher = load_official_static(official)
    net.eval()
    teacher.eval()
    x = paddle.randn([2, 3, 64, 64])
    exported = net.export(RELEASED.max_arch())
    with paddle.no_grad():
        a, b, c = net(x).numpy(), exported(x).numpy(), teacher(x).numpy()
    np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(teacher.state_dict()["blocks.24.fc.weight"].numpy(), official["blocks.24.fc.weight"])
    np.testing.assert_array_equal(net.state_dict()["blocks.19.downsample.1._variance"].numpy(),
                                  official["blocks.19.downsample.1._variance"])


def test_mismatched_checkpoint_names_every_problem(official):
    bad = dict(official)
    del bad["blocks.7.bn1._mean"]
    bad["blocks.25.fc.weight"] = np.zeros((512, 1000), dtype="float32")
    bad["blocks.24.fc.weight"] = np.zeros((512, 100), dtype="float32")
    net = ResNet48Supernet(NetSpec())
    before = net.state_dict()["blocks.0.conv.weight"].numpy().copy()
    with pytest.raises(KitError) as info:
        load_official_resnet48(net, bad)
    msg = str(info.value)
    assert "missing keys (1): blocks.7.bn1._mean" in msg
    assert "unexpected keys (1): blocks.25.fc.weight" in msg
    assert "wrong shapes (1): blocks.24.fc.weight: checkpoint [512, 100], model [512, 1000]" in msg
    np.testing.assert_array_equal(net.state_dict()["blocks.0.conv.weight"].numpy(), before)  # nothing copied
    with pytest.raises(KitError, match="missing keys"):
        load_official_static(bad)


def test_reduced_supernet_rejects_full_size_checkpoint(official):
    net = ResNet48Supernet(NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10))
    with pytest.raises(KitError, match=r"blocks.0.conv.weight: checkpoint \[64, 3, 7, 7\], model \[8, 1, 3, 3\]"):
        load_official_resnet48(net, official)


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(KitError, match="does not exist"):
        load_official_static(str(tmp_path / "nope.pdparams"))
    junk = tmp_path / "junk.pdparams"
    junk.write_text("not a checkpoint")
    with pytest.raises(KitError, match="could not be read by paddle.load"):
        load_official_static(str(junk))


# --- reordering channels by importance, as the official demo's resnet48(pretrained, reorder=True) ----------------

def numpy_reorder(state):
    """The formula written out again in numpy, block by block, from the official names."""
    out = {k: np.array(v) for k, v in state.items()}
    for block in range(1, 24):
        p = f"blocks.{block}"
        importance = np.abs(out[f"{p}.conv2.weight"]).sum(axis=(0, 2, 3))
        idx = np.argsort(importance)[::-1]  # descending (ties have probability 0 with random weights)
        out[f"{p}.conv2.weight"] = out[f"{p}.conv2.weight"][:, idx, :, :]
        out[f"{p}.conv1.weight"] = out[f"{p}.conv1.weight"][idx, :, :, :]
        for name in ("weight", "bias", "_mean", "_variance"):
            out[f"{p}.bn1.{name}"] = out[f"{p}.bn1.{name}"][idx]
    return out


def paddle_reorder(state):
    """The same with Paddle's ops as the official kit applies them (argsort descending, index_select)."""
    out = {k: paddle.to_tensor(v) for k, v in state.items()}
    for block in range(1, 24):
        p = f"blocks.{block}"
        idx = paddle.argsort(paddle.sum(paddle.abs(out[f"{p}.conv2.weight"]), axis=[0, 2, 3]), axis=0, descending=True)
        out[f"{p}.conv2.weight"] = paddle.index_select(out[f"{p}.conv2.weight"], idx, axis=1)
        out[f"{p}.conv1.weight"] = paddle.index_select(out[f"{p}.conv1.weight"], idx, axis=0)
        for name in ("weight", "bias", "_mean", "_variance"):
            out[f"{p}.bn1.{name}"] = paddle.index_select(out[f"{p}.bn1.{name}"], idx, axis=0)
    return {k: v.numpy() for k, v in out.items()}


def separated(state, seed=1):
    """The state with each conv2 input channel scaled by a distinct factor, so that no two
    channels' importances are closer than float32 rounding (then every argsort agrees)."""
    rng = np.random.default_rng(seed)
    out = dict(state)
    for block in range(1, 24):
        key = f"blocks.{block}.conv2.weight"
        scale = 1 + 0.01 * rng.permutation(out[key].shape[1])
        out[key] = (np.sign(out[key]) * (0.01 + 0 * out[key]) * scale[None, :, None, None]).astype("float32")
    return out


def test_reorder_equals_the_formula_in_numpy_and_in_paddle_ops(official):
    from supernet.pretrained import reorder_channels

    ours = reorder_channels(official)
    assert set(ours) == set(official) and all(ours[k].shape == official[k].shape for k in official)
    expected = paddle_reorder(official)  # random weights: near-ties in float32 go as Paddle's ops order them
    for k in official:
        np.testing.assert_array_equal(ours[k], expected[k], err_msg=k)
    spread = separated(official)
    ours_spread, expected = reorder_channels(spread), numpy_reorder(spread)
    for k in official:
        np.testing.assert_array_equal(ours_spread[k], expected[k], err_msg=k)
    changed = [k for k in official if not np.array_equal(ours[k], official[k])]
    assert changed and all(k.split(".")[2] in ("conv1", "bn1", "conv2") for k in changed)
    assert "blocks.6.downsample.0.weight" not in changed and "blocks.0.conv.weight" not in changed
    order = np.abs(ours["blocks.7.conv2.weight"]).sum(axis=(0, 2, 3))
    assert np.all(np.diff(order) <= 0)  # most important first


def test_reorder_keeps_the_full_network_and_changes_narrower_subnets(official):
    x = paddle.randn([2, 3, 64, 64])
    plain = load_official_resnet48(ResNet48Supernet(NetSpec()), official, reorder=False)
    sorted_ = load_official_resnet48(ResNet48Supernet(NetSpec()), official)  # reorder is the default
    plain.eval()
    sorted_.eval()
    narrow = RELEASED.min_arch()
    with paddle.no_grad():
        plain.set_active(RELEASED.max_arch())
        sorted_.set_active(RELEASED.max_arch())
        a, b = sorted_(x).numpy(), plain(x).numpy()  # random weights: logits of order 1e4
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()  # the same function, to float32 rounding
        plain.set_active(narrow)
        sorted_.set_active(narrow)
        a, b = sorted_(x).numpy(), plain(x).numpy()
        assert np.abs(a - b).max() > 0.05 * np.abs(b).max()  # other channels kept: another function
    teacher = load_official_static(official)
    np.testing.assert_array_equal(teacher.state_dict()["blocks.3.bn1._mean"].numpy(),
                                  sorted_.state_dict()["blocks.3.bn1._mean"].numpy())


def test_reorder_command_writes_the_same_names_and_shapes(official, tmp_path):
    from supernet.pretrained import main, reorder_channels

    src, dst = tmp_path / "resnet48.pdparams", tmp_path / "sorted.pdparams"
    paddle.save({k: paddle.to_tensor(v) for k, v in official.items()}, str(src))
    assert main(["reorder", str(src), str(dst)]) == 0
    written = paddle.load(str(dst))
    expected = reorder_channels(official)
    assert set(written) == set(official)
    for k, v in written.items():
        np.testing.assert_array_equal(v.numpy(), expected[k], err_msg=k)
    # loading the reordered file without reordering again gives the default load of the original
    a = load_official_static(str(dst), reorder=False).state_dict()
    b = load_official_static(str(src)).state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_reorder_command_errors_are_one_line(tmp_path, capsys):
    from supernet.pretrained import main

    assert main(["reorder", str(tmp_path / "none.pdparams"), str(tmp_path / "out.pdparams")]) == 1
    assert "does not exist" in capsys.readouterr().err
    paddle.save({"fc.weight": paddle.zeros([2, 2])}, str(tmp_path / "other.pdparams"))
    assert main(["reorder", str(tmp_path / "other.pdparams"), str(tmp_path / "out.pdparams")]) == 1
    assert "no BasicBlock found to reorder" in capsys.readouterr().err
    assert not (tmp_path / "out.pdparams").exists()
