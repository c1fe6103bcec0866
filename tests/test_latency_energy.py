"""Energy per inference in `python -m evaluate latency`: fake RAPL trees and a fake NVML whose counters the
forward passes advance by known amounts, so every mJ per image is worked out by hand."""

import json
import sys

import numpy as np
import pytest
from test_latency import CONFIG, SPEC  # its tiny model, timed here at 16 px, batch sizes 1 and 2, 2 rounds
from test_ledger import FakeNVML

from encoding import RELEASED, ArchEntry, write_arch_list
from evaluate import latency as LAT
from infra import ledger as L

CODES = [a.code() for a in [RELEASED.min_arch()] + RELEASED.sample_many(2, seed=3, depth_uniform=True)]

PACKAGE_UJ = 700  # per image of a forward pass of code k: (k + 1) * 700 uJ in the package
DRAM_UJ = 50  # and 50 uJ in DRAM
RANGE_UJ = 1_000_000  # package-0's max_energy_range_uj: it wraps during the first timed runs


def zone(root, name, label, energy, max_range=10**12):
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d / "energy_uj"


def advance(path, uj, max_range=10**12):
    path.write_text(f"{(int(path.read_text()) + uj) % max_range}\n")


class FakeNet:
    """Stands in for build_static's subnet: each forward pass adds a known energy to the counters."""

    def __init__(self, code, on_forward):
        self.code, self.on_forward = code, on_forward

    def eval(self):
        return self

    def __call__(self, x):
        self.on_forward(CODES.index(self.code), int(x.shape[0]))


def fake_nets(monkeypatch, on_forward):
    import supernet.static

    monkeypatch.setattr(supernet.static, "build_static", lambda arch, spec: FakeNet(arch.code(), on_forward))


@pytest.fixture
def rapl(tmp_path, monkeypatch):
    """A powercap tree: package-0 starting 1,000 uJ short of its wrap, its DRAM subzone, and a core subzone
    and psys that advance too but must not be counted (inside / overlapping the package)."""
    root = tmp_path / "powercap"
    counters = {"package": zone(root, "intel-rapl:0", "package-0", RANGE_UJ - 1000, RANGE_UJ),
                "core": zone(root, "intel-rapl:0:0", "core", 0), "dram": zone(root, "intel-rapl:0:2", "dram", 5),
                "psys": zone(root, "intel-rapl:1", "psys", 0)}
    wraps = []

    def on_forward(k, bs):
        before = int(counters["package"].read_text())
        advance(counters["package"], (k + 1) * PACKAGE_UJ * bs, RANGE_UJ)
        wraps.append(int(counters["package"].read_text()) < before)
        advance(counters["dram"], DRAM_UJ * bs)
        advance(counters["core"], 10**6)
        advance(counters["psys"], 10**7)

    monkeypatch.setattr(L, "RAPL_ROOT", str(root))
    fake_nets(monkeypatch, on_forward)
    return root, wraps


def write_inputs(tmp_path):
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    write_arch_list(tmp_path / "archs.json", [ArchEntry(f"a{i}", c) for i, c in enumerate(CODES)])
    return ["--config", str(tmp_path / "cfg.yaml"), "--archs", str(tmp_path / "archs.json"), "--resolution", "16",
            "--batch-sizes", "1,2", "--rounds", "2", "--out", str(tmp_path / "lat.json")]


