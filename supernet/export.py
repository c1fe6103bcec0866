"""Chosen subnets as deployable models: Paddle's inference format and, optionally, ONNX; checked, with a manifest.

    python -m supernet.export --config configs/demo.yaml --checkpoint runs/supernet-demo/supernet.pdparams \\
        --arch CODE --out exports/one [--onnx] [--force] [key=value ...]
    python -m supernet.export --config C --official resnet48.pdparams --archs front_archs.json --out exports/front

Weights are given as `python -m evaluate run` takes them (--checkpoint | --official | --fewshot; the keys
evaluate.checkpoint / .official / .fewshot). For each code:

1. the supernet holding the code (`WeightsSource.load`; a few-shot split's group copy) runs it
   (`set_active`), with BN statistics as the evaluation protocol sets them (`evaluate.protocol` and
   `evaluate.calibration`: recalibrated on the configured calibration batches, or the stored ones for
   mode 'none'; `supernet.calibration`, the routine evaluation uses);
2. `ResNet48Supernet.export` copies the slices into a plain StaticResNet (real channel counts), which
   `paddle.jit.save` writes as Paddle 3's inference model (model.json: the PIR program;
   model.pdiparams) for an input [N, model.in_channels, data.resolution, data.resolution], N dynamic;
3. with --onnx, paddle2onnx converts it to model.onnx (its pinned version: requirements-export.txt);
4. each file is loaded back (paddle.inference; ONNX Runtime) and must give the supernet's logits on a
   batch of real validation images: the max abs difference is printed and above
   export.tolerance x max|logit| the export is refused;
5. manifest.json: code, weights (kind, sha256), protocol, versions, opset, input spec, checks, and the
   preprocessing a caller applies (from the data section's evaluation transform).

--arch writes one export in DIR; --archs one per code in DIR/<id>/ and DIR/index.json. DIR appears whole or
not at all: everything is written in a temporary folder beside it (`.tmp-export-...`), then renamed. A
non-empty DIR is replaced only with --force.
"""

import argparse
import contextlib
import copy
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

from encoding import DOCUMENTED, CodeError, KitError, net_spec, read_arch_list
from imagedata.settings import worker_count
from infra import config as C
from infra.atomic import atomic_write_json, file_digest
from infra.errors import run_reporting_errors

from .weights import SOURCE_FLAGS, WeightsSource

RUNTIMES = ("paddle-inference", "onnxruntime")
MODEL_FILES = {"program": "model.json", "params": "model.pdiparams", "onnx": "model.onnx"}
INPUT_NAME = "image"
TMP_PREFIX = ".tmp-export-"
EXTRAS = "requirements-export.txt"

FLAGS = SOURCE_FLAGS + [
    C.Flag("--protocol", "evaluate.protocol", str, "evaluation protocol whose BN statistics are exported"),
    C.Flag("--calibration", "evaluate.calibration.mode", str, "BN statistics: none | recalibrate"),
    C.Flag("--arch", "export.arch", str, "the subnet code to export"),
    C.Flag("--archs", "export.archs", str, "architecture list JSON: one export per code"),
    C.Flag("--out", "export.out", str, "export directory (written whole or not at all)"),
    C.Flag("--onnx", "export.onnx", action="store_true", help="also convert to ONNX with paddle2onnx"),
    C.Flag("--opset", "export.opset", int, "ONNX opset"),
    C.Flag("--force", "export.force", action="store_true", help="replace a non-empty --out"),
    C.Flag("--check-images", "export.check_images", int, "validation images the export is checked on"),
    C.Flag("--device", "device", str, "auto | cpu | gpu"),
]


class ExportError(KitError):
    """Bad export settings, a missing optional package, or an export that does not match its supernet."""


# --- optional packages -------------------------------------------------------------------------

