"""Fused CPU kernel of the edge tensor product, compiled on first use.

:class:`~anisoscreen.model.nn.layers.EdgeTensorProduct` on CPU spends most of its time writing
and re-reading a per-edge ``(edges, columns, channels)`` tensor: the product of the gathered
source features with the Clebsch-Gordan-contracted spherical harmonics, then its weighting by
the radial weights, then its sum over edges. ``kernels/edge_tp.cpp`` does the gather, the
product, the weighting and the sum in registers, one destination node and eight channels at a
time, and has its own backward pass (gradients with respect to features, weights and
couplings), so it serves training as well as inference.

The source is compiled once per machine with the system C++ compiler (``$CXX``, else ``c++``,
``g++`` or ``clang++``; about ten seconds) into the user cache folder, keyed by a hash of
the source, the compiler and the instruction set, so a home folder shared by different
cluster nodes never loads a library built for another CPU. Where no compiler is available, or
``ANISOSCREEN_FUSED_KERNEL=0`` is set, the layer keeps its pure-PyTorch path, which computes
the same values (and is the path on GPUs).

The cache folder (``$ANISOSCREEN_KERNEL_CACHE``, else the user cache, else
``$TMPDIR/anisoscreen-kernels-<uid>``) is created 0700 and refused when it is a link, is not
owned by the current user, or is writable by group or others. Each library is loaded only
when it is owned by the current user, not writable by others, and its SHA-256 matches the one
recorded when this package built it; anything else in its place is rebuilt, never loaded.

The op is registered with ``torch.library.custom_op`` (``anisoscreen::edge_tp_fused``, with a
fake kernel and autograd through ``anisoscreen::edge_tp_fused_backward``), so
``torch.compile`` and ``torch.export`` trace through it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import platformdirs
import torch

__all__ = [
    "CACHE_ENV",
    "FusedPlan",
    "UnsafeKernelCacheError",
    "cache_dir",
    "describe",
    "edge_tensor_product",
    "fused_edge_tensor_product",
    "kernel_available",
    "library_path",
    "load_kernel",
]

SOURCE = Path(__file__).with_name("kernels") / "edge_tp.cpp"
DISABLE_ENV = "ANISOSCREEN_FUSED_KERNEL"
CACHE_ENV = "ANISOSCREEN_KERNEL_CACHE"
"""Environment variable naming the kernel cache folder (tests use a temporary one)."""
_ABI_VERSION = 2
MAX_L = 7
"""Highest input rotational order the kernel handles (``kMaxOrder = 2 * 7 + 1``)."""
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

_p = ctypes.c_void_p
_i64 = ctypes.c_int64
_FORWARD_ARGS = [ctypes.c_int, _p, _p, _p, _p, _p, _p, _p, _p, _i64, _p, _p, _i64, _i64, _i64,
                 _p, ctypes.c_int]  # fmt: skip
_BACKWARD_ARGS = [ctypes.c_int, _p, _p, _p, _p, _p, _p, _p, _p, _i64, _p, _p, _i64, _i64, _p,
                  _p, _p, _p, ctypes.c_int]  # fmt: skip


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _flags(openmp: bool = True) -> list[str]:
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-Wno-psabi"]
    if openmp:
        flags.append("-fopenmp")
    if platform.machine() in ("x86_64", "AMD64") and torch.backends.cpu.get_cpu_capability() in (
        "AVX2",
        "AVX512",
    ):
        flags += ["-mavx2", "-mfma"]
    return flags


class UnsafeKernelCacheError(OSError):
    """The kernel cache folder or a library in it could have been written by someone else."""


def _check_private(path: Path, directory: bool) -> None:
    """Refuse ``path`` unless it is ours alone: no link, our owner, no group/other write bit."""
    info = os.lstat(path)
    kind = "folder" if directory else "file"
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeKernelCacheError(f"kernel cache {kind} {path} is a symbolic link")
    if directory != stat.S_ISDIR(info.st_mode):
        raise UnsafeKernelCacheError(f"kernel cache {path} is not a {kind}")
    if info.st_uid != os.getuid():
        raise UnsafeKernelCacheError(
            f"kernel cache {kind} {path} is owned by uid {info.st_uid}, not by this user "
            f"(uid {os.getuid()})"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeKernelCacheError(
            f"kernel cache {kind} {path} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o})"
        )


def _private_dir(folder: Path) -> Path:
    """``folder``, created 0700 if missing, checked as :func:`_check_private` and writable."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    _check_private(folder, directory=True)
    with tempfile.NamedTemporaryFile(dir=folder):  # writable?
        pass
    return folder


