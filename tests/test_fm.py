import numpy as np
import pytest
import torch

from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import SparseBatch
from tests.fm_helpers import random_fm, random_rows


def reference_scores(model: FactorizationMachine, x: torch.Tensor) -> torch.Tensor:
    """The FM written out pairwise: b + sum_i w_i x_i + sum_{i<j} <V_i, V_j> x_i x_j."""
    gram = model.factors @ model.factors.T
    pairwise = torch.einsum("bi,ij,bj->b", x, torch.triu(gram, diagonal=1), x)
    return model.bias + x @ model.linear + pairwise


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("real", [False, True])
def test_sparse_and_dense_paths_agree_with_the_pairwise_definition(seed, real):
    n, k = 50, 6
    X = random_rows(32, n, active=7, seed=seed, real=real)
    model = random_fm(n, k, seed)
    batch = SparseBatch(X)
    sparse = model(batch)
    dense = model.forward_dense(batch.to_dense())
    pairwise = reference_scores(model, batch.to_dense())
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense, pairwise, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("real", [False, True])
def test_sparse_gradients_equal_dense_autograd(real):
    n, k = 40, 5
    X = random_rows(64, n, active=6, seed=3, real=real)
    labels = torch.from_numpy(np.random.default_rng(3).choice([-1.0, 1.0], 64).astype(np.float32))
    grads = []
    for path in ("sparse", "dense"):
        model = random_fm(n, k, seed=4)
        batch = SparseBatch(X)
        scores = model(batch) if path == "sparse" else model.forward_dense(batch.to_dense())
        penalty = model.l2_penalty(batch, 0.01, 0.02)
        (torch.clamp(1 - labels * scores, min=0).mean() + penalty).backward()
        grads.append([p.grad.clone() for p in (model.bias, model.linear, model.factors)])
        if path == "dense":
            # The dense twin of the penalty: x^2-weighted, row mean.
            x2 = batch.to_dense().square()
            expected = (
                x2 @ (0.01 * model.linear.square() + 0.02 * model.factors.square().sum(1))
            ).mean()
            torch.testing.assert_close(penalty, expected)
    for sparse_grad, dense_grad in zip(*grads, strict=True):
        torch.testing.assert_close(sparse_grad, dense_grad, rtol=1e-5, atol=1e-6)


def test_penalty_is_zero_without_regularisation_and_grows_with_it():
    model = random_fm(30, 4, seed=0)
    batch = SparseBatch(random_rows(8, 30, 3, seed=0))
    assert model.l2_penalty(batch, 0.0, 0.0).item() == 0.0
    small, large = model.l2_penalty(batch, 0.1, 0.1), model.l2_penalty(batch, 0.2, 0.2)
    torch.testing.assert_close(large, 2 * small)


def test_width_mismatch_is_rejected():
    model = FactorizationMachine(10, 2)
    with pytest.raises(ValueError, match="11 features but the model was built for 10"):
        model(SparseBatch(random_rows(2, 11, 2, seed=0)))


def test_untouched_features_get_no_gradient():
    model = random_fm(20, 3, seed=0)
    X = random_rows(5, 20, 2, seed=1)
    batch = SparseBatch(X)
    (model(batch).sum() + model.l2_penalty(batch, 1.0, 1.0)).backward()
    untouched = np.setdiff1d(np.arange(20), X.indices)
    assert len(untouched) > 0
    assert torch.all(model.factors.grad[untouched] == 0)
    assert torch.all(model.linear.grad[untouched] == 0)
