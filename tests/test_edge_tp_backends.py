"""Edge tensor product backends against the reference PyTorch path; the kernel cache's safety."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from e3nn import o3

from anisoscreen.model.nn.edge_tp import cpu_fused, kernel, select_backend
from anisoscreen.model.nn.layers import EdgeTensorProduct, node_aligned_chunks


def _problem(
    lmax: int,
    mul: int = 3,
    nodes: int = 7,
    edges: int = 40,
    seed: int = 5,
    l_out: list[int] | None = None,
):
    generator = torch.Generator().manual_seed(seed)
    x = {
        l: torch.randn(nodes, 2 * l + 1, mul, generator=generator, dtype=torch.float64)
        for l in range(lmax + 1)
    }
    vectors = torch.randn(edges, 3, generator=generator, dtype=torch.float64)
    sh = o3.spherical_harmonics(list(range(3)), vectors, True, "component")
    dst = torch.sort(torch.randint(0, nodes, (edges,), generator=generator)).values
    src = torch.randint(0, nodes, (edges,), generator=generator)
    l_out = l_out if l_out is not None else list(range(min(lmax, 3) + 1))
    tp = EdgeTensorProduct(dict.fromkeys(x, mul), 2, l_out)
    weights = torch.randn(edges, tp.weight_numel, generator=generator, dtype=torch.float64)
    return tp, x, sh, weights, src, dst, node_aligned_chunks(dst, nodes, 16)


def _outputs_and_grads(tp, x, sh, weights, src, dst, chunks):
    leaves = [v.clone().requires_grad_() for v in x.values()]
    w = weights.clone().requires_grad_()
    s = sh.clone().requires_grad_()
    out = tp(dict(zip(x, leaves, strict=True)), s, w, src, dst, chunks)
    loss = sum((value * torch.sin(value)).sum() for value in out.values())
    return out, torch.autograd.grad(loss, [*leaves, w, s])


@pytest.fixture
def fused_enabled(monkeypatch):
    monkeypatch.setenv(cpu_fused.DISABLE_ENV, "1")
    cpu_fused.load_kernel.cache_clear()
    yield
    cpu_fused.load_kernel.cache_clear()


@pytest.mark.parametrize("lmax", [0, 1, 2, 3, 4, 5])
def test_fused_backend_equals_the_reference_up_to_l5(lmax, fused_enabled, monkeypatch):
    problem = _problem(lmax)
    assert select_backend(problem[2], lmax) == "cpu_fused"
    fused_out, fused_grads = _outputs_and_grads(*problem)
    monkeypatch.setenv(cpu_fused.DISABLE_ENV, "0")
    cpu_fused.load_kernel.cache_clear()
    assert select_backend(problem[2], lmax) == "torch_path"
    ref_out, ref_grads = _outputs_and_grads(*problem)
    assert sorted(fused_out) == sorted(ref_out)
    for l3 in ref_out:
        torch.testing.assert_close(fused_out[l3], ref_out[l3], rtol=1e-11, atol=1e-11)
    for got, want in zip(fused_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_orders_above_the_kernel_limit_fall_back_to_the_reference(fused_enabled, monkeypatch):
    calls = []
    fused_call = cpu_fused.fused_edge_tensor_product

    def counted(*args, **kwargs):
        calls.append(1)
        return fused_call(*args, **kwargs)

    monkeypatch.setattr(cpu_fused, "fused_edge_tensor_product", counted)
    for lmax, fused in ((cpu_fused.MAX_L, True), (cpu_fused.MAX_L + 1, False)):
        tp, x, sh, weights, src, dst, chunks = _problem(lmax, 1, edges=12, l_out=[lmax])
        assert max(tp.l_in) == lmax
        assert select_backend(sh, lmax) == ("cpu_fused" if fused else "torch_path")
        calls.clear()
        with torch.no_grad():
            out = tp(x, sh, weights, src, dst, chunks)
        assert bool(calls) == fused
        assert out[lmax].shape == (7, 2 * lmax + 1, tp.channels_out[lmax])
        assert torch.isfinite(out[lmax]).all() and out[lmax].abs().sum() > 0


def test_fused_op_registration_passes_torch_library_opcheck(fused_enabled):
    tp, x, sh, weights, src, dst, _ = _problem(2)
    plan = tp.fused_plan
    couplings = [
        (sh @ getattr(tp, f"cg_{l}")).view(len(src), -1, 2 * l + 1).requires_grad_()
        for l in tp.l_in
    ]
    args = (
        [x[l].clone().requires_grad_() for l in tp.l_in],
        couplings,
        weights.clone().requires_grad_(),
        src,
        torch.sort(dst).values,
        torch.arange(len(src)),
        7,
        list(plan.orders),
        list(plan.cols),
        list(plan.weight_offsets),
        list(plan.path_of_col),
        plan.mul,
    )
    torch.library.opcheck(cpu_fused.edge_tp_fused, args)


def _plant(folder: Path, marker: Path) -> Path:
    """A library under the name the package would load, which creates ``marker`` if loaded."""
    compiler = kernel._compiler()
    assert compiler is not None
    source = folder.parent / "planted.cpp"
    source.write_text(
        "#include <cstdio>\n"
        f'__attribute__((constructor)) static void planted() {{ std::fopen("{marker}", "w"); }}\n'
        'extern "C" int edge_tp_abi_version() { return -1; }\n'
    )
    target = cpu_fused.library_path(compiler, kernel._flags())
    subprocess.run([compiler, "-shared", "-fPIC", str(source), "-o", str(target)], check=True)
    # a forged record of its hash does not help either
    kernel._record(target).write_text(kernel._sha256(target) + "\n")
    return target


@pytest.mark.skipif(os.getuid() != 0, reason="chown to nobody needs root (CI runs as root)")
@pytest.mark.parametrize("how", ["nobody", "world-writable"])
def test_a_planted_library_in_a_foreign_or_open_folder_is_never_loaded(
    how, tmp_path, monkeypatch, fused_enabled
):
    folder = tmp_path / "kernels"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv(cpu_fused.CACHE_ENV, str(folder))
    marker = tmp_path / "planted-code-ran"
    _plant(folder, marker)
    if how == "nobody":
        shutil.chown(folder, user="nobody")
    else:
        folder.chmod(0o777)
    with pytest.raises(cpu_fused.UnsafeKernelCacheError, match="owned by|writable by"):
        cpu_fused.cache_dir()
    with pytest.warns(RuntimeWarning, match="kernel cache"):
        assert cpu_fused.load_kernel() is None
    assert not marker.exists()


@pytest.mark.slow
def test_a_library_without_our_recorded_hash_is_rebuilt_not_loaded(
    tmp_path, monkeypatch, fused_enabled
):
    folder = tmp_path / "kernels"
    monkeypatch.setenv(cpu_fused.CACHE_ENV, str(folder))
    assert cpu_fused.cache_dir() == folder and folder.stat().st_mode & 0o777 == 0o700
    marker = tmp_path / "planted-code-ran"
    planted = _plant(folder, marker)
    kernel._record(planted).write_text("0" * 64 + "\n")  # not the hash we recorded
    library = cpu_fused.load_kernel()
    assert library is not None and library.edge_tp_abi_version() == kernel._ABI_VERSION
    assert not marker.exists()
    assert kernel._verified(planted)  # replaced by our own build, with its hash
