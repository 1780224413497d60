"""Sparse updates: gradients on the rows a batch uses, against the dense path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from fmadv.cli import app
from fmadv.errors import ConfigError
from fmadv.estimators import FMClassifier
from fmadv.losses import hinge
from fmadv.sparse import SparseBatch
from fmadv.training.optimizers import Adam
from tests.fm_helpers import planted_problem, random_fm, random_rows
from tests.test_pair_batch import group_labels, pair_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def _loss_and_grads(model, batch, labels, sparse: bool):
    model.sparse_gradients = sparse
    model.zero_grad(set_to_none=True)
    scores = model(batch)
    (hinge(scores, labels).mean() + model.l2_penalty(batch, 0.1, 0.2)).backward()
    grads = [p.grad.to_dense() if p.grad.is_sparse else p.grad for p in model.parameters()]
    kinds = [p.grad.is_sparse for p in model.parameters()]
    return scores.detach(), grads, kinds


@pytest.mark.parametrize("kind", ["rows", "pairs"])
def test_sparse_gradients_equal_the_dense_ones(kind):
    model = random_fm(30, 4, seed=1).double()
    if kind == "rows":
        batch = SparseBatch(random_rows(12, 30, active=3, seed=2), dtype=torch.float64)
        labels = torch.tensor([1.0, -1.0] * 6, dtype=torch.float64)
    else:
        batch, labels = pair_batch(seed=3), group_labels()
    dense_scores, dense, _ = _loss_and_grads(model, batch, labels, sparse=False)
    sparse_scores, sparse, kinds = _loss_and_grads(model, batch, labels, sparse=True)
    torch.testing.assert_close(sparse_scores, dense_scores)
    assert kinds == [False, True, True]  # bias dense; linear and factors sparse
    for a, b in zip(sparse, dense, strict=True):
        torch.testing.assert_close(a, b)


def test_lazy_adam_is_adam_on_rows_touched_at_every_step():
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    grads = [torch.randn(6, 3, generator=generator, dtype=torch.float64) for _ in range(5)]
    results = []
    for kind in ("torch", "dense", "sparse"):
        param = torch.nn.Parameter(start.clone())
        optimizer = (torch.optim.Adam if kind == "torch" else Adam)([param], lr=0.1)
        for grad in grads:
            param.grad = grad.to_sparse(1) if kind == "sparse" else grad.clone()
            optimizer.step()
        results.append(param.detach())
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=1e-15)
    torch.testing.assert_close(results[2], results[0], rtol=0, atol=1e-15)


def test_lazy_adam_leaves_untouched_rows_and_their_moments_alone():
    param = torch.nn.Parameter(torch.ones(4, 2))
    optimizer = Adam([param], lr=0.1)
    for _ in range(3):
        rows = torch.tensor([[1, 3]])
        param.grad = torch.sparse_coo_tensor(rows, torch.ones(2, 2), (4, 2), check_invariants=True)
        optimizer.step()
    assert torch.equal(param.detach()[[0, 2]], torch.ones(2, 2))
    assert torch.equal(optimizer.state[param]["exp_avg"][[0, 2]], torch.zeros(2, 2))
    assert (param.detach()[[1, 3]] < 1).all()


@pytest.mark.parametrize("optimizer", ["adagrad", "sgd"])
def test_adagrad_and_sgd_train_the_same_model_sparse_or_dense(optimizer):
    X, y = planted_problem(n_rows=1500, seed=4)
    common = {"n_factors": 4, "epochs": 3, "batch_size": 256, "optimizer": optimizer,
              "lr": 0.05, "patience": 0, "random_state": 0}  # fmt: skip
    dense = FMClassifier(**common).fit(X, y)
    sparse = FMClassifier(**common, sparse_updates=True).fit(X, y)
    assert not sparse.model_.sparse_gradients  # scores as any model once trained
    for a, b in zip(sparse.model_.parameters(), dense.model_.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_lazy_adam_learns_the_planted_problem_as_adam_does():
    X, y = planted_problem(n_rows=3000, seed=5)
    accuracy = {}
    for sparse in (False, True):
        model = FMClassifier(
            n_factors=4, epochs=10, batch_size=128, lr=0.02, sparse_updates=sparse, random_state=0
        ).fit(X[:2400], y[:2400], eval_set=(X[2400:], y[2400:]))
        accuracy[sparse] = np.mean(np.sign(model.decision_function(X[2400:])) == y[2400:])
    assert accuracy[True] > 0.85 and abs(accuracy[True] - accuracy[False]) < 0.03


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"beta": 0.5}, "sparse updates train plain FMs"),
        ({"optimizer": "sgd", "momentum": 0.9}, "no momentum"),
        ({"weight_decay": 1e-4}, "no weight decay"),
        ({"grad_noise": 1e-3, "grad_noise_rows": "all"}, "touched rows only"),
    ],
)
def test_what_sparse_updates_refuse(options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        FMClassifier(sparse_updates=True, **options).validate()


def test_sparse_updates_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--sparse-updates", "--epochs", "1", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert FMClassifier.load(out).sparse_updates is True


def test_the_default_adam_trains_the_fm_torchs_adam_trains_bit_for_bit(monkeypatch):
    from fmadv.training import loop

    X, y = planted_problem(n_rows=2000, seed=1)
    options = {"n_factors": 8, "epochs": 3, "batch_size": 256, "random_state": 0}
    ours = FMClassifier(**options).fit(X, y)
    monkeypatch.setattr(
        loop,
        "make_optimizer",
        lambda model, name, lr, momentum, decay, sparse: torch.optim.Adam(
            model.parameters(), lr=lr, weight_decay=decay
        ),
    )
    theirs = FMClassifier(**options).fit(X, y)
    for a, b in zip(ours.model_.parameters(), theirs.model_.parameters(), strict=True):
        assert torch.equal(a, b)


def test_building_the_optimizer_imports_no_compiler_stack():
    """torch's optimizer constructor imports torch._dynamo (about a second of start-up)."""
    code = (
        "import sys, torch\n"
        "from fmadv.models.fm import FactorizationMachine\n"
        "from fmadv.training.optimizers import make_optimizer\n"
        "make_optimizer(FactorizationMachine(10, 2), 'adam', 0.01)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_sparse_updates_on_movielens_match_the_dense_run(data_dir_with):
    """Real data: the lazy Adam reaches the dense Adam's validation AUC on u1."""
    from fmadv.data import load_dataset

    splits = load_dataset("movielens-100k", data_dir_with("movielens-100k"), split="u1")
    best = {}
    for sparse in (False, True):
        model = FMClassifier(n_factors=16, epochs=3, sparse_updates=sparse, random_state=0)
        model.fit_splits(splits)
        best[sparse] = model.history_.best_value
    assert best[True] > 0.74 and abs(best[True] - best[False]) < 0.01, best


def test_gradient_noise_goes_to_the_touched_rows_of_sparse_gradients():
    X, y = planted_problem(n_rows=1500, seed=6)
    X = sp.hstack([X, sp.csr_matrix((X.shape[0], 10))], format="csr")  # 10 unused features
    common = {"n_factors": 4, "epochs": 2, "batch_size": 256, "sparse_updates": True,
              "random_state": 0}  # fmt: skip
    clean = FMClassifier(**common).fit(X, y)
    noisy = FMClassifier(**common, grad_noise=1e-2).fit(X, y)
    moved = (noisy.model_.factors - clean.model_.factors).abs().sum(1) > 0
    # A feature no row holds has no gradient, so no noise either: it keeps its start.
    assert moved[:-10].any() and not moved[-10:].any()
