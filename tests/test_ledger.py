"""Energy/time ledger: readers against fakes with known answers, records, summaries by hand."""

import json
import sys
import time

import pytest

from infra import ledger as L


class FakeNVML:
    """Stands in for the `pynvml` module: one GPU whose counter and power the test sets."""

    class NVMLError(Exception):
        pass

    def __init__(self, energy_mj=None, power_mw=None, init_fails=False, name=b"Fake GPU 80GB"):
        self.energy_mj = energy_mj  # None: counter not supported (pre-Volta)
        self.power_mw = power_mw  # None, a number, or a function of nothing
        self.init_fails = init_fails
        self.name = name
        self.power_calls = 0
        self.handles = []
        self.shutdowns = 0

    def nvmlInit(self):
        if self.init_fails:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, i):
        self.handles.append(("index", i))
        return ("gpu", i)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.handles.append(("uuid", uuid))
        return ("gpu", uuid)

    def nvmlDeviceGetName(self, handle):
        return self.name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.energy_mj is None:
            raise self.NVMLError("Not Supported")
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle):
        if self.power_mw is None:
            raise self.NVMLError("Not Supported")
        self.power_calls += 1
        return self.power_mw() if callable(self.power_mw) else self.power_mw


def no_sync():
    pass


def test_counter_reader_difference_in_joules(tmp_path):
    fake = FakeNVML(energy_mj=1000)
    reader = L.gpu_reader(nvml=fake, gpu=0)
    assert isinstance(reader, L.NvmlCounterReader)
    assert reader.device_name == "Fake GPU 80GB"  # bytes names (old pynvml) are decoded
    with L.Ledger(tmp_path / "l.jsonl", "supernet", readers=[reader], sync=no_sync) as led:
        with led.phase("epoch", images=256, epoch=3) as ph:
            fake.energy_mj = 5000
    rec = ph.record
    assert rec["energy_j"] == 4.0
    assert rec["energy_method"] == "nvml_energy_counter"
    assert rec["energy"] == {"gpu": {"joules": 4.0, "method": "nvml_energy_counter"}}
    assert rec["device"] == "Fake GPU 80GB" and rec["images"] == 256 and rec["epoch"] == 3
    lines = [json.loads(x) for x in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines] == ["start", "phase"]
    assert lines[0]["energy_sources"] == {"gpu": "nvml_energy_counter"}
    assert lines[1] == rec


def test_power_integration_fallback_constant_power(tmp_path):
    fake = FakeNVML(energy_mj=None, power_mw=150_000)  # 150 W, no energy counter
    reader = L.gpu_reader(nvml=fake, gpu=0, power_hz=20)
    assert isinstance(reader, L.NvmlPowerReader)
    with L.Ledger(tmp_path / "l.jsonl", "evaluate", readers=[reader], sync=no_sync) as led:
        calls_before = fake.power_calls
        with led.phase("chunk", subnets=10):
            time.sleep(0.3)
    rec = led.records[-1]
    assert rec["energy_method"] == "nvml_power_integration"
    # the reader's interval encloses the timed one (started before, stopped after), by little
    assert 150.0 * rec["seconds"] <= rec["energy_j"] <= 150.0 * (rec["seconds"] + 0.03)
    # polled in the background (start + stop alone would be 2 reads); 20 Hz over 0.3 s is ~6
    assert fake.power_calls - calls_before >= 4


def test_power_integration_is_exact_trapezoid_for_linear_power():
    # a fake clock advancing 0.5 s per read and power 100 + 10 t watts: the trapezoid rule is
    # exact for a linear function, whatever the number of background samples
    state = {"t": 10.0}

    def clock():
        state["t"] += 0.5
        return state["t"]

    fake = FakeNVML(power_mw=lambda: (100.0 + 10.0 * state["t"]) * 1000.0)
    reader = L.NvmlPowerReader(fake, ("gpu", 0), hz=50, clock=clock)
    reader.start()
    t0 = state["t"]
    time.sleep(0.1)
    joules = reader.stop()
    t1 = state["t"]
    assert t1 - t0 >= 1.0  # stop() sampled at least once more than start()
    assert joules == pytest.approx(100.0 * (t1 - t0) + 5.0 * (t1 * t1 - t0 * t0), rel=1e-12)


def test_power_polling_below_10hz_is_refused():
    with pytest.raises(L.LedgerError, match="too coarse"):
        L.NvmlPowerReader(FakeNVML(power_mw=1), ("gpu", 0), hz=5)


def test_gpu_without_counter_or_power_gives_no_reader():
    fake = FakeNVML(energy_mj=None, power_mw=None)
    assert L.gpu_reader(nvml=fake, gpu=0) is None


def test_nvml_init_failure_gives_no_reader():
    assert L.gpu_reader(nvml=FakeNVML(energy_mj=1, init_fails=True), gpu=0) is None


