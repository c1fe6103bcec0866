"""GPU review (issue 36), the parts a CPU can check in one process: the RNG state of a checkpoint resumed on
another card count (a fake CUDA generator), the refusal of a resume on another world size that would not
continue the run, one RAPL reader per node, the head in float32 under AMP, and the TF32 switches pinned in
the results manifest (fake switches)."""

import json
import os

import numpy as np
import paddle
import pytest

import runtime.device as D
from encoding import NetSpec
from evaluate.evaluator import evaluate_model
from evaluate.image_cache import TensorSet
from evaluate.results_store import ResultsStore, ResultsStoreError
from infra import ledger as L
from runtime.checkpoint import CheckpointError, check_world_change
from supernet.model import NUM_SLOTS, ResNet48Supernet
from supernet.static import build_static

SMALL = NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10)


# --- item 1: the RNG state of a checkpoint resumed on another number of cards -------------------

class FakeGenerator:
    def __init__(self, state):
        self.state = state

    def get_state(self):
        return self.state

    def set_state(self, state):
        self.state = state


def fake_gpus(monkeypatch, count, current):
    """`count` visible cards whose generators Paddle's all-cards API lists (and refuses another count
    of, as Paddle 3.3's set_cuda_rng_state does); this process computes on card `current`."""
    cards = [FakeGenerator(f"card{i}-state") for i in range(count)]

    def set_all(states):
        if len(states) != count:
            raise ValueError("Length of cuda state list should be equal to the cuda device count")
        for card, s in zip(cards, states, strict=True):
            card.set_state(s)

    monkeypatch.setattr(D, "gpu_available", lambda: True)
    monkeypatch.setattr(paddle, "get_cuda_rng_state", lambda: [c.get_state() for c in cards])
    monkeypatch.setattr(paddle, "set_cuda_rng_state", set_all)
    monkeypatch.setattr(D, "_this_gpu_generator", lambda: cards[current])
    return cards


def test_rng_state_holds_this_cards_generator_and_resumes_on_another_card_count(monkeypatch):
    fake_gpus(monkeypatch, count=8, current=3)  # trained on 8 cards, this rank on card 3
    state = D.rng_state()
    assert state["paddle_gpu"] == "card3-state" and "paddle_cuda" not in state
    cards = fake_gpus(monkeypatch, count=4, current=0)  # resumed on 4 cards
    D.set_rng_state(state)  # Paddle's all-cards setter raised ValueError here
    assert [c.state for c in cards] == ["card3-state", "card1-state", "card2-state", "card3-state"]
    # a checkpoint of the old layout (every card's state) resumes too: that list is not applied
    legacy = {**{k: v for k, v in state.items() if k != "paddle_gpu"}, "paddle_cuda": [f"old{i}" for i in range(8)]}
    D.set_rng_state(legacy)
    assert [c.state for c in cards][1:] == ["card1-state", "card2-state", "card3-state"]


def test_rng_state_on_cpu_is_what_it_was():
    state = D.rng_state()
    assert set(state) == {"python", "numpy", "paddle_cpu"}
    before = np.random.random()
    D.set_rng_state(state)
    assert np.random.random() == before


LAYOUT = {"world": 2, "global_batch": 16, "steps_per_epoch": 4, "epoch_samples": 64}


def test_world_change_is_allowed_when_the_run_continues_and_refused_in_one_line_otherwise():
    check_world_change("ck", LAYOUT, dict(LAYOUT), True, "hint")  # same world
    check_world_change("ck", {}, {**LAYOUT, "world": 1}, True, "hint")  # a checkpoint from before: as before
    check_world_change("ck", LAYOUT, {**LAYOUT, "world": 1}, True, "hint")  # same global batches: exact
    check_world_change("ck", LAYOUT, {**LAYOUT, "world": 4, "epoch_samples": 68}, False, "hint")  # epoch start
    with pytest.raises(CheckpointError, match=r"^checkpoint ck was written on 2 rank\(s\), this run has 1 and the "
                                              r"global batch changed \(16 -> 8\): resume on 2 rank\(s\), or hint$"):
        check_world_change("ck", LAYOUT, {**LAYOUT, "world": 1, "global_batch": 8}, False, "hint")
    with pytest.raises(CheckpointError, match="stopped mid-epoch: padded to a multiple of 3 ranks the epoch holds "
                                              "66 samples, not 64"):
        check_world_change("ck", LAYOUT, {**LAYOUT, "world": 3, "epoch_samples": 66}, True, "hint")


