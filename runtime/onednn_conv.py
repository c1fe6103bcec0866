"""Convolutions on the CPU through the oneDNN library that ships inside the Paddle wheel.

Paddle's dygraph CPU conv kernel loops over the batch doing im2col + a small GEMM per image
and never reaches oneDNN (FLAGS_use_mkldnn only acts in static graphs, where training
crashes in Paddle 3.3). For the kit's narrow CPU nets that loop is 3-4x slower than oneDNN's
batched kernels, and convolutions are ~90% of a training step (bench/cpu_throughput.py).
This module calls oneDNN's C API with ctypes on Paddle's own buffers: forward, backward-data
and backward-weights primitives per shape, wrapped in a PyLayer so autograd is unchanged.

Only float32 NCHW, groups 1, dilation 1, symmetric zero padding, on the CPU; anything else,
and every call under backend 'paddle', goes to `paddle.nn.functional.conv2d`. Not
thread-safe (primitives and their memory objects are cached per shape and rebound per call).
"""

import collections
import ctypes
import os
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer

from infra.errors import KitError

from . import conv
from .conv import BACKENDS

MAX_PLANS = 512  # shapes kept (a supernet meets a few hundred); least recently used go first


class OneDNNError(KitError):
    """The oneDNN convolution path was asked for but cannot run here."""


# --- the C API (oneDNN 3.x ABI) ------------------------------------------------------------
_F32 = 3                       # dnnl_f32
_TAG_ANY, _TAG_ABCD = 1, 5     # dnnl_format_tag_any, dnnl_abcd (plain NCHW / OIHW)
_FORWARD_TRAINING = 64  # also for no_grad calls: oneDNN 3.6's forward_inference kernels (brgconv)
                        # are 10-15% slower than the training ones on these shapes
_CONV_DIRECT = 1
_Q_SRC, _Q_DIFF_SRC, _Q_WEIGHTS, _Q_DIFF_WEIGHTS, _Q_DST, _Q_DIFF_DST = 129, 130, 131, 132, 133, 134
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS = 1, 17, 33
_ARG_DIFF_SRC, _ARG_DIFF_DST, _ARG_DIFF_WEIGHTS = 129, 145, 161

_vp = ctypes.c_void_p
_Dims = ctypes.c_int64 * 12


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", _vp)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]


def library_path():
    return os.path.join(os.path.dirname(paddle.__file__), "libs", "libdnnl.so.3")


