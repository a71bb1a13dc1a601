"""The fast equivariant layers against e3nn's reference operations."""

from __future__ import annotations

import contextlib

import pytest
import torch
from e3nn import o3

from anisoscreen.model.nn.edge_tp import cpu_fused as fused
from anisoscreen.model.nn.edge_tp import kernel
from anisoscreen.model.nn.layers import (
    AttributeLinear,
    EdgeTensorProduct,
    IndexedWeights,
    node_aligned_chunks,
)

MUL, LMAX, NODES, EDGES = 4, 3, 9, 70


@contextlib.contextmanager
def _float64_default():
    """e3nn builds its coefficients in the default dtype: make the references exact."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(default)


def _reference_tensor_product(tp: EdgeTensorProduct) -> o3.TensorProduct:
    """e3nn's uvu tensor product with one output block per path, in our path order."""
    irreps_in = o3.Irreps([(MUL, (l, (-1) ** l)) for l in range(LMAX + 1)])
    irreps_sh = o3.Irreps.spherical_harmonics(LMAX)
    irreps_out = o3.Irreps([(MUL, (l3, (-1) ** l3)) for _, _, l3 in tp.paths])
    instructions = [(l1, l2, k, "uvu", True) for k, (l1, l2, _) in enumerate(tp.paths)]
    with _float64_default():
        return o3.TensorProduct(
            irreps_in,
            irreps_sh,
            irreps_out,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )


@pytest.fixture
def edge_problem():
    generator = torch.Generator().manual_seed(3)
    x = {
        l: torch.randn(NODES, 2 * l + 1, MUL, generator=generator, dtype=torch.float64)
        for l in range(LMAX + 1)
    }
    edge_vec = torch.randn(EDGES, 3, generator=generator, dtype=torch.float64)
    sh = o3.spherical_harmonics(list(range(LMAX + 1)), edge_vec, True, "component")
    dst = torch.sort(torch.randint(0, NODES, (EDGES,), generator=generator)).values
    src = torch.randint(0, NODES, (EDGES,), generator=generator)
    return x, sh, dst, src, generator


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
@pytest.mark.parametrize("edge_chunk", [7, 1000])
def test_edge_tensor_product_equals_e3nn(edge_problem, grad, edge_chunk, edge_backend):
    x, sh, dst, src, generator = edge_problem
    tp = EdgeTensorProduct(dict.fromkeys(x, MUL), LMAX, list(range(LMAX + 1)))
    weights = torch.randn(EDGES, tp.weight_numel, generator=generator, dtype=torch.float64)
    reference = _reference_tensor_product(tp)

    x_flat = torch.cat([x[l].transpose(1, 2).reshape(NODES, -1) for l in sorted(x)], dim=1)
    per_edge = reference(x_flat[src], sh, weights)
    expected = torch.zeros(NODES, per_edge.shape[1], dtype=torch.float64).index_add_(
        0, dst, per_edge
    )

    leaves = {l: v.clone().requires_grad_(grad) for l, v in x.items()}
    leaf_weights = weights.clone().requires_grad_(grad)
    chunks = node_aligned_chunks(dst, NODES, edge_chunk)
    with torch.set_grad_enabled(grad):
        out = tp(leaves, sh, leaf_weights, src, dst, chunks)

    # our layout: out[l3] is (nodes, 2l3+1, paths_into_l3 * mul), paths in tp.paths order
    columns, seen = [], dict.fromkeys(out, 0)
    for _, _, l3 in tp.paths:
        block = out[l3][:, :, seen[l3] * MUL : (seen[l3] + 1) * MUL]
        columns.append(block.transpose(1, 2).reshape(NODES, -1))
        seen[l3] += 1
    ours = torch.cat(columns, dim=1)
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12)

    if grad:  # gradients reach the node features and the weights, and equal e3nn's
        probe = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
        (ours * probe).sum().backward()
        x_ref = x_flat.clone().requires_grad_(True)
        w_ref = weights.clone().requires_grad_(True)
        per_edge = reference(x_ref[src], sh, w_ref)
        summed = torch.zeros_like(expected).index_add_(0, dst, per_edge)
        (summed * probe).sum().backward()
        assert torch.allclose(leaf_weights.grad, w_ref.grad, rtol=1e-10, atol=1e-12)
        ours_x_grad = torch.cat(
            [leaves[l].grad.transpose(1, 2).reshape(NODES, -1) for l in sorted(leaves)], dim=1
        )
        assert torch.allclose(ours_x_grad, x_ref.grad, rtol=1e-10, atol=1e-12)


