"""Fixed baselines: the simplex ETF (closed-form cosines) and Equiangular Basis Vectors."""

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.frames import equiangular_basis, simplex_etf
from hafcls.frames.ebv import max_abs_cosine, welch_bound
from hafcls.frames.etf import centred_basis, random_orthonormal


def cosines(frame):
    w = frame.weight.double()
    w = w / w.norm(dim=0)
    return (w.T @ w).numpy()


@pytest.mark.parametrize("k,dim", [(10, None), (10, 9), (10, 16), (2, 1), (57, 56), (3, 2)])
def test_etf_cosines_are_minus_one_over_k_minus_one(k, dim):
    f = simplex_etf(k, dim=dim, seed=3)
    d = k if dim is None else dim
    assert f.weight.shape == (d, k) and f.kind == "etf" and f.dim == d
    np.testing.assert_allclose(f.weight.double().norm(dim=0).numpy(), 1.0, atol=1e-6)
    c = cosines(f)
    off = c[~np.eye(k, dtype=bool)]
    np.testing.assert_allclose(off, -1.0 / (k - 1), atol=1e-6)
    assert f.max_error < 1e-12  # float64 construction before the float32 cast
    np.testing.assert_allclose(f.similarity.numpy(), np.where(np.eye(k), 1.0, -1.0 / (k - 1)),
                               atol=1e-7)
    # the class vectors sum to zero (the simplex is centred)
    assert float(f.weight.double().sum(dim=1).abs().max()) < 1e-5


def test_etf_is_seeded_and_rejects_too_few_dimensions():
    assert torch.equal(simplex_etf(8, seed=1).weight, simplex_etf(8, seed=1).weight)
    assert not torch.allclose(simplex_etf(8, seed=1).weight, simplex_etf(8, seed=2).weight)
    with pytest.raises(HafclsError, match="dim >= K-1"):
        simplex_etf(10, dim=8)
    with pytest.raises(HafclsError, match="at least 2 classes"):
        simplex_etf(1)
    with pytest.raises(HafclsError, match="integer"):
        simplex_etf(4.0)


def test_helpers_are_orthonormal():
    rng = np.random.default_rng(0)
    q = random_orthonormal(7, 4, rng)
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-12)
    c = centred_basis(6)
    np.testing.assert_allclose(c.T @ c, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(c.sum(axis=0), 0.0, atol=1e-12)


def test_welch_bound_closed_forms():
    assert welch_bound(5, 8) == 0.0
    assert welch_bound(4, 3) == pytest.approx(1 / 3)  # the regular tetrahedron
    assert welch_bound(3, 2) == pytest.approx(0.5)  # three lines at 60 degrees


def test_ebv_pushes_cosines_below_tau():
    k, d, tau = 40, 12, 0.35
    f = equiangular_basis(k, d, seed=0, tau=tau, steps=400, lr=0.02)
    assert f.weight.shape == (d, k) and f.kind == "ebv" and f.similarity is None
    np.testing.assert_allclose(f.weight.norm(dim=0).numpy(), 1.0, atol=1e-6)
    start = torch.randn(d, k, generator=torch.Generator().manual_seed(0))
    assert max_abs_cosine(start) > 0.7  # random start: far above tau
    got = np.abs(cosines(f)[~np.eye(k, dtype=bool)]).max()
    assert got <= tau + 0.01 and f.info["max_abs_cos"] == pytest.approx(got, abs=1e-6)
    assert got >= welch_bound(k, d)
    assert f.max_error is None


def test_ebv_tetrahedron_reaches_the_welch_bound():
    f = equiangular_basis(4, 3, seed=1, tau=0.34, steps=800, lr=0.02)
    assert f.info["max_abs_cos"] == pytest.approx(1 / 3, abs=0.015)


def test_ebv_is_deterministic_and_batches():
    a = equiangular_basis(30, 8, seed=5, steps=20)
    b = equiangular_basis(30, 8, seed=5, steps=20)
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, equiangular_basis(30, 8, seed=6, steps=20).weight)
    batched = equiangular_basis(30, 8, seed=5, steps=60, batch=10, tau=0.3)
    start = torch.randn(8, 30, generator=torch.Generator().manual_seed(5))
    assert batched.info["max_abs_cos"] < max_abs_cosine(start)


@pytest.mark.parametrize("kwargs,match", [
    ({"dim": 0}, "dim"), ({"dim": 4, "tau": 1.5}, "tau"), ({"dim": 4, "steps": -1}, "steps"),
])
def test_ebv_validation(kwargs, match):
    with pytest.raises(HafclsError, match=match):
        equiangular_basis(10, **kwargs)