def _zone(root, name, label, energy, max_range):
    d = root / name
    d.mkdir()
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d / "energy_uj"


def test_rapl_packages_with_wraparound(tmp_path):
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 900_000, 1_000_000)
    p1 = _zone(tmp_path, "intel-rapl:1", "package-1", 5_000_000, 10**12)
    core = _zone(tmp_path, "intel-rapl:0:0", "core", 0, 10**12)  # inside package-0
    psys = _zone(tmp_path, "intel-rapl:2", "psys", 0, 10**12)  # overlaps the packages
    reader = L.rapl_reader(root=tmp_path, interval=60)
    assert [z[0] for z in reader.zones] == [str(p0), str(p1)]
    with L.Ledger(tmp_path / "l.jsonl", "standalone", readers=[reader], sync=no_sync) as led:
        with led.phase("epoch"):
            p0.write_text("100000\n")  # wrapped: 1,000,000 - 900,000 + 100,000 = 200,000 uJ
            p1.write_text("8000000\n")  # 3,000,000 uJ
            core.write_text("7000000\n")
            psys.write_text("9000000\n")
    rec = led.records[-1]
    assert rec["energy"]["cpu"] == {"joules": pytest.approx(3.2), "method": "rapl"}
    assert rec["energy_method"] == "rapl"


def test_rapl_steps_through_several_wraps_between_samples(tmp_path):
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 600, 1000)
    reader = L.rapl_reader(root=tmp_path, interval=60)
    reader.start()
    for value in (900, 200, 700, 100):  # what background samples would see: +300 +300 +500 +400
        p0.write_text(f"{value}\n")
        with reader._lock:
            reader._sample()
    assert reader.stop() == pytest.approx(1500 / 1e6)


def test_rapl_absent_or_unreadable(tmp_path):
    assert L.rapl_reader(root=tmp_path / "missing") is None
    (tmp_path / "intel-rapl:0").mkdir()  # no energy_uj file: not readable
    assert L.rapl_reader(root=tmp_path) is None