# --- item 2: every rank resumes rank 0's checkpoint, and says so -------------------------------

def test_ranks_that_cannot_see_or_did_not_load_the_same_state_stop_in_one_line(monkeypatch, tmp_path):
    import runtime.checkpoint as ck

    chosen = tmp_path / "step_000000002.pdckpt"
    chosen.write_bytes(b"x")
    monkeypatch.setattr(ck, "broadcast_from_main", lambda obj: str(chosen))  # rank 0's choice wins
    monkeypatch.setattr(ck, "gather_from_all", lambda obj: [obj, obj])
    assert ck.agree_on_checkpoint(str(tmp_path / "step_000000001.pdckpt")) == str(chosen)
    monkeypatch.setattr(ck, "gather_from_all", lambda obj: [obj, False])  # rank 1's storage lacks the file
    with pytest.raises(CheckpointError, match=r"^rank 0 resumes from .*step_000000002.pdckpt, which rank\(s\) 1 "
                                              r"cannot see: the run folder must be one shared directory"):
        ck.agree_on_checkpoint(None)
    monkeypatch.setattr(ck, "gather_from_all", lambda obj: [obj, obj])
    ck.confirm_same_step(7, "ck")
    monkeypatch.setattr(ck, "gather_from_all", lambda obj: [obj, 6])
    with pytest.raises(CheckpointError, match=r"^ranks loaded different states from ck: global steps \[7, 6\]"):
        ck.confirm_same_step(7, "ck")
    monkeypatch.setattr(ck, "gather_from_all", lambda obj: [obj, None])
    with pytest.raises(CheckpointError, match=r"^rank\(s\) 1 could not load ck \(their logs say why\)$"):
        ck.confirm_same_step(7, "ck")
    ck.confirm_same_step(None, "ck")  # the rank that failed raises its own error after this


# --- item 4: CPU energy once per node --------------------------------------------------------

def write_rapl(root, uj):
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{uj}\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    return zone / "energy_uj"


def test_rapl_is_read_by_the_nodes_first_rank_only(tmp_path, monkeypatch):
    counter = write_rapl(tmp_path / "rapl", 1_000_000)
    monkeypatch.setattr(L, "RAPL_ROOT", str(tmp_path / "rapl"))
    records = []
    for rank in (0, 1):  # two ranks of one node, as paddle.distributed.launch starts them
        monkeypatch.setenv("PADDLE_LOCAL_RANK", str(rank))
        with L.Ledger(tmp_path / f"ledger-rank{rank}.jsonl", "supernet", gpu=False, rank=rank) as lg:
            with lg.phase("epoch_1"):
                counter.write_text(f"{(rank + 1) * 30_000_000 + 1_000_000}\n")  # the package used 30 J
            records.append(lg.records[-1])
    assert [r["energy_method"] for r in records] == ["rapl", "rapl_by_local_rank_0"]
    assert [r["energy_j"] for r in records] == [30.0, 0.0]  # before: 30 J on each rank
    assert L.summarize(records)["energy_j"] == 30.0 and L.summarize(records)["phases_without_energy"] == 0
    assert L.local_rank({"PADDLE_LOCAL_RANK": "3"}) == 3 and L.local_rank({}) == 0


def test_summed_ledgers_of_a_node_count_its_cpu_energy_once(tmp_path, monkeypatch):
    counter = write_rapl(tmp_path / "rapl", 0)
    monkeypatch.setattr(L, "RAPL_ROOT", str(tmp_path / "rapl"))
    readers = []
    for rank in (0, 1):
        monkeypatch.setenv("PADDLE_LOCAL_RANK", str(rank))
        readers.append(L.default_readers(gpu=False))
    for rs in readers:
        for r in rs:
            r.start()
    counter.write_text("50000000\n")  # 50 J for the node
    joules = [r.stop() for rs in readers for r in rs]
    assert joules == [50.0, 0.0]  # before: 50 J on each rank, 100 J summed


# --- item 5: pooling and classifier in float32 under AMP -----------------------------------

def half_body(model, last):
    """What autocast does on a GPU: the convolutions' output (the head's input) in bfloat16."""
    return last.register_forward_post_hook(lambda layer, inputs, out: out.astype("bfloat16"))