def test_indexed_weights_equal_the_gathered_per_edge_weights(edge_problem, edge_backend):
    x, sh, dst, src, generator = edge_problem
    tp = EdgeTensorProduct(dict.fromkeys(x, MUL), LMAX, [0, 2])
    table = torch.randn(11, tp.weight_numel, generator=generator, dtype=torch.float64)
    rows = torch.randint(0, 11, (EDGES,), generator=generator)
    chunks = node_aligned_chunks(dst, NODES, 16)
    per_edge = table[rows].clone().requires_grad_()
    leaf_table = table.clone().requires_grad_()
    direct = tp(x, sh, per_edge, src, dst, chunks)
    indexed = tp(x, sh, IndexedWeights(leaf_table, rows), src, dst, chunks)
    assert sorted(direct) == sorted(indexed) == [0, 2]
    for l3 in direct:
        torch.testing.assert_close(indexed[l3], direct[l3], rtol=1e-12, atol=1e-12)
    # a shared row's gradient is the sum over the edges that use it
    probe = {
        l3: torch.randn(v.shape, generator=generator, dtype=torch.float64)
        for l3, v in direct.items()
    }
    sum((direct[l3] * probe[l3]).sum() for l3 in direct).backward()
    sum((indexed[l3] * probe[l3]).sum() for l3 in indexed).backward()
    expected = torch.zeros_like(table).index_add_(0, rows, per_edge.grad)
    torch.testing.assert_close(leaf_table.grad, expected, rtol=1e-12, atol=1e-12)


def _run_edge_product(tp, x, sh, weights, src, dst, chunks):
    """Outputs and the gradients of a non-linear loss w.r.t. features, weights and sh."""
    leaves = [*x.values(), weights, sh]
    out = tp(x, sh, weights, src, dst, chunks)
    loss = sum((value * torch.sin(value)).sum() for value in out.values())
    return out, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mul", [13, 16])  # a partial channel block, and whole blocks only
def test_fused_kernel_equals_pytorch_path(monkeypatch, dtype, mul):
    _compare_fused_and_pytorch_paths(monkeypatch, dtype, mul)


def test_fused_kernel_built_without_openmp_equals_pytorch_path(monkeypatch):
    flags = kernel._flags
    monkeypatch.setattr(kernel, "_flags", lambda openmp=True: flags(openmp=False))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # its std::thread pool, 2 threads
    _compare_fused_and_pytorch_paths(monkeypatch, torch.float64, 13)
    assert "-fopenmp" not in kernel._flags()