def require(module, package=None):
    """Import `module` or fail with one line naming the package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = package or module
        raise ExportError(f"this needs the {package} package: pip install -r {EXTRAS} (or pip install "
                          f"{package})") from None


# --- writing -----------------------------------------------------------------------------------

def input_spec(spec, resolution):
    """The InputSpec of an exported net: [N, in_channels, resolution, resolution] float32, N dynamic."""
    import paddle

    return paddle.static.InputSpec([None, spec.in_channels, resolution, resolution], "float32", INPUT_NAME)


def save_inference(static, folder, spec, resolution):
    """`static` (a StaticResNet, put in eval mode) as Paddle's inference model in `folder`:
    model.json (PIR program) and model.pdiparams. Traced with Paddle's own convolution."""
    import paddle

    from runtime import conv

    static.eval()
    with conv.plain():
        paddle.jit.save(static, os.path.join(folder, "model"), input_spec=[input_spec(spec, resolution)])
    for name in (MODEL_FILES["program"], MODEL_FILES["params"]):
        if not os.path.isfile(os.path.join(folder, name)):
            raise ExportError(f"paddle.jit.save wrote no {name} in {folder} (a Paddle without PIR programs?)")


@contextlib.contextmanager
def _stdout_to_stderr():
    """Native code's prints (paddle2onnx's progress lines) go to stderr, so stdout holds the export's own lines."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedding host): nothing to redirect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def save_onnx(folder, opset):
    """Convert the inference model in `folder` to folder/model.onnx; returns the opset in the file."""
    p2o = require("paddle2onnx")
    onnx = require("onnx")
    program, params = (os.path.join(folder, MODEL_FILES[k]) for k in ("program", "params"))
    try:  # save_file=None: the model's bytes, without paddle2onnx's optional optimisers (which pip-install tools)
        with _stdout_to_stderr():
            data = p2o.export(program, params, save_file=None, opset_version=int(opset), auto_upgrade_opset=False,
                              enable_onnx_checker=True)
    except Exception as e:  # paddle2onnx logs and swallows its own errors, then fails on what it did not set
        raise ExportError(f"paddle2onnx {p2o.__version__} could not convert {program}: {e}") from None
    if not data:
        raise ExportError(f"paddle2onnx {p2o.__version__} returned no model for {program}")
    path = os.path.join(folder, MODEL_FILES["onnx"])
    with open(path, "wb") as f:
        f.write(data)
    model = onnx.load(path)
    return max(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


# --- loading back ------------------------------------------------------------------------------

def default_threads():
    """CPU threads a predictor uses: OMP_NUM_THREADS (set by the entry point), else 1."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS") or 1))
    except ValueError:
        return 1


def gpu_id(gpu):
    """The card of `gpu`: an int as it is, True for the current device's ('gpu:1' -> 1; 'gpu' -> 0)."""
    if gpu is True:
        import paddle

        name = paddle.device.get_device()
        return int(name.split(":")[1]) if ":" in name else 0
    return int(gpu)


class PaddlePredictor:
    """An exported folder loaded through paddle.inference; call with a float32 NCHW array -> logits."""

    runtime = "paddle-inference"

    def __init__(self, folder, threads=None, gpu=False):
        """`gpu`: False for the CPU, True for the current GPU (paddle.device.get_device()), or a device id."""
        from paddle import inference

        program, params = (os.path.join(folder, MODEL_FILES[k]) for k in ("program", "params"))
        config = inference.Config(program, params)
        if gpu is not False and gpu is not None:
            config.enable_use_gpu(256, gpu_id(gpu))
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads or default_threads())
        config.disable_glog_info()
        self.predictor = inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def __call__(self, x):
        self.input.reshape(list(x.shape))
        self.input.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
        self.predictor.run()
        return self.output.copy_to_cpu()