def test_rapl_energy_per_image_by_hand_through_a_wrap(rapl, tmp_path, capsys):
    root, wraps = rapl
    assert LAT.main(write_inputs(tmp_path)) == 0
    # the first code's warm-up pass (700 uJ) leaves the counter 300 uJ short; its first timed pass wraps it
    assert wraps[:2] == [False, True]
    table = json.loads((tmp_path / "lat.json").read_text())
    energy = table["energy"]
    assert energy["measured"] is True and energy["method"] == "rapl" and energy["zones"] == ["package-0", "dram"]
    assert "whole CPU package" in energy["scope"] and "failed_cells" not in energy
    for k, row in enumerate(table["codes"]):
        for bs in (1, 2):
            images = bs * 3 * 2  # batch size x repeats x rounds: the warm-up passes are not metered
            cell = row["energy"][str(bs)]
            assert cell["images"] == images
            assert cell["joules"] == pytest.approx(images * ((k + 1) * PACKAGE_UJ + DRAM_UJ) / 1e6)
            assert cell["mj_per_image"] == pytest.approx(((k + 1) * PACKAGE_UJ + DRAM_UJ) / 1000)  # 0.75, 1.45, 2.15
    out = capsys.readouterr().out
    assert "energy 0.75-2.15 mJ per image" in out and "energy: rapl on" in out


def test_without_a_meter_the_table_says_why_and_holds_no_zeros(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "RAPL_ROOT", str(tmp_path / "absent"))
    fake_nets(monkeypatch, lambda k, bs: None)
    assert LAT.main(write_inputs(tmp_path)) == 0
    table = json.loads((tmp_path / "lat.json").read_text())
    assert table["energy"]["measured"] is False and str(tmp_path / "absent") in table["energy"]["reason"]
    assert [row["energy"] for row in table["codes"]] == [None, None, None]


def test_gpu_energy_from_the_nvml_counter_of_the_card_in_use(monkeypatch):
    nvml = FakeNVML(energy_mj=10**9)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.delenv("FLAGS_selected_gpus", raising=False)
    meter, info = LAT.energy_meter("gpu:1")
    assert nvml.handles == [("index", 5)]  # paddle's gpu:1 is the second visible card, NVML's GPU 5
    assert isinstance(meter, L.NvmlCounterReader)
    assert info["measured"] is True and info["method"] == "nvml_energy_counter" and info["meter"] == "Fake GPU 80GB"
    assert "whole GPU board" in info["scope"]

    def on_forward(k, bs):
        nvml.energy_mj += 4 * (k + 1) * bs  # mJ: 4, 8, 12 per image

    fake_nets(monkeypatch, on_forward)
    rows = LAT.measure([ArchEntry("a", CODES[0]), ArchEntry("b", CODES[1])], SPEC, [1, 3], 16, warmup=2, repeats=5,
                       progress=False, meter=meter)
    assert [row["energy"]["3"]["mj_per_image"] for row in rows] == pytest.approx([4.0, 8.0])
    assert [row["energy"]["1"]["joules"] for row in rows] == pytest.approx([0.02, 0.04])  # 5 passes of 1 image


def test_a_gpu_without_the_energy_counter_or_nvml_is_not_measured(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(energy_mj=None, power_mw=250_000))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meter, info = LAT.energy_meter("gpu:0")
    assert meter is None and info == {"measured": False, "reason": "GPU 0 (Fake GPU 80GB) has no NVML energy counter "
                                      "(before Volta), and power polling is too coarse for per-inference energy"}
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    meter, info = LAT.energy_meter("gpu:0")
    assert meter is None and info["measured"] is False and info["reason"].startswith("NVML reads no energy counter")


def test_a_failing_reading_makes_its_cell_null_not_zero(monkeypatch):
    class Flaky(L.EnergyReader):
        calls = 0

        def start(self):
            pass

        def stop(self):
            Flaky.calls += 1
            if Flaky.calls == 2:
                raise OSError("energy_uj: Permission denied")
            return 0.5

    fake_nets(monkeypatch, lambda k, bs: None)
    rows = LAT.measure([ArchEntry("a", CODES[0])], SPEC, [1, 2], 16, warmup=0, repeats=2, rounds=2, progress=False,
                       meter=Flaky())
    # round 1: batch 1 read 0.5 J, batch 2 failed; round 2: both read 0.5 J. Batch 1: 1 J over 4 images
    assert rows[0]["energy"] == {"1": {"mj_per_image": 250.0, "joules": 1.0, "images": 4}, "2": None}
    assert np.isfinite(rows[0]["latency"]["2"]["median_ms"])