def _compare_fused_and_pytorch_paths(monkeypatch, dtype, mul):
    generator = torch.Generator().manual_seed(11)
    nodes, edges = 12, 150
    x = {
        l: torch.randn(nodes, 2 * l + 1, mul, generator=generator, dtype=dtype).requires_grad_()
        for l in range(LMAX + 1)
    }
    vectors = torch.randn(edges, 3, generator=generator, dtype=dtype)
    sh = o3.spherical_harmonics(list(range(LMAX + 1)), vectors, True, "component")
    sh.requires_grad_()  # the kernel's coupling gradient is exercised too
    dst = torch.sort(torch.randint(0, nodes, (edges,), generator=generator)).values
    dst[dst == 5] = 4  # a node without incoming edges gets zero messages
    src = torch.randint(0, nodes, (edges,), generator=generator)
    tp = EdgeTensorProduct(dict.fromkeys(x, mul), LMAX, list(range(LMAX + 1)))
    weights = torch.randn(edges, tp.weight_numel, generator=generator, dtype=dtype)
    weights.requires_grad_()
    chunks = node_aligned_chunks(dst, nodes, 40)

    results = {}
    for enabled in ("1", "0"):
        monkeypatch.setenv(fused.DISABLE_ENV, enabled)
        fused.load_kernel.cache_clear()
        assert fused.kernel_available(sh) == (enabled == "1")
        results[enabled] = _run_edge_product(tp, x, sh, weights, src, dst, chunks)
    fused.load_kernel.cache_clear()

    (out_fused, grads_fused), (out_torch, grads_torch) = results["1"], results["0"]
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-11, "atol": 1e-11}
    assert sorted(out_fused) == sorted(out_torch)
    for l3 in out_torch:
        assert out_fused[l3].dtype == dtype
        torch.testing.assert_close(out_fused[l3], out_torch[l3], **tol)
        assert torch.count_nonzero(out_fused[l3][5]) == 0
    for grad_fused, grad_torch in zip(grads_fused, grads_torch, strict=True):
        torch.testing.assert_close(grad_fused, grad_torch, **tol)


def test_fused_kernel_refuses_inputs_it_would_read_out_of_bounds(edge_problem, monkeypatch):
    monkeypatch.setenv(fused.DISABLE_ENV, "1")
    fused.load_kernel.cache_clear()
    assert fused.load_kernel() is not None
    x, sh, dst, src, generator = edge_problem
    tp = EdgeTensorProduct(dict.fromkeys(x, MUL), LMAX, [0, 2])
    plan, cgs = tp.fused_plan, [getattr(tp, f"cg_{l}") for l in tp.l_in]
    couplings = [(sh @ cg).view(EDGES, -1, 2 * l + 1) for l, cg in zip(tp.l_in, cgs, strict=True)]
    features = [x[l] for l in tp.l_in]
    weights = torch.randn(EDGES, tp.weight_numel, generator=generator, dtype=torch.float64)
    call = fused.fused_edge_tensor_product
    with torch.no_grad():
        assert len(call(plan, features, couplings, weights, src, dst, NODES)) == len(tp.l_in)
        with pytest.raises(ValueError, match="sorted"):
            call(plan, features, couplings, weights, src, dst.flip(0), NODES)
        with pytest.raises(ValueError, match="sorted and within"):
            call(plan, features, couplings, weights, src, dst, int(dst[-1]))
        with pytest.raises(ValueError, match="source index"):
            call(plan, features, couplings, weights, src + NODES, dst, NODES)
        with pytest.raises(ValueError, match="weights"):
            call(plan, features, couplings, weights[:, :-1], src, dst, NODES)
        with pytest.raises(ValueError, match="weight row"):
            call(plan, features, couplings, weights[:5], src, dst, NODES, torch.arange(EDGES))
        wrong = [features[0], features[1][:, :2], *features[2:]]  # an l = 1 feature of 2 rows
        with pytest.raises(ValueError, match="features 1"):
            call(plan, wrong, couplings, weights, src, dst, NODES)