@pytest.mark.parametrize("kind", ["supernet", "static"])
def test_head_runs_in_float32_under_a_forced_autocast(kind, monkeypatch):
    import runtime.amp

    monkeypatch.setattr(runtime.amp, "amp_dtype", lambda name, device, key="amp", warn=False: "bfloat16")
    paddle.seed(0)
    if kind == "supernet":
        model = ResNet48Supernet(SMALL)
        last, head = model.blocks[NUM_SLOTS], model.blocks[NUM_SLOTS + 1]
    else:
        model = build_static(ResNet48Supernet.max_arch(), SMALL)
        last, head = model.blocks[-2], model.blocks[-1]
    seen = []
    head.fc.register_forward_pre_hook(lambda layer, inputs: seen.append(str(inputs[0].dtype)))
    half_body(model, last)
    rng = np.random.default_rng(0)
    data = TensorSet(rng.normal(0, 1, (6, 1, 16, 16)).astype("float32"), rng.integers(0, 10, 6), on_device=True)
    amp = runtime.amp.amp_dtype("bf16", "gpu:0")
    top1, top5, loss = evaluate_model(model, data, 3, amp=amp)
    assert seen == ["paddle.float32", "paddle.float32"] and np.isfinite(loss)
    model.eval()
    with paddle.no_grad():
        assert model(data.images[:2]).dtype == paddle.float32


# --- item 6: TF32 switches from the config, pinned with the device kind ------------------------

class Switch:
    def __init__(self):
        self.on = True  # Paddle's default

    def set(self, value):
        self.on = bool(value)

    def get(self):
        return self.on


def fake_switches(monkeypatch):
    switches = {"cudnn_tf32": Switch(), "cublas_tf32": Switch()}
    monkeypatch.setattr(D, "_tf32_switches", lambda: {k: (s.set, s.get) for k, s in switches.items()})
    return switches


def test_fp32_math_sets_both_tf32_switches_on_a_gpu_and_nothing_on_cpu(monkeypatch):
    switches = fake_switches(monkeypatch)
    monkeypatch.setattr(D, "select_device", lambda name: "gpu:0")
    assert D.setup_device({"device": "gpu"}) == "gpu:0"  # no gpu: section: the default, true fp32
    assert [s.on for s in switches.values()] == [False, False]
    assert D.precision_facts("gpu:0") == {"kind": "gpu", "cudnn_tf32": False, "cublas_tf32": False,
                                          "fp32_math": "fp32"}
    assert D.set_fp32_math("tf32", "gpu:1")["fp32_math"] == "tf32" and all(s.on for s in switches.values())
    switches["cublas_tf32"].set(True)
    D.set_fp32_math("fp32", "cpu")  # a CPU run leaves them alone
    assert all(s.on for s in switches.values()) and D.precision_facts("cpu") == {"kind": "cpu"}
    with pytest.raises(D.DeviceError, match="^gpu.fp32_math must be one of fp32, tf32, got 'tf16'$"):
        D.set_fp32_math("tf16", "gpu:0")


def test_imagenet_config_names_fp32_math_once():
    from infra.config import default_config, load_yaml

    cfg = load_yaml(default_config("imagenet"))
    assert cfg["gpu"] == {"fp32_math": "fp32"}


class Entry:
    def __init__(self, ident, code):
        self.id, self.code = ident, code


def store_with_record(tmp_path, settings):
    entries = [Entry("arch1", "1" * 51), Entry("arch2", "2" * 51)]
    store = ResultsStore(tmp_path, entries)
    store.check_manifest(settings)
    with store.open(0):
        store.append({"id": "arch1", "code": "1" * 51, "top1": 0.5, "top5": 0.9, "loss": 1.0,
                      "calibration": "none", "seconds": 1.0})
    return entries


def test_manifest_refuses_mixing_cpu_and_gpu_or_tf32_results(tmp_path, monkeypatch):
    switches = fake_switches(monkeypatch)
    cpu = {"amp": "None", "device": D.precision_facts("cpu")}
    entries = store_with_record(tmp_path, cpu)
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"]["device"] == {"kind": "cpu"}
    D.set_fp32_math("fp32", "gpu:0")
    gpu = {"amp": "None", "device": D.precision_facts("gpu:0")}
    with pytest.raises(ResultsStoreError, match=r"holds results computed on cpu, this run computes on gpu \(TF32 "
                                                r"off\): their numbers differ, so they do not mix"):
        ResultsStore(tmp_path, entries).check_manifest(gpu)
    gpu_dir = tmp_path / "gpu"
    store_with_record(gpu_dir, gpu)
    switches["cudnn_tf32"].set(True)
    with pytest.raises(ResultsStoreError, match=r"computed on gpu \(TF32 off\), this run computes on gpu \(TF32 "
                                                r"cuDNN on, cuBLAS off\)"):
        ResultsStore(gpu_dir, entries).check_manifest({"amp": "None", "device": D.precision_facts("gpu:0")})


