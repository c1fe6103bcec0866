"""supernet.loop.Loop, the one training loop: which batches each step sees, when checkpoints are
written, where max_steps stops, how a resumed run restores its RNG state, and the NaN rule."""

import numpy as np
import pytest

from supernet.loop import EpochDone, Loop, Pending, Position, TrainingDiverged, check_finite


class FakeLoader:
    """`steps` batches of 2 images per epoch; records what it was asked for."""

    def __init__(self, steps):
        self.steps, self.calls = steps, []

    def set_epoch(self, epoch, start_batch=0):
        self.epoch, self.start = epoch, start_batch
        self.calls.append(("set_epoch", epoch, start_batch))

    def __iter__(self):
        self.calls.append(("iter", self.epoch))  # when the iterator is made, as a DataLoader starts its work
        return ((np.full((2, 1), 10 * self.epoch + b), None) for b in range(self.start, self.steps))


def run(loader, epochs, position=None, rng=None, **kwargs):
    events = []
    loop = Loop(loader, epochs, loader.steps, lr=lambda: 0.5, progress=False,
                set_rng=lambda state: loader.calls.append(("rng", state)), **kwargs)

    def step(epoch, index, x, y, global_step):
        events.append(("step", epoch, index, int(x[0, 0]), global_step))
        return Pending([float(global_step), 1.0], lambda: None, lambda f: ({"a": f[0], "b": f[1]}, {}),
                       lambda i: f"step {global_step + 1}")

    reached = loop.run(step, position, rng=rng,
                       end_epoch=lambda done: events.append(("end_epoch", done)),
                       save=lambda *a: events.append(("save", *a)),
                       after_epoch=lambda *a: events.append(("after_epoch", *a)))
    return reached, events


def test_epochs_steps_and_checkpoints_in_order():
    reached, events = run(FakeLoader(3), 2, every_steps=2)
    assert reached == Position(2, 0, 6)
    steps = [e[1:] for e in events if e[0] == "step"]
    assert steps == [(0, 0, 0, 0), (0, 1, 1, 1), (0, 2, 2, 2), (1, 0, 10, 3), (1, 1, 11, 4), (1, 2, 12, 5)]
    # saves: (epoch, next batch, global step, epoch end); global step 2 mid-epoch, then each epoch's end
    # (global step 4 is also due by the cadence), and epoch ends come with their statistics first
    kinds = [e[0] if e[0] != "save" else e for e in events if e[0] != "step"]
    assert kinds == [("save", 0, 2, 2, False), "end_epoch", ("save", 1, 0, 3, True), "after_epoch",
                     ("save", 1, 1, 4, False), "end_epoch", ("save", 2, 0, 6, True), "after_epoch"]
    done = [e[1] for e in events if e[0] == "end_epoch"]
    assert [(d.epoch, d.global_step, d.steps, d.lr_last) for d in done] == [(1, 3, 3, 0.5), (2, 6, 3, 0.5)]
    # loss: mean over steps of the mean of each step's values ({a: global step, b: 1})
    assert done[0].loss == pytest.approx(np.mean([(g + 1) / 2 for g in (0, 1, 2)]))
    assert isinstance(done[0], EpochDone) and done[0].images_per_s > 0


def test_max_steps_stops_inside_an_epoch_with_a_checkpoint():
    reached, events = run(FakeLoader(3), 3, max_steps=4)
    assert reached == Position(1, 1, 4)
    assert [e for e in events if e[0] == "save"] == [("save", 1, 0, 3, True), ("save", 1, 1, 4, False)]
    assert sum(e[0] == "after_epoch" for e in events) == 1


def test_resuming_mid_epoch_skips_trained_batches_and_restores_the_rng_after_the_loader():
    loader = FakeLoader(3)
    reached, events = run(loader, 2, position=Position(0, 2, 2), rng="state@2")
    assert reached == Position(2, 0, 6)
    assert [e[1:] for e in events if e[0] == "step"] == [(0, 2, 2, 2), (1, 0, 10, 3), (1, 1, 11, 4), (1, 2, 12, 5)]
    # mid-epoch: the loader is set up first, then the state the checkpoint holds; once only
    assert loader.calls[:3] == [("set_epoch", 0, 2), ("iter", 0), ("rng", "state@2")]
    assert sum(c[0] == "rng" for c in loader.calls) == 1
    # at an epoch's start the state comes before the loader is set up
    loader = FakeLoader(3)
    run(loader, 2, position=Position(1, 0, 3), rng="state@3")
    assert loader.calls[:3] == [("rng", "state@3"), ("set_epoch", 1, 0), ("iter", 1)]


def test_a_finished_run_trains_nothing():
    reached, events = run(FakeLoader(3), 2, position=Position(2, 0, 6))
    assert reached == Position(2, 0, 6) and events == []


def test_nan_rule_names_the_step_and_the_last_checkpoint():
    check_finite({"loss": 1.0, "max": 2.0}, "anywhere")
    with pytest.raises(TrainingDiverged) as e:
        check_finite({"loss": float("nan")}, "epoch 2, step 3", "ckpt/epoch_0001.pdckpt")
    assert str(e.value) == ("training diverged: non-finite loss nan at epoch 2, step 3; stopped before the update. "
                            "Last good checkpoint: ckpt/epoch_0001.pdckpt")
    with pytest.raises(TrainingDiverged, match=r"non-finite loss inf at step 1 \(max\); .* checkpoint: none$"):
        check_finite({"loss": 0.0, "max": float("inf")}, "step 1")