class _Lib:
    """The loaded library with typed entry points, one engine and one stream."""

    def __init__(self):
        path = library_path()
        if not os.path.isfile(path):
            raise OneDNNError(f"this Paddle wheel has no oneDNN library (looked for {path})")
        lib = ctypes.CDLL(path)
        P = ctypes.POINTER
        sig = {
            "dnnl_engine_create": [P(_vp), ctypes.c_int, ctypes.c_size_t],
            "dnnl_stream_create": [P(_vp), _vp, ctypes.c_uint],
            "dnnl_memory_desc_create_with_tag": [P(_vp), ctypes.c_int, _Dims, ctypes.c_int, ctypes.c_int],
            "dnnl_convolution_forward_primitive_desc_create":
                [P(_vp), _vp, ctypes.c_int, ctypes.c_int, _vp, _vp, _vp, _vp, _Dims, _Dims, _Dims, _Dims, _vp],
            "dnnl_convolution_backward_data_primitive_desc_create":
                [P(_vp), _vp, ctypes.c_int, _vp, _vp, _vp, _Dims, _Dims, _Dims, _Dims, _vp, _vp],
            "dnnl_convolution_backward_weights_primitive_desc_create":
                [P(_vp), _vp, ctypes.c_int, _vp, _vp, _vp, _vp, _Dims, _Dims, _Dims, _Dims, _vp, _vp],
            "dnnl_reorder_primitive_desc_create": [P(_vp), _vp, _vp, _vp, _vp, _vp],
            "dnnl_primitive_create": [P(_vp), _vp],
            "dnnl_memory_create": [P(_vp), _vp, _vp, _vp],
            "dnnl_memory_set_data_handle": [_vp, _vp],
            "dnnl_primitive_execute": [_vp, _vp, ctypes.c_int, P(_ExecArg)],
        }
        for name, argtypes in sig.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
        lib.dnnl_primitive_desc_query_md.argtypes = [_vp, ctypes.c_int, ctypes.c_int]
        lib.dnnl_primitive_desc_query_md.restype = _vp
        lib.dnnl_memory_desc_get_size.argtypes = [_vp]
        lib.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        lib.dnnl_memory_desc_equal.argtypes = [_vp, _vp]
        lib.dnnl_memory_desc_equal.restype = ctypes.c_int
        for name in ("dnnl_primitive_destroy", "dnnl_memory_destroy", "dnnl_memory_desc_destroy",
                     "dnnl_primitive_desc_destroy"):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = [_vp], ctypes.c_int
        lib.dnnl_version.argtypes = []
        lib.dnnl_version.restype = P(_Version)
        version = lib.dnnl_version().contents
        self.version = (version.major, version.minor, version.patch)
        if version.major != 3:
            raise OneDNNError(f"oneDNN {'.'.join(map(str, self.version))} in the Paddle wheel; this module "
                              f"speaks the 3.x C API")
        self.lib = lib
        self.engine = _vp()
        self.check(lib.dnnl_engine_create(ctypes.byref(self.engine), 1, 0), "engine")  # 1 = dnnl_cpu
        self.stream = _vp()
        self.check(lib.dnnl_stream_create(ctypes.byref(self.stream), self.engine, 1), "stream")  # in order

    @staticmethod
    def check(status, what):
        if status != 0:
            raise OneDNNError(f"oneDNN {what} failed (dnnl_status_t {status})")

    def desc(self, dims, tag, owned):
        md = _vp()
        self.check(self.lib.dnnl_memory_desc_create_with_tag(ctypes.byref(md), len(dims), _Dims(*dims), _F32, tag),
                   "memory descriptor")
        owned.append((self.lib.dnnl_memory_desc_destroy, md))
        return md

    def memory(self, md, owned):
        mem = _vp()
        self.check(self.lib.dnnl_memory_create(ctypes.byref(mem), md, self.engine, None), "memory")
        owned.append((self.lib.dnnl_memory_destroy, mem))
        return mem

    def primitive(self, pd, owned):
        prim = _vp()
        self.check(self.lib.dnnl_primitive_create(ctypes.byref(prim), pd), "primitive")
        owned.append((self.lib.dnnl_primitive_destroy, prim))
        return prim

    def reorder(self, src_md, dst_md, owned, temporary):
        pd = _vp()
        self.check(self.lib.dnnl_reorder_primitive_desc_create(ctypes.byref(pd), src_md, self.engine, dst_md,
                                                               self.engine, None), "reorder")
        temporary.append((self.lib.dnnl_primitive_desc_destroy, pd))
        return self.primitive(pd, owned)

    def execute(self, prim, args):
        arr = (_ExecArg * len(args))(*[_ExecArg(a, m) for a, m in args])
        self.check(self.lib.dnnl_primitive_execute(prim, self.stream, len(args), arr), "execute")

    def bind(self, mem, tensor):
        self.lib.dnnl_memory_set_data_handle(mem, tensor.data_ptr())