def test_a_manifest_from_before_the_device_was_pinned_is_a_cpu_one(tmp_path):
    entries = store_with_record(tmp_path, {"amp": "None"})
    ResultsStore(tmp_path, entries).check_manifest({"amp": "None", "device": {"kind": "cpu"}})  # resumes
    with pytest.raises(ResultsStoreError, match="computed on cpu, this run computes on gpu"):
        ResultsStore(tmp_path, entries).check_manifest({"amp": "None", "device": {"kind": "gpu", "cudnn_tf32": True,
                                                                                   "cublas_tf32": True}})
    assert os.path.isfile(tmp_path / "manifest.json")


def test_eval_settings_pin_the_device_only_when_given():
    from evaluate.settings import EvalSettings

    class Source:
        kind = "checkpoint"

        def files(self):
            return [__file__]

    from infra.config import default_config, load_yaml

    settings = EvalSettings.from_config(load_yaml(default_config("demo")))
    assert "device" not in settings.pinned(SMALL, Source())  # search's score cache keys stay as they were
    assert settings.pinned(SMALL, Source(), "cpu")["device"] == {"kind": "cpu"}


# --- item 7: each batch moved to the device once; mean/std made once per device ----------------

def test_normalize_makes_its_constants_once_per_place_and_pickles_without_them():
    import pickle

    from imagedata.transforms import Normalize

    norm = Normalize((0.5,), (0.25,))
    pixels = paddle.to_tensor(np.arange(8, dtype=np.uint8).reshape(2, 1, 2, 2))
    first = norm(pixels)
    constants = norm._constants(pixels.place)
    assert all(a is b for a, b in zip(norm._constants(pixels.place), constants, strict=True))
    np.testing.assert_allclose(first.numpy(), (np.arange(8).reshape(2, 1, 2, 2) / 255 - 0.5) / 0.25, rtol=1e-6)
    assert np.array_equal(norm(pixels).numpy(), first.numpy()) and len(norm._on_place) == 1
    again = pickle.loads(pickle.dumps(norm))
    assert "_on_place" not in again.__dict__ and np.array_equal(again(pixels).numpy(), first.numpy())


def test_loader_moves_each_batch_to_the_gpu_once(tmp_path, monkeypatch):
    from fakedata import dataset_of, write_fashion_like

    import imagedata.loaders as loaders

    write_fashion_like(tmp_path, n_train=12, n_val=4)
    dataset = dataset_of({"data": {"name": "fashion_mnist", "fashion_mnist_dir": str(tmp_path), "resolution": 28,
                                   "holdout": None, "num_workers": 0, "augment": "none"},
                          "model": {"in_channels": 1, "num_classes": 10}}, "train", augment=False)
    moved = []

    def to_device(t):
        moved.append(str(t.dtype))
        return t

    monkeypatch.setattr(loaders, "to_device", to_device)
    loader = loaders.build_loader(dataset, 4, shuffle=True, drop_last=True, num_replicas=1, rank=0)
    assert len(list(loader)) == 3 and moved == []  # on the CPU nothing moves
    monkeypatch.setattr(paddle.device, "get_device", lambda: "gpu:0")
    batches = list(loader)
    assert len(batches) == 3 and moved == ["paddle.uint8", "paddle.int64"] * 3  # images (then normalised), labels
    assert batches[0][0].dtype == paddle.float32


# --- item 10: the uint8 cache on the device when float32 would not fit --------------------------

