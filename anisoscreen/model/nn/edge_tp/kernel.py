"""The fused edge-tensor-product kernel's build and cache: compiled on first use, loaded once.

The source (``kernels/edge_tp.cpp``) is compiled once per machine with the system C++
compiler (``$CXX``, else ``c++``, ``g++`` or ``clang++``; about ten seconds) into the user
cache folder, keyed by a hash of the source, the compiler and the instruction set, so a home
folder shared by different cluster nodes never loads a library built for another CPU. Where no
compiler is available, or ``ANISOSCREEN_FUSED_KERNEL=0`` is set, :func:`load_kernel` returns
``None`` and the layer keeps its pure-PyTorch path, which computes the same values (and is the
path on GPUs).

The cache folder (``$ANISOSCREEN_KERNEL_CACHE``, else the user cache, else
``$TMPDIR/anisoscreen-kernels-<uid>``) is created 0700 and refused when it is a link, is not
owned by the current user, or is writable by group or others. Each library is loaded only
when it is owned by the current user, not writable by others, and its SHA-256 matches the one
recorded when this package built it; anything else in its place is rebuilt, never loaded.

The op that calls the library is :mod:`anisoscreen.model.nn.edge_tp.cpu_fused`.
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
from functools import lru_cache
from pathlib import Path

import platformdirs
import torch

__all__ = [
    "CACHE_ENV",
    "DISABLE_ENV",
    "MAX_L",
    "UnsafeKernelCacheError",
    "cache_dir",
    "describe",
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