class _Operand:
    """A plain NCHW/OIHW Paddle buffer as seen by one primitive, reordered when it wants another layout."""

    def __init__(self, lib, plain_md, wanted_md, owned, temporary, output=False):
        self.lib = lib
        self.user = lib.memory(plain_md, owned)
        self.plain = bool(lib.lib.dnnl_memory_desc_equal(plain_md, wanted_md))
        if not self.plain:
            self.numel = (lib.lib.dnnl_memory_desc_get_size(wanted_md) + 3) // 4
            self.inner = lib.memory(wanted_md, owned)
            src, dst = (wanted_md, plain_md) if output else (plain_md, wanted_md)
            self.convert = lib.reorder(src, dst, owned, temporary)

    def source(self, tensor):
        """Memory holding `tensor` in the wanted layout, and the scratch buffer to keep alive meanwhile."""
        self.lib.bind(self.user, tensor)
        if self.plain:
            return self.user, None
        scratch = paddle.empty([self.numel], dtype="float32")
        self.lib.bind(self.inner, scratch)
        self.lib.execute(self.convert, [(_ARG_SRC, self.user), (_ARG_DST, self.inner)])
        return self.inner, scratch

    def target(self, tensor):
        self.lib.bind(self.user, tensor)
        if self.plain:
            return self.user, None
        scratch = paddle.empty([self.numel], dtype="float32")
        self.lib.bind(self.inner, scratch)
        return self.inner, scratch

    def finish(self):
        if not self.plain:
            self.lib.execute(self.convert, [(_ARG_SRC, self.inner), (_ARG_DST, self.user)])