def test_no_nvml_records_time_and_null_energy(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    monkeypatch.setattr(L, "RAPL_ROOT", str(tmp_path / "no-powercap"))
    assert L.gpu_reader() is None
    with L.Ledger(tmp_path / "out" / "l.jsonl", "evaluate", gpu=True, sync=no_sync) as led:
        assert led.readers == []
        assert led.device_name == L.cpu_name()
        with led.phase("chunk", images=7) as ph:
            time.sleep(0.05)
    rec = ph.record
    assert rec["energy_j"] is None and rec["energy_method"] == "none" and rec["energy"] == {}
    assert rec["seconds"] >= 0.05
    assert rec["images"] == 7 and rec["ok"] is True


def test_visible_gpu_mapping():
    assert L.visible_gpu({}) == "0"
    assert L.visible_gpu({"FLAGS_selected_gpus": "1"}) == "1"
    assert L.visible_gpu({"CUDA_VISIBLE_DEVICES": "2,3", "FLAGS_selected_gpus": "1"}) == "3"
    assert L.visible_gpu({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb", "FLAGS_selected_gpus": "1"}) == "GPU-bb"
    assert L.visible_gpu({"CUDA_VISIBLE_DEVICES": "all", "FLAGS_selected_gpus": "2"}) == "2"
    with pytest.raises(L.LedgerError, match="CUDA_VISIBLE_DEVICES='4' lists only 1"):
        L.visible_gpu({"CUDA_VISIBLE_DEVICES": "4", "FLAGS_selected_gpus": "1"})
    with pytest.raises(L.LedgerError, match="not a GPU index"):
        L.visible_gpu({"FLAGS_selected_gpus": "gpu:1"})


def test_gpu_reader_follows_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa,GPU-bb")
    monkeypatch.setenv("FLAGS_selected_gpus", "1")
    fake = FakeNVML(energy_mj=0)
    L.gpu_reader(nvml=fake)
    assert fake.handles == [("uuid", "GPU-bb")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")
    fake = FakeNVML(energy_mj=0)
    L.gpu_reader(nvml=fake)
    assert fake.handles == [("index", 6)]


class BrokenReader(L.EnergyReader):
    source, method = "gpu", "nvml_energy_counter"

    def start(self):
        pass

    def stop(self):
        raise RuntimeError("sensor gone")


def test_failing_reader_and_failing_body_are_recorded(tmp_path):
    led = L.Ledger(tmp_path / "l.jsonl", "supernet", readers=[BrokenReader()], sync=no_sync, device_name="dev")
    with pytest.raises(ZeroDivisionError):
        with led.phase("epoch", images=3):
            raise ZeroDivisionError("boom")
    led.close()
    rec = L.read_records(tmp_path / "l.jsonl")[-1]
    assert rec["ok"] is False and rec["energy_j"] is None and rec["energy_method"] == "none"
    assert rec["energy"]["gpu"] == {"joules": None, "method": "nvml_energy_counter",
                                    "error": "RuntimeError: sensor gone"}


def test_misuse_errors(tmp_path):
    with pytest.raises(L.LedgerError, match="unknown run kind 'train'"):
        L.Ledger(tmp_path / "a.jsonl", "train", readers=[])
    with L.Ledger(tmp_path / "b.jsonl", "supernet", readers=[], sync=no_sync) as led:
        with pytest.raises(L.LedgerError, match="clash"):
            with led.phase("epoch", seconds=3):
                pass
        with led.phase("epoch"):
            with pytest.raises(L.LedgerError, match="phase 'calib' started while phase 'epoch' is still open"):
                with led.phase("calib"):
                    pass


def _rec(rank, seconds, energy_j, images=0, **extra):
    return {"type": "phase", "run_kind": "evaluate", "rank": rank, "phase": "chunk", "device": "X",
            "time": 0.0, "seconds": seconds, "images": images, "energy_j": energy_j,
            "energy_method": "nvml_energy_counter" if energy_j is not None else "none", "energy": {},
            "ok": True, **extra}


def test_summary_arithmetic_by_hand():
    records = [
        {"type": "start", "run_kind": "evaluate"},
        _rec(0, 10.0, 3.6e6, images=100, subnets=200),
        _rec(0, 20.0, 1.8e6, images=100, subnets=200),
        _rec(1, 25.0, 3.6e6, images=50, subnets=100),
        _rec(1, 5.0, None, images=50),
    ]
    s = L.summarize(records, "evaluate")
    # ranks run side by side: wall = max(10+20, 25+5) = 30 s; device time 60 s
    assert s["seconds"] == 30.0 and s["hours"] == 30.0 / 3600 and s["device_seconds"] == 60.0
    assert s["energy_j"] == 9.0e6 and s["kwh"] == 2.5  # 9e6 J / 3.6e6 J per kWh
    assert s["phases"] == 4 and s["ranks"] == 2 and s["images"] == 300 and s["phases_without_energy"] == 1
    assert s["subnets"] == 500
    assert s["per_1000_subnets"] == {"seconds": 60.0, "kwh": 5.0}
    line = L.summary_line(s)
    assert line.startswith("subnet evaluation: 0.008 h wall (30.0 s) on 2 ranks, 2.5 kWh (nvml_energy_counter)")
    assert "energy missing for 1 of 4 phases" in line
    assert line.endswith("per 1,000 of 500 subnets: 60 s, 5 kWh")
    assert L.summarize(records, "evaluate", subnets=2000)["per_1000_subnets"] == {"seconds": 15.0, "kwh": 1.25}


def test_summary_without_energy_says_so():
    s = L.summarize([_rec(0, 7200.0, None)], "evaluate")
    assert s["kwh"] is None and s["hours"] == 2.0 and s["per_1000_subnets"] is None
    assert "energy not measured (method none)" in L.summary_line(s)


def test_summary_of_mixed_kinds_needs_a_kind():
    other = dict(_rec(0, 1.0, None), run_kind="supernet")
    with pytest.raises(L.LedgerError, match=r"mix run kinds \['evaluate', 'supernet'\]"):
        L.summarize([_rec(0, 1.0, None), other])
    assert L.summarize([_rec(0, 1.0, None), other], "supernet")["phases"] == 1


def test_files_round_trip_over_ranks_and_torn_line(tmp_path):
    fake = FakeNVML(energy_mj=0)
    paths = []
    for rank in (0, 1):
        path = L.ledger_path(tmp_path, "supernet", rank=rank, world_size=2)
        paths.append(path)
        with L.Ledger(path, "supernet", readers=[L.gpu_reader(nvml=fake, gpu=rank)], rank=rank,
                      sync=no_sync) as led:
            for _ in range(2):
                with led.phase("epoch", images=10):
                    fake.energy_mj += 1_800_000_000  # 1.8 MJ = 0.5 kWh
    assert paths[1].endswith("ledger-supernet-rank1.jsonl")
    with open(paths[1], "a") as f:
        f.write('{"type": "phase", "run_ki')  # the process died mid-write
    s = L.summarize_files(paths)
    assert s["run_kind"] == "supernet" and s["phases"] == 4 and s["ranks"] == 2
    assert s["kwh"] == pytest.approx(2.0) and s["images"] == 40
    assert L.main(paths + ["--kind", "supernet"]) == 0


def test_malformed_ledger_file(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type": "start"}\nnot json\n{"type": "start"}\n')
    with pytest.raises(L.LedgerError, match="bad.jsonl: line 2 is not JSON"):
        L.read_records(path)
    assert L.main([str(tmp_path / "none.jsonl")]) == 1
    assert "none.jsonl: no such ledger file" in capsys.readouterr().err