class OnnxPredictor:
    """folder/model.onnx loaded through ONNX Runtime (CPU); call with a float32 NCHW array -> logits."""

    runtime = "onnxruntime"

    def __init__(self, folder, threads=None):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about initialisers paddle2onnx leaves unused
        self.session = ort.InferenceSession(os.path.join(folder, MODEL_FILES["onnx"]), options,
                                            providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def __call__(self, x):
        return self.session.run(None, {self.name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def load_predictor(folder, runtime, threads=None, gpu=False):
    """A predictor of an exported folder in `runtime` ('paddle-inference' | 'onnxruntime')."""
    if runtime == "paddle-inference":
        return PaddlePredictor(folder, threads=threads, gpu=gpu)
    if runtime == "onnxruntime":
        return OnnxPredictor(folder, threads=threads)
    raise ExportError(f"unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")


def compare_logits(got, want, tolerance, what):
    """{'max_abs_diff', 'relative'} of `got` against `want`; refuses a relative difference above
    `tolerance` (max |got - want| / max |want|)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ExportError(f"{what} gives logits of shape {list(got.shape)}, the supernet {list(want.shape)}")
    diff = float(np.max(np.abs(got - want)))
    scale = float(np.max(np.abs(want)))
    relative = diff / scale if scale > 0 else diff
    if not np.isfinite(diff) or relative > tolerance:
        raise ExportError(f"{what} differs from the supernet by {diff:.3g} (max |logit| {scale:.3g}, relative "
                          f"{relative:.3g} > {tolerance:g}): export refused")
    return {"max_abs_diff": diff, "relative": relative}


# --- settings ----------------------------------------------------------------------------------

def preprocessing(dataset):
    """What a caller does to an image before the exported net sees it: the evaluation transform of the
    config's data section (and its Normalize), as data."""
    from imagedata.transforms import ImageEval, SmallImage

    t, norm = dataset.transform, dataset.normalize
    steps = {"input_layout": "NCHW", "dtype": "float32"}
    if isinstance(t, ImageEval):
        mode = getattr(dataset, "mode", "RGB")
        steps.update(decode=f"8-bit {mode}, channels in {mode} order", resize_shorter_side=t.resize,
                     interpolation="bilinear", center_crop=t.resolution)
    elif isinstance(t, SmallImage):
        steps.update(decode="8-bit grayscale, one channel", resize=[t.resolution, t.resolution],
                     interpolation="bilinear (only when the image is not already this size)")
    else:
        steps.update(transform=repr(t))
    if norm is not None:
        steps.update(scale="x / 255", mean=list(norm.mean), std=list(norm.std),
                     formula="(x / 255 - mean[c]) / std[c] per channel c")
    return steps


def _positive_int(cfg, key):
    value = C.get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExportError(f"{key} must be a positive integer, got {value!r}")
    return value


def entries_of(cfg):
    """[(folder name or None, code)]: export.arch (one export in DIR) or export.archs (DIR/<id>/ each)."""
    arch, archs = C.get(cfg, "export.arch", None), C.get(cfg, "export.archs", None)
    if bool(arch) == bool(archs):
        raise ExportError("give exactly one of --arch CODE and --archs LIST.json")
    pairs = [(None, arch)] if arch else [(e.id, e.code) for e in read_arch_list(archs)]
    if not pairs:
        raise ExportError(f"{archs}: the architecture list is empty")
    out, seen = [], set()
    for i, (name, code) in enumerate(pairs):
        try:
            code = DOCUMENTED.validate(str(code).strip()).code()
        except CodeError as e:
            raise ExportError(f"{'--arch' if name is None else f'entry {name!r}'}: {e}") from None
        if name is not None:
            name = name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) else f"arch{i + 1}"
            if name in seen:
                raise ExportError(f"{archs}: id {name!r} repeats")
            seen.add(name)
        out.append((name, code))
    return out


# --- the target folder -------------------------------------------------------------------------

def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead_temporaries(out):
    """Remove the temporary folders of exports to `out` whose process is gone (killed mid-export)."""
    parent, base = os.path.dirname(os.path.abspath(out)), os.path.basename(os.path.abspath(out))
    pattern = re.compile(re.escape(TMP_PREFIX) + r"(\d+)-[^-]+-" + re.escape(base) + r"$")
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    removed = []
    for name in names:
        m = pattern.match(name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed.append(name)
    return removed


def check_target(out, force):
    """Refuse an existing file, or a non-empty folder without --force, before any work."""
    if os.path.isdir(out):
        if os.listdir(out) and not force:
            raise ExportError(f"{out} exists and is not empty: give --force to replace it, or another --out")
    elif os.path.lexists(out):
        raise ExportError(f"{out} exists and is not a folder")


def make_temporary(out):
    """A new temporary folder beside `out` (so the final rename stays on one file system)."""
    from infra.errors import failing_to

    parent = os.path.dirname(os.path.abspath(out))
    with failing_to("write to", parent):
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-",
                               suffix="-" + os.path.basename(os.path.abspath(out)), dir=parent)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp's folders are 0700; the export should be as readable as mkdir's
    return tmp


def publish(tmp, out, force):
    """Rename the finished `tmp` to `out` (an empty `out` is replaced; a non-empty one with `force`)."""
    old = None
    if os.path.isdir(out):
        if os.listdir(out):
            if not force:
                raise ExportError(f"{out} exists and is not empty: give --force to replace it, or another --out")
            old = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-old", suffix="-" + os.path.basename(out),
                                   dir=os.path.dirname(os.path.abspath(out)))
            os.rename(out, os.path.join(old, "previous"))
        else:
            os.rmdir(out)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- exporting ---------------------------------------------------------------------------------

class Exporter:
    """Exports codes from one weights source under one config (protocol, data, model)."""

    def __init__(self, cfg, device=None):
        import paddle

        from .calibration import Calibration, apply_protocol

        self.cfg = apply_protocol(copy.deepcopy(cfg))
        self.spec = net_spec(self.cfg)
        self.source = WeightsSource.from_config(self.cfg)
        self.calibration = Calibration.from_config(self.cfg)
        self.resolution = _positive_int(self.cfg, "data.resolution")  # every default: configs/imagenet.yaml
        self.onnx = bool(C.get(self.cfg, "export.onnx"))
        self.opset = _positive_int(self.cfg, "export.opset")
        self.check_images = _positive_int(self.cfg, "export.check_images")
        self.tolerance = float(C.get(self.cfg, "export.tolerance"))
        if self.onnx:  # before any work: a missing package is one line, not a late failure
            require("paddle2onnx")
            require("onnxruntime")
        self.device = device or paddle.device.get_device()
        self._models = {}
        self._calib = None
        self._check = None

    # inputs shared by every code
    def calibration_batches(self):
        from .calibration import calibration_batches

        if self._calib is None:
            self._calib = calibration_batches(self.cfg, self.calibration,
                                              num_workers=worker_count(C.get(self.cfg, "data.num_workers")))
        return self._calib

    def check_batch(self):
        """(float32 array, dataset indices, preprocessing) of the first `check_images` validation images."""
        if self._check is None:
            from imagedata import DataSettings, build_dataset
            from imagedata.loaders import gather

            dataset = build_dataset(DataSettings.from_config(self.cfg), split="val", augment=False)
            idx = np.arange(min(self.check_images, len(dataset)))
            images, _ = gather(dataset, idx, num_workers=0)
            x = dataset.normalize(images) if images.dtype == np.uint8 else images
            x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
            self._check = (np.ascontiguousarray(x, dtype=np.float32), idx.tolist(), preprocessing(dataset))
        return self._check

    def supernet(self, code):
        group = self.source.group_of(code)
        if group not in self._models:
            self._models[group] = self.source.load(self.spec, group=group)
        return self._models[group], group

    def statistics_and_reference(self, code):
        """The static subnet of `code` holding the protocol's BN statistics, and the supernet's logits on the
        check batch under those statistics. The shared supernet is left as it was."""
        import paddle

        from .calibration import BNSnapshot, recalibrate

        model, group = self.supernet(code)
        model.eval()
        model.set_active(code)
        layers = model.dynamic_bn_layers(active_only=True)
        snapshot = BNSnapshot(layers) if self.calibration.mode == "recalibrate" else None
        x, _, _ = self.check_batch()
        try:
            if snapshot is not None:
                recalibrate(model, self.calibration_batches(), layers)
            with paddle.no_grad():
                reference = model(paddle.to_tensor(x)).numpy()
            static = model.export(code)
        finally:
            if snapshot is not None:
                snapshot.restore()
        static.eval()
        return static, reference, group

    def export_one(self, code, folder):
        """Write and check one export of `code` in `folder` (which exists); returns its manifest."""
        import paddle

        t0 = time.perf_counter()
        static, reference, group = self.statistics_and_reference(code)
        t1 = time.perf_counter()
        save_inference(static, folder, self.spec, self.resolution)
        t2 = time.perf_counter()
        x, indices, steps = self.check_batch()
        gpu = str(self.device).startswith("gpu")
        checks = {"paddle-inference": compare_logits(PaddlePredictor(folder, gpu=gpu)(x), reference,
                                                     self.tolerance, f"{code}: the paddle.inference model")}
        files = {k: MODEL_FILES[k] for k in ("program", "params")}
        opset = None
        t3 = time.perf_counter()
        if self.onnx:
            opset = save_onnx(folder, self.opset)
            checks["onnxruntime"] = compare_logits(OnnxPredictor(folder)(x), reference, self.tolerance,
                                                   f"{code}: the ONNX model")
            files["onnx"] = MODEL_FILES["onnx"]
        t4 = time.perf_counter()
        manifest = {
            "kind": "nas-subnet-export",
            "format": 1,
            "code": code,
            "model": self.spec.to_dict(),
            "weights": {"kind": self.source.kind, "path": os.fspath(self.source.path),
                        "sha256": "+".join(file_digest(p) for p in self.source.files()),
                        **({"reorder": self.source.reorder} if self.source.kind == "official" else {}),
                        **({"group": group} if group else {})},
            "protocol": {"name": C.get(self.cfg, "evaluate.protocol", None),
                         "bn_statistics": ("recalibrated" if self.calibration.mode == "recalibrate" else "stored"),
                         "calibration": self.calibration.pinned(C.get(self.cfg, "data", None)),
                         "precision": "float32"},
            "files": files,
            "input": {"name": INPUT_NAME, "shape": [None, self.spec.in_channels, self.resolution, self.resolution],
                      "dtype": "float32"},
            "output": {"shape": [None, self.spec.num_classes], "meaning": "logits (no softmax)"},
            "preprocessing": steps,
            "versions": {"paddle": paddle.__version__, **self._versions()},
            "onnx_opset": opset,
            "check": {"images": len(indices), "split": "val", "indices": f"0..{len(indices) - 1}",
                      "tolerance_relative": self.tolerance, **checks},
            "seconds": {"statistics": round(t1 - t0, 3), "paddle_inference": round(t2 - t1, 3),
                        "check": round(t3 - t2, 3), "onnx": round(t4 - t3, 3), "total": round(t4 - t0, 3)},
        }
        atomic_write_json(os.path.join(folder, "manifest.json"), manifest, indent=1)
        return manifest

    def _versions(self):
        out = {}
        if self.onnx:
            import onnxruntime
            import paddle2onnx

            out = {"paddle2onnx": paddle2onnx.__version__, "onnxruntime": onnxruntime.__version__}
        return out


def export(cfg, progress=None, echo=print):
    """Export the config's `export:` codes to export.out whole or not at all; returns the manifests."""
    from tqdm import tqdm

    out = C.get(cfg, "export.out", None)
    if not out:
        raise ExportError("give --out DIR (export.out): where the export is written")
    out = os.fspath(out)
    force = bool(C.get(cfg, "export.force"))
    entries = entries_of(cfg)
    check_target(out, force)
    exporter = Exporter(cfg)
    sweep_dead_temporaries(out)
    tmp = make_temporary(out)
    manifests = []
    try:
        for name, code in tqdm(entries, desc="export", unit="subnet", file=sys.stderr,
                               disable=(len(entries) < 2) if progress is None else not progress):
            folder = tmp if name is None else os.path.join(tmp, name)
            os.makedirs(folder, exist_ok=True)
            manifest = exporter.export_one(code, folder)
            manifests.append(manifest)
            diffs = ", ".join(f"{k} max abs diff {v['max_abs_diff']:.2e}" for k, v in manifest["check"].items()
                              if isinstance(v, dict))
            where = out if name is None else os.path.join(out, name)
            echo(f"{code} -> {where} in {manifest['seconds']['total']:.1f} s ({diffs} over "
                 f"{manifest['check']['images']} val images)")
        if entries[0][0] is not None:
            atomic_write_json(os.path.join(tmp, "index.json"),
                              [{"id": n, "code": c, "path": n} for n, c in entries], indent=1)
        publish(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifests


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m supernet.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=C.default_config("demo"), help="YAML config (default: demo)")
    C.add_flags(parser, FLAGS)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    return parser


def run_command(args):
    cfg = C.resolve(args.config, args, FLAGS, args.overrides)
    from runtime.device import select_device

    select_device(C.get(cfg, "device", "auto"))
    manifests = export(cfg)
    print(f"exported {len(manifests)} subnet{'s' if len(manifests) != 1 else ''} to {C.get(cfg, 'export.out')}")
    return 0


def main(argv=None):
    from runtime import cpu_speed

    cpu_speed.default_threads()
    return run_reporting_errors(run_command, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