class _Plan:
    """The primitives of one convolution shape; oneDNN picks its own layouts ('any')."""

    def __init__(self, lib, x_shape, w_shape, stride, padding, training):
        self.lib = lib
        self.owned = []  # primitives and memory objects, destroyed with the plan
        temporary = []   # descriptors, destroyed once the primitives exist
        try:
            self._build(x_shape, w_shape, stride, padding, training, temporary)
        except BaseException:
            self.__del__()
            raise
        finally:
            for destroy, handle in reversed(temporary):
                destroy(handle)

    def __del__(self):
        owned, self.owned = getattr(self, "owned", []), []
        if sys.is_finalizing():  # the process is going away with the library; nothing to give back
            return
        for destroy, handle in reversed(owned):
            destroy(handle)

    def _build(self, x_shape, w_shape, stride, padding, training, temporary):
        lib, owned = self.lib, self.owned
        n, _, h, w = x_shape
        o, _, kh, kw = w_shape
        self.y_shape = [n, o, (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1]
        self.w_shape = list(w_shape)
        st, dil, pad = _Dims(*stride), _Dims(0, 0), _Dims(*padding)
        x_md, w_md, y_md = (lib.desc(s, _TAG_ABCD, temporary) for s in (x_shape, w_shape, self.y_shape))
        x_any, w_any, y_any = (lib.desc(s, _TAG_ANY, temporary) for s in (x_shape, w_shape, self.y_shape))
        q = lib.lib.dnnl_primitive_desc_query_md

        def made(pd):
            temporary.append((lib.lib.dnnl_primitive_desc_destroy, pd))
            return pd

        fwd = _vp()
        lib.check(lib.lib.dnnl_convolution_forward_primitive_desc_create(
            ctypes.byref(fwd), lib.engine, _FORWARD_TRAINING, _CONV_DIRECT,
            x_any, w_any, None, y_any, st, dil, pad, pad, None), "convolution forward")
        made(fwd)
        self.fwd = lib.primitive(fwd, owned)
        self.fwd_x = _Operand(lib, x_md, q(fwd, _Q_SRC, 0), owned, temporary)
        self.fwd_w = _Operand(lib, w_md, q(fwd, _Q_WEIGHTS, 0), owned, temporary)
        self.fwd_y = _Operand(lib, y_md, q(fwd, _Q_DST, 0), owned, temporary, output=True)
        if not training:
            return
        bwd_data, bwd_weights = _vp(), _vp()
        lib.check(lib.lib.dnnl_convolution_backward_data_primitive_desc_create(
            ctypes.byref(bwd_data), lib.engine, _CONV_DIRECT, x_any, w_any, y_any, st, dil, pad, pad, fwd, None),
            "convolution backward data")
        made(bwd_data)
        lib.check(lib.lib.dnnl_convolution_backward_weights_primitive_desc_create(
            ctypes.byref(bwd_weights), lib.engine, _CONV_DIRECT, x_any, w_any, None, y_any, st, dil, pad, pad, fwd,
            None), "convolution backward weights")
        made(bwd_weights)
        self.bwd_data, self.bwd_weights = lib.primitive(bwd_data, owned), lib.primitive(bwd_weights, owned)
        self.bd_dy = _Operand(lib, y_md, q(bwd_data, _Q_DIFF_DST, 0), owned, temporary)
        self.bd_w = _Operand(lib, w_md, q(bwd_data, _Q_WEIGHTS, 0), owned, temporary)
        self.bd_dx = _Operand(lib, x_md, q(bwd_data, _Q_DIFF_SRC, 0), owned, temporary, output=True)
        self.bw_x = _Operand(lib, x_md, q(bwd_weights, _Q_SRC, 0), owned, temporary)
        self.bw_dy = _Operand(lib, y_md, q(bwd_weights, _Q_DIFF_DST, 0), owned, temporary)
        self.bw_dw = _Operand(lib, w_md, q(bwd_weights, _Q_DIFF_WEIGHTS, 0), owned, temporary, output=True)

    def _execute(self, primitive, out_shape, inputs, out_arg, out_operand):
        """Run `primitive` on (arg, operand, tensor) inputs into a new float32 tensor; the
        operands' keep-alive handles live until the primitive and the copy-back are done."""
        out = paddle.empty(list(out_shape), dtype="float32")
        args, keep = [], []
        for arg, operand, tensor in inputs:
            memory, handle = operand.source(tensor)
            args.append((arg, memory))
            keep.append(handle)
        memory, handle = out_operand.target(out)
        args.append((out_arg, memory))
        keep.append(handle)
        self.lib.execute(primitive, args)
        out_operand.finish()
        del keep
        return out

    def forward(self, x, w):
        return self._execute(self.fwd, self.y_shape, [(_ARG_SRC, self.fwd_x, x), (_ARG_WEIGHTS, self.fwd_w, w)],
                             _ARG_DST, self.fwd_y)

    def backward_weights(self, x, dy):
        return self._execute(self.bwd_weights, self.w_shape,
                             [(_ARG_SRC, self.bw_x, x), (_ARG_DIFF_DST, self.bw_dy, dy)],
                             _ARG_DIFF_WEIGHTS, self.bw_dw)

    def backward_data(self, x_shape, w, dy):
        return self._execute(self.bwd_data, x_shape,
                             [(_ARG_DIFF_DST, self.bd_dy, dy), (_ARG_WEIGHTS, self.bd_w, w)],
                             _ARG_DIFF_SRC, self.bd_dx)


# --- state --------------------------------------------------------------------------------
_state = {"backend": "paddle", "lib": None, "error": None, "checked": False}
_plans = collections.OrderedDict()


def _load():
    if _state["lib"] is None and _state["error"] is None:
        try:
            _state["lib"] = _Lib()
        except (OSError, AttributeError, OneDNNError) as exc:
            _state["error"] = str(exc)
    return _state["lib"]


def _plan(x_shape, w_shape, stride, padding, training):
    key = (tuple(x_shape), tuple(w_shape), stride, padding, training)
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = _Plan(_state["lib"], key[0], key[1], stride, padding, training)
        if len(_plans) > MAX_PLANS:
            _plans.popitem(last=False)
    else:
        _plans.move_to_end(key)
    return plan


def _self_check():
    """One small conv both ways (values and both gradients) before trusting the hard-coded ABI constants."""
    rng = np.random.RandomState(1234)
    x, w, g = (rng.standard_normal(shape).astype("float32") for shape in ([2, 3, 7, 6], [5, 3, 3, 3], [2, 5, 4, 3]))
    outs = []
    for fn in (F.conv2d, _onednn_conv2d):
        xi, wi = paddle.to_tensor(x, stop_gradient=False), paddle.to_tensor(w, stop_gradient=False)
        y = fn(xi, wi, stride=2, padding=1)
        (y * paddle.to_tensor(g)).sum().backward()
        outs.append([y.numpy(), xi.grad.numpy(), wi.grad.numpy()])
    for name, ref, got in zip(("output", "input gradient", "weight gradient"), *outs, strict=True):
        err = float(np.abs(ref - got).max() / (np.abs(ref).max() + 1e-12))
        if not err < 1e-4:
            raise OneDNNError(f"oneDNN convolution self-check failed: {name} differs from Paddle's by {err:.2e} "
                              f"(relative); the library's ABI is not the one this module was written for")


def available():
    """(True, version string) when the oneDNN path can run here, else (False, why not)."""
    lib = _load()
    if lib is None:
        return False, _state["error"]
    if not _state["checked"]:
        device = paddle.get_device()
        try:
            paddle.set_device("cpu")  # the check's tensors and scratch buffers must be host memory
            _self_check()
        except OneDNNError as exc:
            _state["error"] = str(exc)
            _state["lib"] = None
            return False, _state["error"]
        finally:
            paddle.set_device(device)
            clear_cache()
        _state["checked"] = True
    return True, "oneDNN " + ".".join(map(str, lib.version))


def set_backend(name="auto"):
    """Choose the CPU convolution: 'onednn', 'paddle', or 'auto' (oneDNN when it loads and checks out).

    Returns the backend in force, installed as `runtime.conv.conv2d` (what the models' layers call).
    Has no effect on GPU tensors, which always use Paddle's kernels.
    """
    name = "auto" if name is None else str(name).strip().lower()
    if name not in BACKENDS:
        raise OneDNNError(f"unknown CPU convolution backend {name!r}: expected one of {', '.join(BACKENDS)}")
    _state["backend"] = "paddle"  # while self-checking, conv2d must mean Paddle's kernel
    conv.install(None, "paddle")
    if name == "paddle":
        return "paddle"
    ok, why = available()
    if not ok and name == "onednn":
        raise OneDNNError(f"CPU convolution backend 'onednn' is not available: {why}")
    if ok:
        _state["backend"] = "onednn"
        conv.install(conv2d, "onednn")
    return _state["backend"]


def backend():
    return _state["backend"]


def clear_cache():
    _plans.clear()


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(i) for i in v)


