"""Energy and time ledger: what each phase of a run (epoch, BN-calibration chunk, evaluation
chunk) cost, measured on this machine and never estimated.

Training time is not energy (EA-HAS-Bench), so every phase records wall seconds, images and
joules, with the method that produced the joules:
  'nvml_energy_counter'     GPU cumulative energy counter (Volta and newer), read before/after;
  'nvml_power_integration'  GPU power polled at >= 10 Hz in a thread, integrated (older GPUs);
  'rapl'                    CPU package (+DRAM) energy from /sys/class/powercap (when readable), read by
                            the node's first rank only ('rapl_by_local_rank_0': 0 J on the others);
  'none'                    nothing readable: energy is null, not a guess.
NVML comes from the optional `nvidia-ml-py` package (`import pynvml`); without it, or without
a GPU, the ledger still records time. Paddle is not imported here: the ledger must be cheap to
import from any entry point, and only asks Paddle (if the caller already imported it) which
device is in use and how to synchronise it.

Which GPU: the one this rank computes on. `paddle.distributed.launch` sets FLAGS_selected_gpus
to an index into CUDA_VISIBLE_DEVICES; that entry (an index or a GPU-/MIG- UUID) names the NVML
device. Without either variable it is GPU 0. NVML counts GPUs in PCI-bus order while CUDA by
default puts the fastest first, so on a machine with mixed GPU models set
CUDA_DEVICE_ORDER=PCI_BUS_ID (or pass gpu_index) to be sure both name the same card.

Records are JSON lines, flushed one by one, so a crashed run keeps what it measured; with
several ranks each writes its own file (`ledger_path`) and `summarize_files` adds them up.
"""

import contextlib
import json
import os
import platform
import socket
import sys
import threading
import time

from .errors import KitError, run_reporting_errors
from .jsonl import JsonLines

J_PER_KWH = 3.6e6

METHOD_COUNTER = "nvml_energy_counter"
METHOD_POWER = "nvml_power_integration"
METHOD_RAPL = "rapl"
METHOD_NONE = "none"
METHOD_RAPL_ELSEWHERE = "rapl_by_local_rank_0"

RUN_KINDS = {
    "supernet": "supernet training",
    "evaluate": "subnet evaluation",
    "standalone": "standalone training",
    "search": "budgeted search",
}

RAPL_ROOT = "/sys/class/powercap"
_RESERVED = {"type", "run_kind", "rank", "phase", "device", "time", "seconds", "images",
             "energy_j", "energy_method", "energy", "ok"}


class LedgerError(KitError):
    """A ledger is misused (unknown run kind, nested phases) or a ledger file is malformed."""


# --- energy readers ------------------------------------------------------------------------

class EnergyReader:
    """Energy one source (`source`: 'gpu' or 'cpu') used between `start()` and `stop()`.

    `stop()` returns joules, or None when the reading failed. Tests pass fakes of this shape.
    """

    source = "gpu"
    method = METHOD_NONE
    device_name = None

    def start(self):
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

    def close(self):
        pass


class NvmlCounterReader(EnergyReader):
    """Difference of NVML's cumulative energy counter (millijoules since the driver loaded)."""

    method = METHOD_COUNTER

    def __init__(self, nvml, handle, device_name=None, owns_init=False):
        self.nvml, self.handle, self.device_name = nvml, handle, device_name
        self._owns_init = owns_init
        self._begin = None

    def _read_mj(self):
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)

    def start(self):
        self._begin = self._read_mj()

    def stop(self):
        begin, self._begin = self._begin, None
        if begin is None:
            return None
        return (self._read_mj() - begin) / 1000.0

    def close(self):
        if self._owns_init:
            self._owns_init = False
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()


class _PolledReader(EnergyReader):
    """Accumulates energy from samples taken by a background thread every `interval` seconds,
    plus one sample at start and one at stop, so the integral spans exactly start..stop."""

    def __init__(self, interval):
        self.interval = float(interval)
        self._lock = threading.Lock()
        self._thread = None
        self._halt = threading.Event()
        self._joules = 0.0

    def _first_sample(self):
        raise NotImplementedError

    def _sample(self):
        """Read the source and add the energy since the previous sample to `self._joules`."""
        raise NotImplementedError

    def _loop(self):
        while not self._halt.wait(self.interval):
            with self._lock:
                if self._halt.is_set():  # stop() took the last sample meanwhile
                    return
                self._sample()

    def start(self):
        with self._lock:
            self._joules = 0.0
            self._first_sample()
        self._halt.clear()
        self._thread = threading.Thread(target=self._loop, name=f"ledger-{self.method}", daemon=True)
        self._thread.start()

    def stop(self):
        if self._thread is None:
            return None
        with self._lock:  # the last sample now, not after the thread wakes up and exits
            self._halt.set()
            self._sample()
            joules = self._joules
        self._thread.join()
        self._thread = None
        return joules

    def close(self):
        if self._thread is not None:
            self._halt.set()
            self._thread.join()
            self._thread = None