def cache_dir() -> Path:
    """The private folder compiled kernels live in (see the module docstring).

    Raises
    ------
    UnsafeKernelCacheError
        When no candidate folder is private to this user.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        candidates = [Path(override).expanduser()]
    else:
        candidates = [
            Path(platformdirs.user_cache_dir("anisoscreen")) / "kernels",
            Path(tempfile.gettempdir()) / f"anisoscreen-kernels-{os.getuid()}",
        ]
    problems = []
    for folder in candidates:
        try:
            return _private_dir(folder)
        except OSError as error:
            problems.append(str(error))
    raise UnsafeKernelCacheError("no private kernel cache folder: " + "; ".join(problems))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(library: Path) -> Path:
    """The file holding the SHA-256 this package recorded when it built ``library``."""
    return library.with_name(library.name + ".sha256")


def _verified(library: Path) -> bool:
    """Whether ``library`` is ours, private and unchanged since this package built it."""
    try:
        _check_private(library, directory=False)
        _check_private(_record(library), directory=False)
        return _record(library).read_text().strip() == _sha256(library)
    except OSError:
        return False


def library_path(compiler: str, flags: list[str]) -> Path:
    """Where the library for this source, compiler and instruction set lives in the cache."""
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(" ".join([compiler, *flags, platform.machine()]).encode())
    return cache_dir() / f"edge_tp-{key.hexdigest()[:16]}.so"


def _build(compiler: str, flags: list[str]) -> Path:
    """Compile the kernel (once per source, compiler and instruction set) and return its path.

    A library found in the cache is reused only when :func:`_verified`; anything else under
    its name is replaced by a fresh build.
    """
    target = library_path(compiler, flags)
    if _verified(target):
        return target
    # compile next to the target and rename: concurrent processes never load a partial file
    handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".so.partial")
    os.close(handle)
    try:
        subprocess.run(
            [compiler, *flags, str(SOURCE), "-o", partial],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        os.chmod(partial, 0o700)
        digest = _sha256(Path(partial))
        handle, record = tempfile.mkstemp(dir=target.parent, suffix=".sha256.partial")
        with os.fdopen(handle, "w") as stream:
            stream.write(digest + "\n")
        os.replace(record, _record(target))
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


@lru_cache(maxsize=1)
def load_kernel() -> ctypes.CDLL | None:
    """The compiled kernel library, or ``None`` (with one warning) where it cannot be built."""
    if _disabled():
        return None
    compiler = _compiler()
    if compiler is None:
        warnings.warn(
            "no C++ compiler found: the edge tensor product uses its slower PyTorch path",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    try:
        try:
            path = _build(compiler, _flags())
        except subprocess.CalledProcessError:  # e.g. Apple clang: no OpenMP, use std::thread
            path = _build(compiler, _flags(openmp=False))
        if not _verified(path):  # checked again right before it is loaded
            raise UnsafeKernelCacheError(f"{path} does not match the hash recorded when built")
        library = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        warnings.warn(
            f"the fused edge tensor product could not be built ({detail.strip()[:500]}): "
            "using the slower PyTorch path",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    if library.edge_tp_abi_version() != _ABI_VERSION:
        return None
    for suffix in _SUFFIX.values():
        forward = getattr(library, f"edge_tp_forward_{suffix}")
        forward.argtypes, forward.restype = _FORWARD_ARGS, ctypes.c_int
        backward = getattr(library, f"edge_tp_backward_{suffix}")
        backward.argtypes, backward.restype = _BACKWARD_ARGS, ctypes.c_int
    return library


def describe() -> str:
    """One line for ``anisoscreen info``: which edge tensor product runs on CPU, and why."""
    if _disabled():
        return f"PyTorch path ({DISABLE_ENV}=0)"
    library = load_kernel()
    if library is None:
        return "PyTorch path (the fused kernel could not be built: no C++ compiler?)"
    return f"fused kernel ({library._name})"


def _disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off")


def kernel_available(tensor: torch.Tensor) -> bool:
    """Whether the fused kernel can process ``tensor``'s device and dtype."""
    return tensor.device.type == "cpu" and tensor.dtype in _SUFFIX and load_kernel() is not None