class _ConvFunction(PyLayer):
    @staticmethod
    def forward(ctx, x, w, stride, padding):
        x, w = x.contiguous(), w.contiguous()
        plan = _plan(x.shape, w.shape, stride, padding, True)
        ctx.plan, ctx.x_shape = plan, list(x.shape)
        ctx.need_dx, ctx.need_dw = not x.stop_gradient, not w.stop_gradient
        ctx.save_for_backward(x, w)
        return plan.forward(x, w)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensor()
        dy = dy.contiguous()
        dx = ctx.plan.backward_data(ctx.x_shape, w, dy) if ctx.need_dx else None
        dw = ctx.plan.backward_weights(x, dy) if ctx.need_dw else None
        return dx, dw


def _onednn_conv2d(x, weight, stride=1, padding=0):
    stride, padding = _pair(stride), _pair(padding)
    if paddle.is_grad_enabled() and not (x.stop_gradient and weight.stop_gradient):
        return _ConvFunction.apply(x, weight, stride, padding)
    x, weight = x.contiguous(), weight.contiguous()
    return _plan(x.shape, weight.shape, stride, padding, False).forward(x, weight)


def _supported(x, weight, stride, padding):
    if x.dtype != paddle.float32 or weight.dtype != paddle.float32 or len(x.shape) != 4 or len(weight.shape) != 4:
        return False
    if x.shape[1] != weight.shape[1] or not x.place.is_cpu_place() or not weight.place.is_cpu_place():
        return False
    if paddle.get_device() != "cpu":  # scratch buffers are made on the default device
        return False
    try:
        return len(_pair(stride)) == 2 and len(_pair(padding)) == 2
    except (TypeError, ValueError):
        return False


def conv2d(x, weight, stride=1, padding=0):
    """`paddle.nn.functional.conv2d(x, weight, stride=, padding=)` without bias, groups or dilation;
    through oneDNN when that backend is on and the call is a float32 NCHW CPU one."""
    if _state["backend"] == "onednn" and _supported(x, weight, stride, padding):
        return _onednn_conv2d(x, weight, stride, padding)
    return F.conv2d(x, weight, stride=stride, padding=padding)