class NvmlPowerReader(_PolledReader):
    """Trapezoidal integral of NVML board power (milliwatts), for GPUs without the counter."""

    method = METHOD_POWER

    def __init__(self, nvml, handle, device_name=None, hz=20.0, owns_init=False, clock=time.perf_counter):
        if hz < 10:
            raise LedgerError(f"power polling at {hz} Hz is too coarse to integrate; use >= 10 Hz")
        super().__init__(1.0 / hz)
        self.nvml, self.handle, self.device_name = nvml, handle, device_name
        self._owns_init = owns_init
        self._clock = clock
        self._last = None  # (time, watts)

    def _read(self):
        return self._clock(), self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def _first_sample(self):
        self._last = self._read()

    def _sample(self):
        t, watts = self._read()
        t0, w0 = self._last
        self._joules += 0.5 * (w0 + watts) * (t - t0)
        self._last = (t, watts)

    def close(self):
        super().close()
        if self._owns_init:
            self._owns_init = False
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()


class RaplReader(_PolledReader):
    """CPU package energy from RAPL powercap zones (microjoule counters that wrap around).

    A package counter can wrap in minutes under load (its range is a few hundred kJ), so it is
    sampled every `interval` seconds and each step is corrected with max_energy_range_uj.
    Top-level 'package-N' zones are summed, and their 'dram' subzones where the platform has them
    (DRAM is outside the package domain); other subzones (core, uncore) are inside the packages and
    'psys' overlaps them. `names` are the summed zones' labels.
    """

    source = "cpu"
    method = METHOD_RAPL

    def __init__(self, zones, interval=5.0, device_name=None, names=None):
        super().__init__(interval)
        self.zones = list(zones)  # (energy_uj path, max_energy_range_uj)
        self.device_name = device_name
        self.names = list(names) if names is not None else [os.path.basename(os.path.dirname(p)) for p, _ in zones]
        self._prev = None

    def _read(self):
        out = []
        for path, _ in self.zones:
            with open(path, encoding="ascii") as f:
                out.append(int(f.read().strip()))
        return out

    def _first_sample(self):
        self._prev = self._read()

    def _sample(self):
        now = self._read()
        for i, ((_, max_range), before, after) in enumerate(zip(self.zones, self._prev, now, strict=True)):
            delta = after - before if after >= before else after + max_range - before
            self._joules += delta / 1e6
            self._prev[i] = after


class CountedElsewhere(EnergyReader):
    """A source another process of the node meters (RAPL on local rank 0): 0 J here, so the ranks'
    ledgers add up to the node's energy once and no phase reads as unmeasured."""

    def __init__(self, source, method, device_name=None):
        self.source, self.method, self.device_name = source, method, device_name

    def start(self):
        pass

    def stop(self):
        return 0.0


def rapl_reader(root=None, interval=5.0):
    """A RaplReader over the readable package zones (and their DRAM subzones) under `root` (default
    RAPL_ROOT), or None (no RAPL, or energy_uj readable by root only, as on kernels patched for
    CVE-2020-8694)."""
    root = RAPL_ROOT if root is None else root
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return None
    zones, labels = [], []
    for name in names:
        prefix, _, index = name.partition(":")
        package, _, sub = index.partition(":")
        if prefix != "intel-rapl" or not package.isdigit() or (sub and not sub.isdigit()):
            continue
        zone = os.path.join(root, name)
        try:
            with open(os.path.join(zone, "name"), encoding="ascii") as f:
                label = f.read().strip()
        except OSError:
            label = ""
        if sub and label != "dram":
            continue  # subzones 'intel-rapl:N:M' (core, uncore) are inside package N; only DRAM is not
        if not sub and label and not label.startswith("package"):
            continue  # 'psys' overlaps the packages
        try:
            with open(os.path.join(zone, "energy_uj"), encoding="ascii") as f:
                int(f.read().strip())
            with open(os.path.join(zone, "max_energy_range_uj"), encoding="ascii") as f:
                max_range = int(f.read().strip())
        except (OSError, ValueError):
            continue
        zones.append((os.path.join(zone, "energy_uj"), max_range))
        labels.append(label or name)
    if not zones:
        return None
    return RaplReader(zones, interval=interval, device_name=cpu_name(), names=labels)