def test_auto_cache_keeps_uint8_on_the_gpu_when_float32_does_not_fit():
    from evaluate.image_cache import make_tensor_set
    from imagedata.transforms import Normalize

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (10, 1, 8, 8)).astype(np.uint8)  # 640 B as uint8, 2,560 B as float32
    labels = np.arange(10, dtype=np.int64)
    norm = Normalize((0.5,), (0.25,))
    gb = 1000 / 2**30
    cache = make_tensor_set(pixels, labels, device_gb=gb, on_gpu=True, normalize=norm)
    assert cache.on_device and cache.images.dtype == paddle.uint8  # before: float32 in host memory
    roomy = make_tensor_set(pixels, labels, device_gb=1.0, on_gpu=True, normalize=norm)
    assert roomy.on_device and roomy.images.dtype == paddle.float32
    for (a, _), (b, _) in zip(cache.batches(4), roomy.batches(4), strict=True):
        assert np.array_equal(a.numpy(), b.numpy())  # the same numbers as the float32 cache
    tiny = make_tensor_set(pixels, labels, device_gb=100 / 2**30, on_gpu=True, normalize=norm)
    assert not tiny.on_device and tiny.images.dtype == np.float32  # not even uint8 fits: host, as before
    cpu = make_tensor_set(pixels, labels, device_gb=gb, on_gpu=False, normalize=norm)
    assert cpu.images.dtype == paddle.float32  # CPU runs keep their cache


# --- item 11: the external teacher under the student's autocast -------------------------------

def test_teacher_runs_under_the_students_autocast(monkeypatch):
    import contextlib

    import supernet.train as T

    entered = []

    @contextlib.contextmanager
    def autocast(amp):
        entered.append(amp)
        yield

    monkeypatch.setattr(T, "autocast", autocast)

    class Fake:
        paddle = paddle
        amp = "bfloat16"
        teacher = staticmethod(lambda x: x * 2)

    assert T.Trainer._teacher_logits(Fake(), paddle.ones([1])).item() == 2.0 and entered == ["bfloat16"]
    Fake.teacher = None
    assert T.Trainer._teacher_logits(Fake(), paddle.ones([1])) is None


# --- item 9: the next step's paths drawn while this step trains ----------------------------------

def test_paths_ahead_gives_the_same_paths_one_draw_at_a_time():
    import threading
    import time

    from fakedata import sampler_section

    from supernet.samplers import PathsAhead, build_schedule

    schedule = build_schedule(sampler_section(strategy="pool_top", pool_size=40, pool_keep=2), seed=3, spec=SMALL)

    class Recorder:
        def __init__(self):
            self.calls, self.busy, self.overlap = [], threading.Lock(), False

        def paths(self, epoch, step):
            if not self.busy.acquire(blocking=False):
                self.overlap = True
                self.busy.acquire()
            try:
                self.calls.append((epoch, step))
                time.sleep(0.005)
                return schedule.paths(epoch, step)
            finally:
                self.busy.release()

    recorder = Recorder()
    ahead = PathsAhead(recorder, steps_per_epoch=3)
    asked = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0)]  # a jump to (1, 2), as a resume makes
    got = []
    try:
        for e, s in asked:
            got.append([p.arch.code() for p in ahead.paths(e, s)])
            ahead._ahead[1].result()  # the step trains longer than the next draw takes
    finally:
        ahead.close()
    assert got == [[p.arch.code() for p in schedule.paths(e, s)] for e, s in asked]
    # each next step drawn ahead; the jump's step drawn when asked, its successor ahead again
    assert recorder.calls == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]
    assert not recorder.overlap


def test_a_trainer_drawing_paths_ahead_trains_exactly_as_one_that_does_not(tmp_path):
    from test_train_supernet import DEMO, make_image_folder, tiny_overrides

    from supernet.train import Trainer
    from train_supernet import load_config

    images = make_image_folder(tmp_path / "images")
    weights, codes = [], []
    for name, device in (("plain", None), ("ahead", "gpu:0")):
        out = str(tmp_path / name)
        cfg, _ = load_config([DEMO, *tiny_overrides(images, out, "supernet.epochs=1",
                                                    "supernet.sampler.strategy=pool_top",
                                                    "supernet.sampler.pool_size=20")])
        trainer = Trainer(cfg)
        if device:
            trainer.device = device  # the trainer draws ahead on GPUs only; here the rest runs on the CPU
        assert trainer.run()["finished"]
        weights.append(paddle.load(os.path.join(out, "supernet.pdparams")))
        with open(os.path.join(out, "train_log.jsonl"), encoding="utf-8") as f:
            codes.append([r["codes"] for r in map(json.loads, f) if r["type"] == "step"])
    assert codes[0] == codes[1] and len(codes[0]) == 4
    assert all(np.array_equal(weights[0][k].numpy(), weights[1][k].numpy()) for k in weights[0])