def test_kernel_is_compiled_once_per_source_and_instruction_set(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(fused.CACHE_ENV)
    compiler = kernel._compiler()
    assert compiler is not None
    flags = kernel._flags()
    library = kernel._build(compiler, flags)
    assert library.parent == tmp_path / "anisoscreen" / "kernels" and library.exists()
    built = library.stat().st_mtime_ns
    assert kernel._build(compiler, flags) == library  # cached: not compiled again
    assert library.stat().st_mtime_ns == built
    other = kernel._build(compiler, [*flags, "-DANISOSCREEN_VARIANT"])
    assert other != library  # other flags (e.g. another CPU's instruction set), other file
    libraries = sorted(p.name for p in library.parent.glob("*.so"))
    assert libraries == sorted([library.name, other.name])
    assert library.parent.stat().st_mode & 0o777 == 0o700  # created private


def test_without_a_compiler_the_pytorch_path_is_used(edge_problem, monkeypatch):
    x, sh, dst, src, generator = edge_problem
    monkeypatch.setenv(fused.DISABLE_ENV, "1")
    monkeypatch.setattr(kernel, "_compiler", lambda: None)
    fused.load_kernel.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
            assert fused.load_kernel() is None
        assert not fused.kernel_available(sh)
        tp = EdgeTensorProduct(dict.fromkeys(x, MUL), LMAX, [0, 2])
        assert tp.chunk_size(sh.device) == 1024
        weights = torch.randn(EDGES, tp.weight_numel, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            out = tp(x, sh, weights, src, dst, node_aligned_chunks(dst, NODES, 16))
        assert out[0].shape == (NODES, 1, tp.channels_out[0])
    finally:
        fused.load_kernel.cache_clear()


def test_node_aligned_chunks_cover_every_node_and_edge_once():
    dst = torch.tensor([0, 0, 0, 2, 2, 3, 5, 5, 5, 5])
    chunks = node_aligned_chunks(dst, 7, 3)
    assert chunks[0][0] == 0 and chunks[-1][1] == 7
    assert chunks[0][2] == 0 and chunks[-1][3] == len(dst)
    for (_, node_hi, _, edge_hi), (node_lo, _, edge_lo, _) in zip(
        chunks[:-1], chunks[1:], strict=True
    ):
        assert node_hi == node_lo and edge_hi == edge_lo
    for node_lo, node_hi, lo, hi in chunks:  # no node's edges are split between chunks
        assert ((dst[lo:hi] >= node_lo) & (dst[lo:hi] < node_hi)).all()


def test_attribute_linear_equals_e3nn_tensor_product_with_attributes():
    generator = torch.Generator().manual_seed(5)
    channels_in, channels_out, attr_dim = {0: 3, 1: 2, 2: 4}, {0: 5, 2: 2}, 6
    layer = AttributeLinear(channels_in, channels_out, attr_dim).double()
    species_attr = torch.rand(2, attr_dim, generator=generator, dtype=torch.float64)
    counts = [3, 4]
    x = {
        l: torch.randn(sum(counts), 2 * l + 1, c, generator=generator, dtype=torch.float64)
        for l, c in channels_in.items()
    }
    out = layer(x, species_attr, counts)
    assert sorted(out) == [0, 2]  # l = 1 has no output channels

    irreps_in = o3.Irreps([(c, (l, (-1) ** l)) for l, c in channels_in.items()])
    irreps_out = o3.Irreps([(c, (l, (-1) ** l)) for l, c in channels_out.items()])
    with _float64_default():
        reference = o3.FullyConnectedTensorProduct(
            irreps_in, f"{attr_dim}x0e", irreps_out, internal_weights=False, shared_weights=True
        )
    weight = torch.cat([layer.weights[str(l)].detach().flatten() for l in (0, 2)])
    attrs = species_attr.repeat_interleave(torch.tensor(counts), dim=0)
    x_flat = torch.cat([x[l].transpose(1, 2).reshape(len(attrs), -1) for l in sorted(x)], dim=1)
    expected = reference(x_flat, attrs, weight)
    ours = torch.cat([out[l].transpose(1, 2).reshape(len(attrs), -1) for l in (0, 2)], dim=1)
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_radial_mlp_equals_e3nn_fully_connected_net_times_scale():
    from e3nn.nn import FullyConnectedNet

    from anisoscreen.model.nn.network import RadialMLP

    torch.manual_seed(0)
    ours = RadialMLP(15, 16, 40).double()
    with _float64_default():
        reference = FullyConnectedNet([15, 16, 40], torch.nn.functional.silu)
    reference.load_state_dict(ours.state_dict())  # same parameter names and shapes
    basis = torch.randn(30, 15, dtype=torch.float64)
    scale = torch.rand(30, dtype=torch.float64)
    expected = reference(basis) * scale[:, None]
    assert torch.allclose(ours(basis, scale), expected, rtol=1e-12, atol=1e-14)