def visible_gpu(env=None):
    """NVML identifier (index string or UUID) of the GPU this rank uses; see the module doc."""
    env = os.environ if env is None else env
    selected = (env.get("FLAGS_selected_gpus") or "0").split(",")[0].strip() or "0"
    if not selected.isdigit():
        raise LedgerError(f"FLAGS_selected_gpus={env.get('FLAGS_selected_gpus')!r} is not a GPU index")
    logical = int(selected)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None or visible.strip() in ("", "all"):
        return str(logical)
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if logical >= len(entries):
        raise LedgerError(f"GPU {logical} selected but CUDA_VISIBLE_DEVICES={visible!r} lists only "
                          f"{len(entries)}")
    return entries[logical]


def gpu_reader(nvml=None, gpu=None, power_hz=20.0):
    """The best NVML reader for GPU `gpu` (index or UUID; default `visible_gpu()`), or None
    when NVML is not installed, finds no driver, or the GPU reports neither energy nor power."""
    owns_init = nvml is None
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return None
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None
    try:
        ident = visible_gpu() if gpu is None else str(gpu)
        if ident.isdigit():
            handle = nvml.nvmlDeviceGetHandleByIndex(int(ident))
        else:
            handle = nvml.nvmlDeviceGetHandleByUUID(ident)
        name = nvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
    except (nvml.NVMLError, LedgerError):
        _shutdown(nvml, owns_init)
        return None
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return NvmlCounterReader(nvml, handle, name, owns_init=owns_init)
    except nvml.NVMLError:
        pass
    try:
        nvml.nvmlDeviceGetPowerUsage(handle)
        return NvmlPowerReader(nvml, handle, name, hz=power_hz, owns_init=owns_init)
    except nvml.NVMLError:
        _shutdown(nvml, owns_init)
        return None


def _shutdown(nvml, owns_init):
    if owns_init:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def cpu_name():
    """CPU model from /proc/cpuinfo (Linux), else whatever `platform` knows."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def local_rank(env=None):
    """This process's rank on its node (`paddle.distributed.launch` sets PADDLE_LOCAL_RANK); 0 alone."""
    env = os.environ if env is None else env
    value = str(env.get("PADDLE_LOCAL_RANK") or env.get("PADDLE_RANK_IN_NODE") or "0").strip()
    return int(value) if value.isdigit() else 0


def default_readers(gpu=True, gpu_index=None, cpu=None):
    """Readers for this process: the rank's GPU (when `gpu`) and the CPU packages, if readable.

    `cpu` None: only on the node's first rank (local rank 0). RAPL counts the whole package, every
    core of every rank on the node, so a reader per rank would count the node's CPU energy once per
    rank (8x on an 8-GPU node) when the ranks' ledgers are added up."""
    readers = []
    if gpu:
        r = gpu_reader(gpu=gpu_index)
        if r is not None:
            readers.append(r)
    if cpu is None:
        cpu = local_rank() == 0
    r = rapl_reader()
    if r is not None:
        readers.append(r if cpu else CountedElsewhere(r.source, METHOD_RAPL_ELSEWHERE, r.device_name))
    return readers


def _paddle_device():
    """Paddle's current device if the caller already imported Paddle, else None."""
    paddle = sys.modules.get("paddle")
    if paddle is None:
        return None
    with contextlib.suppress(Exception):
        return paddle.device.get_device()
    return None


def _paddle_sync():
    device = _paddle_device()
    if device is not None and device.startswith("gpu"):
        sys.modules["paddle"].device.synchronize()


# --- the ledger ----------------------------------------------------------------------------

class Phase:
    """One open phase; set `images` or add to `extra` while it runs."""

    def __init__(self, name, images, extra):
        self.name = name
        self.images = images
        self.extra = extra
        self.record = None  # filled when the phase ends