@dataclass(frozen=True)
class FusedPlan:
    """Column layout of the edge tensor product, one entry per input order ("group").

    Parameters
    ----------
    orders
        ``2 l1 + 1`` of each group.
    cols
        Output columns of each group (its paths' ``2 l3 + 1`` summed).
    weight_offsets
        First column of each group's weights in a row of per-edge weights.
    path_of_col
        For each group, the path (within the group) of every output column, int32.
    mul
        Channels of every order.
    """

    orders: tuple[int, ...]
    cols: tuple[int, ...]
    weight_offsets: tuple[int, ...]
    path_of_col: tuple[torch.Tensor, ...]
    mul: int

    @cached_property
    def weight_numel(self) -> int:
        """Per-edge weights of all groups (each group's paths times ``mul``)."""
        return sum(int(p[-1]) + 1 for p in self.path_of_col) * self.mul

    @cached_property
    def arrays(self) -> tuple:
        """The layout as the kernel's leading ctypes arguments (built once per plan)."""
        count = len(self.orders)
        return (
            count,
            (ctypes.c_int64 * count)(*self.orders),
            (ctypes.c_int64 * count)(*self.cols),
            (ctypes.c_int64 * count)(*self.weight_offsets),
            (ctypes.c_void_p * count)(*[p.data_ptr() for p in self.path_of_col]),
        )


def _pointers(tensors) -> ctypes.Array | None:
    if tensors is None:
        return None
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


def _shared_arguments(plan, couplings, xs, weights, rows, src, dst) -> tuple:
    """The leading arguments of both kernel entry points, in their order."""
    return (
        *plan.arrays,
        _pointers(couplings),
        _pointers(xs),
        weights.data_ptr(),
        rows.data_ptr(),
        weights.shape[1],
        src.data_ptr(),
        dst.data_ptr(),
        len(src),
    )


_PLANS: dict[tuple, FusedPlan] = {}


def _plan(
    orders: list[int],
    cols: list[int],
    offsets: list[int],
    path_of_col: list[torch.Tensor],
    mul: int,
) -> FusedPlan:
    """The :class:`FusedPlan` of an op call, built (with its ctypes arrays) once per layout.

    The cached plan keeps its ``path_of_col`` tensors alive, so their addresses in the key
    cannot be reused by other tensors while the entry exists.
    """
    key = (tuple(orders), tuple(cols), tuple(offsets), mul, *(p.data_ptr() for p in path_of_col))
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 256:
            _PLANS.clear()
        plan = FusedPlan(tuple(orders), tuple(cols), tuple(offsets), tuple(path_of_col), mul)
        _PLANS[key] = plan
    return plan


@torch.library.custom_op("anisoscreen::edge_tp_fused", mutates_args=())
def edge_tp_fused(
    sources: list[torch.Tensor],
    couplings: list[torch.Tensor],
    weights: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    rows: torch.Tensor,
    num_nodes: int,
    orders: list[int],
    cols: list[int],
    offsets: list[int],
    path_of_col: list[torch.Tensor],
    mul: int,
) -> list[torch.Tensor]:
    """Summed messages per group (see :func:`fused_edge_tensor_product`); inputs are checked."""
    plan = _plan(orders, cols, offsets, path_of_col, mul)
    # every element is written by the kernel
    outs = [weights.new_empty((num_nodes, c, mul)) for c in cols]
    library = load_kernel()
    if library is None:
        raise RuntimeError("the fused edge tensor product kernel is not available")
    status = getattr(library, f"edge_tp_forward_{_SUFFIX[weights.dtype]}")(
        *_shared_arguments(plan, couplings, sources, weights, rows, src, dst),
        num_nodes,
        mul,
        _pointers(outs),
        torch.get_num_threads(),
    )
    if status:
        raise RuntimeError("fused edge tensor product: rotational order too large")
    return outs


@edge_tp_fused.register_fake
def _(
    sources, couplings, weights, src, dst, rows, num_nodes, orders, cols, offsets, path_of_col, mul
):
    return [weights.new_empty((num_nodes, c, mul)) for c in cols]


@torch.library.custom_op("anisoscreen::edge_tp_fused_backward", mutates_args=())
def edge_tp_fused_backward(
    grads: list[torch.Tensor],
    sources: list[torch.Tensor],
    couplings: list[torch.Tensor],
    weights: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    rows: torch.Tensor,
    orders: list[int],
    cols: list[int],
    offsets: list[int],
    path_of_col: list[torch.Tensor],
    mul: int,
    need_weights: bool,
    need_couplings: bool,
    need_sources: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Gradients of :func:`edge_tp_fused` w.r.t. weights, couplings and sources.

    Those not needed come back empty (shape ``(0,)``).
    """
    plan = _plan(orders, cols, offsets, path_of_col, mul)
    grads = [g.contiguous() for g in grads]
    # edges sharing a row of weights add their gradients into it
    grad_w = torch.zeros_like(weights) if need_weights else None
    grad_xs = [torch.zeros_like(x) for x in sources] if need_sources else None
    blocks = -(-mul // 8)
    # per channel block, summed below (threads split channel blocks)
    partials = [c.new_zeros((blocks, *c.shape)) for c in couplings] if need_couplings else None
    library = load_kernel()
    if library is None:
        raise RuntimeError("the fused edge tensor product kernel is not available")
    status = getattr(library, f"edge_tp_backward_{_SUFFIX[weights.dtype]}")(
        *_shared_arguments(plan, couplings, sources, weights, rows, src, dst),
        mul,
        _pointers(grads),
        _pointers(grad_xs),
        grad_w.data_ptr() if grad_w is not None else None,
        _pointers(partials),
        torch.get_num_threads(),
    )
    if status:
        raise RuntimeError("fused edge tensor product: rotational order too large")
    empty = weights.new_empty((0,))
    return (
        grad_w if grad_w is not None else empty,
        [p.sum(0) for p in partials] if partials is not None else [],
        grad_xs if grad_xs is not None else [],
    )


@edge_tp_fused_backward.register_fake
def _(
    grads,
    sources,
    couplings,
    weights,
    src,
    dst,
    rows,
    orders,
    cols,
    offsets,
    path_of_col,
    mul,
    need_weights,
    need_couplings,
    need_sources,
):
    return (
        torch.empty_like(weights) if need_weights else weights.new_empty((0,)),
        [torch.empty_like(c) for c in couplings] if need_couplings else [],
        [torch.empty_like(x) for x in sources] if need_sources else [],
    )


def _setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
    sources, couplings, weights, src, dst, rows, num_nodes, orders, cols, offsets, paths, mul = (
        inputs
    )
    ctx.layout = (orders, cols, offsets, mul)
    ctx.num_nodes = num_nodes
    ctx.num_paths = len(paths)
    ctx.count = len(sources)
    ctx.needs = (
        weights.requires_grad,
        any(c.requires_grad for c in couplings),
        any(x.requires_grad for x in sources),
    )
    ctx.save_for_backward(src, dst, rows, weights, *couplings, *sources, *paths)


def _backward(ctx: Any, grad_outs: list[torch.Tensor | None]) -> tuple:
    orders, cols, offsets, mul = ctx.layout
    count = ctx.count
    src, dst, rows, weights, *rest = ctx.saved_tensors
    couplings, sources, paths = rest[:count], rest[count : 2 * count], rest[2 * count :]
    grads = [
        g if g is not None else weights.new_zeros((ctx.num_nodes, c, mul))
        for g, c in zip(grad_outs, cols, strict=True)
    ]
    grad_w, grad_c, grad_x = edge_tp_fused_backward(
        grads, list(sources), list(couplings), weights, src, dst, rows,
        orders, cols, offsets, list(paths), mul, *ctx.needs,
    )  # fmt: skip
    need_w, need_c, need_x = ctx.needs
    # one entry per input, lists of tensors as lists (structure checked by torch.library)
    return (
        list(grad_x) if need_x else [None] * count,
        list(grad_c) if need_c else [None] * count,
        grad_w if need_w else None,
        None, None, None, None, None, None, None, [None] * len(paths), None,
    )  # fmt: skip


edge_tp_fused.register_autograd(_backward, setup_context=_setup_context)


def fused_edge_tensor_product(
    plan: FusedPlan,
    x: list[torch.Tensor],
    couplings: list[torch.Tensor],
    weights: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    num_nodes: int,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """Summed messages of one chunk of edges, one ``(num_nodes, cols, mul)`` tensor per group.

    Parameters
    ----------
    plan
        The layout of the product (:class:`FusedPlan`).
    x
        Node features per group, ``(all_nodes, 2 l1 + 1, mul)``.
    couplings
        Per group, ``(edges, cols, 2 l1 + 1)``: spherical harmonics contracted with the
        Clebsch-Gordan coefficients.
    weights
        Weight table, ``(rows, weight_numel)``: one row per edge, or with ``rows``, per
        distinct edge length.
    src, dst
        Source node of each edge (index into ``x``) and destination within this chunk's block
        of ``num_nodes`` nodes; edges sorted by ``dst``.
    rows
        Row of ``weights`` of each edge (default: edge ``e`` uses row ``e``).
    """
    dtype = weights.dtype
    if rows is None:
        rows = torch.arange(len(src), device=src.device)
    _check_inputs(plan, x, couplings, weights, src, dst, num_nodes, rows)
    outs = edge_tp_fused(
        [t.to(dtype).contiguous() for t in x],
        [c.to(dtype).contiguous() for c in couplings],
        weights.contiguous(),
        src.to(torch.int64).contiguous(),
        dst.to(torch.int64).contiguous(),
        rows.to(torch.int64).contiguous(),
        num_nodes,
        list(plan.orders),
        list(plan.cols),
        list(plan.weight_offsets),
        list(plan.path_of_col),
        plan.mul,
    )
    return tuple(outs)


def _check_inputs(plan, x, couplings, weights, src, dst, num_nodes, rows) -> None:
    """Shapes and index ranges, checked here: the kernel reads raw memory."""
    num_edges = len(src)
    if weights.dim() != 2 or weights.shape[1] != plan.weight_numel:
        raise ValueError(f"weights: expected (*, {plan.weight_numel}), got {weights.shape}")
    if len(x) != len(plan.orders) or len(couplings) != len(plan.orders):
        raise ValueError(f"expected {len(plan.orders)} feature and coupling tensors")
    num_sources = x[0].shape[0]
    for k, (order, cols) in enumerate(zip(plan.orders, plan.cols, strict=True)):
        if x[k].shape != (num_sources, order, plan.mul):
            raise ValueError(f"features {k}: expected (*, {order}, {plan.mul}), got {x[k].shape}")
        if couplings[k].shape != (num_edges, cols, order):
            raise ValueError(f"couplings {k}: expected {(num_edges, cols, order)}")
    if len(dst) != num_edges or len(rows) != num_edges:
        raise ValueError("src, dst and rows differ in length")
    if num_edges == 0:
        return
    if int(rows.min()) < 0 or int(rows.max()) >= len(weights):
        raise ValueError("weight row out of range")
    if int(src.min()) < 0 or int(src.max()) >= num_sources:
        raise ValueError("source index out of range")
    if int(dst[0]) < 0 or int(dst[-1]) >= num_nodes or bool((dst[1:] < dst[:-1]).any()):
        raise ValueError(f"destinations must be sorted and within [0, {num_nodes})")


def edge_tensor_product(
    tp: Any,
    x: dict[int, torch.Tensor],
    edge_sh: torch.Tensor,
    edge_weight: Any,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    chunks: list[tuple[int, int, int, int]],
) -> dict[int, torch.Tensor]:
    """:meth:`EdgeTensorProduct.forward` through the fused kernel, chunk by chunk."""
    from anisoscreen.model.nn import layers

    dtype = edge_sh.dtype
    sources = [x[l1].to(dtype).contiguous() for l1 in tp.l_in]
    cgs = [getattr(tp, f"cg_{l1}").to(dtype) for l1 in tp.l_in]
    blocks: dict[tuple[int, int], list[torch.Tensor]] = {}
    indexed = isinstance(edge_weight, layers.IndexedWeights)
    table = (edge_weight.table if indexed else edge_weight).to(dtype)
    for node_lo, node_hi, lo, hi in chunks:
        # the kernel reads each edge's row of the table itself: no per-edge copy
        weights, rows = (table, edge_weight.rows[lo:hi]) if indexed else (table[lo:hi], None)
        sh = edge_sh[lo:hi]
        couplings = [
            (sh @ cg).view(hi - lo, -1, 2 * l1 + 1) for l1, cg in zip(tp.l_in, cgs, strict=True)
        ]
        summed = fused_edge_tensor_product(
            tp._fused_plan,
            sources,
            couplings,
            weights,
            edge_src[lo:hi],
            edge_dst[lo:hi] - node_lo,
            node_hi - node_lo,
            rows,
        )
        for l1, group in zip(tp.l_in, summed, strict=True):
            spans = tp._spans[l1]
            parts = torch.split(group, [paths * width for paths, width in spans], dim=1)
            for part, (paths, width) in zip(parts, spans, strict=True):
                view = part.view(node_hi - node_lo, width, paths * tp.mul)
                blocks.setdefault((l1, width // 2), []).append(view)
    return tp._assemble(blocks)