class Ledger:
    """Append-only JSON-lines record of a run's phases.

    gpu: read GPU energy? None means: yes if Paddle (already imported) runs on a GPU, or, when
    Paddle is not imported yet, if NVML finds one. Create the ledger after choosing the device.
    readers: energy readers to use instead of `default_readers` (tests pass fakes).
    sync: called before each phase's clock stops, so queued GPU work is counted in it.
    """

    def __init__(self, path, run_kind, device_name=None, *, readers=None, gpu=None, gpu_index=None,
                 rank=None, sync=None):
        if run_kind not in RUN_KINDS:
            raise LedgerError(f"unknown run kind {run_kind!r}: expected one of {sorted(RUN_KINDS)}")
        self.path = os.fspath(path)
        self.run_kind = run_kind
        if rank is None:
            rank = int(os.environ.get("PADDLE_TRAINER_ID") or os.environ.get("PADDLE_GLOBAL_RANK") or 0)
        self.rank = rank
        if readers is None:
            if gpu is None:
                device = _paddle_device()
                gpu = device.startswith("gpu") if device is not None else True
            readers = default_readers(gpu=gpu, gpu_index=gpu_index)
        self.readers = list(readers)
        if device_name is None:
            gpu_names = [r.device_name for r in self.readers if r.source == "gpu" and r.device_name]
            device_name = gpu_names[0] if gpu_names else cpu_name()
        self.device_name = device_name
        self.sync = _paddle_sync if sync is None else sync
        self.records = []
        self._open = None
        self._file = JsonLines(self.path)
        self._write({
            "type": "start", "run_kind": run_kind, "rank": self.rank, "device": self.device_name,
            "time": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
            "energy_sources": {r.source: r.method for r in self.readers},
        })

    def _write(self, record):
        self._file.write(record)

    @contextlib.contextmanager
    def phase(self, name, images=0, **extra):
        """Time and meter the body; the record is written when it ends, also on an exception."""
        clash = sorted(set(extra) & _RESERVED)
        if clash:
            raise LedgerError(f"phase extra fields {clash} clash with the ledger's own fields")
        if self._open is not None:
            raise LedgerError(f"phase {name!r} started while phase {self._open.name!r} is still open")
        ph = Phase(name, images, dict(extra))
        self._open = ph
        errors = {}
        for r in self.readers:
            try:
                r.start()
            except Exception as e:  # a failing sensor must never stop a training run
                errors[r.source] = f"{type(e).__name__}: {e}"
        wall = time.time()
        t0 = time.perf_counter()
        ok = False
        try:
            yield ph
            ok = True
        finally:
            try:
                self.sync()
            finally:
                seconds = time.perf_counter() - t0
                energy = {}
                for r in self.readers:
                    joules = None
                    if r.source not in errors:
                        try:
                            joules = r.stop()
                        except Exception as e:
                            errors[r.source] = f"{type(e).__name__}: {e}"
                    entry = {"joules": joules, "method": r.method}
                    if r.source in errors:
                        entry["error"] = errors[r.source]
                    energy[r.source] = entry
                self._open = None
                ph.record = self._phase_record(ph, wall, seconds, energy, ok)
                self.records.append(ph.record)
                self._write(ph.record)

    def _phase_record(self, ph, wall, seconds, energy, ok):
        known = [(src, e) for src, e in energy.items() if e["joules"] is not None]
        rec = {
            "type": "phase", "run_kind": self.run_kind, "rank": self.rank, "phase": ph.name,
            "device": self.device_name, "time": wall, "seconds": seconds, "images": int(ph.images),
            "energy_j": sum(e["joules"] for _, e in known) if known else None,
            "energy_method": "+".join(e["method"] for _, e in known) if known else METHOD_NONE,
            "energy": energy, "ok": ok,
        }
        clash = sorted(set(ph.extra) & _RESERVED)
        if clash:
            raise LedgerError(f"phase extra fields {clash} clash with the ledger's own fields")
        rec.update(ph.extra)
        return rec

    def summary(self, subnets=None):
        return summarize(self.records, self.run_kind, subnets=subnets)

    def close(self):
        for r in self.readers:
            with contextlib.suppress(Exception):
                r.close()
        if not self._file.closed:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ledger_path(out_dir, run_kind, rank=0, world_size=1):
    """Where a run keeps its ledger: one file per rank when several ranks share the run."""
    suffix = f"-rank{rank}" if world_size > 1 else ""
    return os.path.join(out_dir, f"ledger-{run_kind}{suffix}.jsonl")


# --- summaries -----------------------------------------------------------------------------

def summarize(records, run_kind=None, subnets=None):
    """Totals over phase records (of `run_kind`, if given).

    Ranks run side by side, so wall `seconds` is the largest per-rank total while
    `device_seconds` adds them; energy adds over ranks and sources. kWh = J / 3.6e6.
    `subnets` (default: the sum of the phases' `subnets` fields) gives per-1,000-subnet costs.
    """
    phases = [r for r in records if r.get("type") == "phase" and (run_kind is None or r["run_kind"] == run_kind)]
    kinds = sorted({r["run_kind"] for r in phases})
    if run_kind is None and len(kinds) > 1:
        raise LedgerError(f"records mix run kinds {kinds}; name the one to summarise")
    kind = run_kind or (kinds[0] if kinds else None)
    per_rank = {}
    for r in phases:
        per_rank[r["rank"]] = per_rank.get(r["rank"], 0.0) + r["seconds"]
    seconds = max(per_rank.values()) if per_rank else 0.0
    known = [r["energy_j"] for r in phases if r["energy_j"] is not None]
    energy_j = float(sum(known)) if known else None
    if subnets is None:
        counted = sum(int(r.get("subnets", 0) or 0) for r in phases)
        subnets = counted or None
    out = {
        "run_kind": kind,
        "phases": len(phases),
        "ranks": len(per_rank),
        "seconds": seconds,
        "hours": seconds / 3600.0,
        "device_seconds": float(sum(per_rank.values())),
        "images": int(sum(r["images"] for r in phases)),
        "energy_j": energy_j,
        "kwh": energy_j / J_PER_KWH if energy_j is not None else None,
        "phases_without_energy": len(phases) - len(known),
        "energy_methods": sorted({r["energy_method"] for r in phases}),
        "devices": sorted({r["device"] for r in phases}),
        "subnets": subnets,
        "per_1000_subnets": None,
    }
    if subnets:
        scale = 1000.0 / subnets
        out["per_1000_subnets"] = {
            "seconds": seconds * scale,
            "kwh": out["kwh"] * scale if out["kwh"] is not None else None,
        }
    return out


def read_records(path):
    """Records of one ledger file. A torn last line (the run died mid-write) is skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise LedgerError(f"{path}: no such ledger file") from None
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                break
            raise LedgerError(f"{path}: line {i} is not JSON ({e.msg})") from None
    return records


def summarize_files(paths, run_kind=None, subnets=None):
    """Summary over one or several ledger files (e.g. one per rank)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = [rec for p in paths for rec in read_records(p)]
    return summarize(records, run_kind, subnets=subnets)


def _energy_text(s):
    if s["kwh"] is None:
        return "energy not measured (method none)"
    methods = ", ".join(m for m in s["energy_methods"] if m != METHOD_NONE)
    text = f"{s['kwh']:.4g} kWh ({methods})"
    if s["phases_without_energy"]:
        text += f", energy missing for {s['phases_without_energy']} of {s['phases']} phases"
    return text


def summary_line(s):
    """One line an entry point prints at the end of its run."""
    what = RUN_KINDS.get(s["run_kind"], s["run_kind"] or "run")
    devices = ", ".join(s["devices"]) or "no device"
    ranks = f" on {s['ranks']} ranks" if s["ranks"] > 1 else ""
    head = (f"{what}: {s['hours']:.3f} h wall ({s['seconds']:.1f} s){ranks}, {_energy_text(s)}, "
            f"{s['images']:,} images, {s['phases']} phases [{devices}]")
    per = s["per_1000_subnets"]
    if per is not None:
        kwh = f"{per['kwh']:.4g} kWh" if per["kwh"] is not None else "energy not measured"
        head += f"; per 1,000 of {s['subnets']:,} subnets: {per['seconds']:.4g} s, {kwh}"
    return head


def main(argv=None):
    """`python -m infra.ledger FILE... [--kind K] [--subnets N] [--json]`: summarise ledgers."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m infra.ledger", description=main.__doc__)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--kind", choices=sorted(RUN_KINDS))
    parser.add_argument("--subnets", type=int)
    parser.add_argument("--json", action="store_true")
    return run_reporting_errors(_print_summary, parser.parse_args(argv))


def _print_summary(args):
    s = summarize_files(args.files, args.kind, subnets=args.subnets)
    print(json.dumps(s) if args.json else summary_line(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
