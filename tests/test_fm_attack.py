"""The FM's fast exact attack against plain autograd on dense rows, on random models."""

import copy

import numpy as np
import pytest
import torch

from fmadv.attacks import APR, FGSM, L2Step, adversarial_scores
from fmadv.losses import MARGIN_LOSSES, hinge, logistic, loss_direction
from fmadv.models import fm_attack
from fmadv.sparse import SparseBatch
from tests.fm_helpers import dense_perturbation, random_fm, random_rows


def reference(model, batch, labels, loss_fn, attack):
    """Autograd on dense rows: x_adv by the generic attack, then the loss's gradients."""
    x = batch.to_dense()
    x_adv = attack.perturb(x, lambda rows: loss_fn(model.forward_dense(rows), labels))
    scores = model.forward_dense(x_adv)
    loss_fn(scores, labels).mean().backward()
    return x_adv, scores.detach(), [p.grad.clone() for p in model.parameters()]


def fast(model, batch, labels, loss_fn, attack):
    """The FM's closed form, called directly so that no fallback can stand in for it."""
    rho = loss_direction(model(batch), labels, loss_fn)
    scores = model.exact_attack_scores(batch, rho, attack.single_step())
    assert scores is not None
    torch.testing.assert_close(scores, adversarial_scores(model, batch, labels, loss_fn, attack))
    loss_fn(scores, labels).mean().backward()
    return scores.detach(), [p.grad.clone() for p in model.parameters()]


def problem(n, k, seed, rows=48, active=5, scale=0.3):
    model = random_fm(n, k, seed, scale=scale).double()
    batch = SparseBatch(random_rows(rows, n, active, seed), dtype=torch.float64)
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(rng.choice([-1.0, 1.0], rows))
    return model, batch, labels


ATTACKS = [
    FGSM(0.003, "all"),
    FGSM(0.3, "all"),
    FGSM(0.2, "active"),
    L2Step(0.5, "all"),
    L2Step(0.5, "active"),
    L2Step(0.5, "all", box="clip"),
    L2Step(0.5, "active", box="clip"),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: f"{a.name}-{a.eps}-{a.support}-{a.box}")
@pytest.mark.parametrize("n, k, seed", [(30, 4, 0), (200, 8, 1), (1000, 3, 2)])
@pytest.mark.parametrize("loss_fn", MARGIN_LOSSES.values(), ids=lambda f: f.__name__)
@pytest.mark.parametrize("cache", [True, False], ids=["cached", "recomputed"])
def test_fast_attack_equals_dense_autograd(attack, n, k, seed, loss_fn, cache, monkeypatch):
    # Small tiles so that several tiles (and a ragged last one) are exercised, with the
    # backward pass reusing the forward's step values or recomputing them.
    monkeypatch.setattr(fm_attack, "TILE_ELEMENTS", 48 * 7)
    monkeypatch.setattr(fm_attack, "CACHE_ELEMENTS", 1 << 30 if cache else 0)
    model, batch, labels = problem(n, k, seed)
    x_ref, scores_ref, grads_ref = reference(model, batch, labels, loss_fn, attack)
    model.zero_grad()
    x_fast = dense_perturbation(model, batch, labels, loss_fn, attack)
    scores_fast, grads_fast = fast(model, batch, labels, loss_fn, attack)
    torch.testing.assert_close(x_fast, x_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(scores_fast, scores_ref, rtol=1e-10, atol=1e-10)
    for got, want in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_hinge_inactive_rows_do_not_move_and_active_rows_do():
    model, batch, labels = problem(100, 4, seed=3, scale=1.0)
    clean = model(batch).detach()
    inactive = labels * clean >= 1
    assert inactive.any() and (~inactive).any()
    attack = FGSM(0.1)
    x_adv = dense_perturbation(model, batch, labels, hinge, attack)
    moved = (x_adv != batch.to_dense()).any(1)
    assert not moved[inactive].any()
    assert moved[~inactive].all()
    adv = adversarial_scores(model, batch, labels, hinge, attack).detach()
    torch.testing.assert_close(adv[inactive], clean[inactive])
    # The attack never helps: the margin of an attacked row does not grow.
    assert torch.all(labels * adv <= labels * clean + 1e-12)


def test_binary_box_rule_zeros_rise_ones_fall():
    model, batch, labels = problem(60, 5, seed=4, scale=1.0)
    x = batch.to_dense()
    x_adv = dense_perturbation(model, batch, labels, hinge, FGSM(0.25))
    assert torch.all(x_adv[x == 0] >= 0) and torch.all(x_adv[x == 1] <= 1)
    assert set(torch.unique(x_adv - x).tolist()) <= {-0.25, 0.0, 0.25}
    assert torch.all((x_adv - x)[x == 0] >= 0) and torch.all((x_adv - x)[x == 1] <= 0)


def test_alpha_zero_changes_nothing():
    model, batch, labels = problem(50, 3, seed=5)
    clean = model(batch).detach()
    adv = adversarial_scores(model, batch, labels, hinge, FGSM(0.0)).detach()
    torch.testing.assert_close(adv, clean)


def test_float32_fast_path_agrees_with_float64():
    model32 = random_fm(3000, 16, seed=6, scale=0.3)
    model64 = copy.deepcopy(model32).double()
    rows = random_rows(256, 3000, active=8, seed=6)
    labels = torch.from_numpy(np.random.default_rng(6).choice([-1.0, 1.0], 256))
    attack = FGSM(0.01)
    adv32 = adversarial_scores(model32, SparseBatch(rows), labels.float(), hinge, attack)
    batch64 = SparseBatch(rows, dtype=torch.float64)
    adv64 = adversarial_scores(model64, batch64, labels, hinge, attack)
    torch.testing.assert_close(adv32.detach().double(), adv64.detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("loss_fn", [hinge, logistic], ids=lambda f: f.__name__)
def test_apr_equals_autograd_on_per_row_embeddings(loss_fn):
    """APR against its definition: per row, autograd on a private copy of the table."""
    model, batch, labels = problem(40, 4, seed=7, rows=12, active=4, scale=0.4)
    eps = 0.3
    fast_scores = adversarial_scores(model, batch, labels, loss_fn, APR(eps))
    loss_fn(fast_scores, labels).mean().backward()
    fast_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    x = batch.to_dense()
    reference = []
    for b in range(x.shape[0]):
        active = torch.nonzero(x[b]).squeeze(1)
        table = model.factors.detach().clone().requires_grad_(True)
        score = (
            model.bias
            + x[b] @ model.linear
            + 0.5 * ((x[b] @ table).square().sum() - x[b].square() @ table.square().sum(1))
        )
        (grad,) = torch.autograd.grad(loss_fn(score, labels[b]), table)
        delta = torch.zeros_like(table)
        g = grad[active]
        if g.norm() > 0:
            delta[active] = eps * g / g.norm()
        moved = model.factors + delta
        reference.append(
            model.bias + x[b] @ model.linear
            + 0.5 * ((x[b] @ moved).square().sum() - x[b].square() @ moved.square().sum(1))
        )  # fmt: skip
    reference = torch.stack(reference)
    loss_fn(reference, labels).mean().backward()
    torch.testing.assert_close(fast_scores.detach(), reference.detach(), rtol=1e-10, atol=1e-10)
    for got, want in zip(fast_grads, [p.grad for p in model.parameters()], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_bfloat16_masks_agree_with_float32_on_nearly_every_coordinate():
    model = random_fm(3000, 32, seed=8, scale=0.2)
    rows = random_rows(512, 3000, active=8, seed=8)
    labels = torch.from_numpy(np.random.default_rng(8).choice([-1.0, 1.0], 512).astype(np.float32))
    batch = SparseBatch(rows)
    differ, total = fm_attack.mask_disagreement(model, batch, labels, hinge)
    assert total > 1_000_000 and 0 < differ < 0.01 * total  # bf16 rounds, but rarely flips
    exact = adversarial_scores(model, batch, labels, hinge, FGSM(0.003)).detach()
    rounded = adversarial_scores(
        model, batch, labels, hinge, FGSM(0.003), lean_dtype=torch.bfloat16
    ).detach()
    # A few flipped coordinates move each score by about alpha * |g_j|, no more.
    assert (rounded - exact).abs().max() < 0.05 * exact.abs().max()
    assert not torch.equal(rounded, exact)


def test_steps_without_a_closed_form_run_on_dense_rows():
    # Unclipped rows leave the box, and a projected L2 step longer than 1 meets its
    # walls: the FM has no closed form for either, and the core's dense path serves them.
    model, batch, labels = problem(30, 4, seed=0)
    rho = loss_direction(model(batch), labels, hinge)
    for attack in (FGSM(0.2, box="none"), L2Step(1.5, box="project")):
        assert model.exact_attack_scores(batch, rho, attack.single_step()) is None
        x_adv = attack.perturb(
            batch.to_dense(), lambda rows: hinge(model.forward_dense(rows), labels)
        )
        torch.testing.assert_close(
            adversarial_scores(model, batch, labels, hinge, attack), model.forward_dense(x_adv)
        )
        moving = (x_adv != batch.to_dense()).any(1)
        inside = ((x_adv >= 0) & (x_adv <= 1)).all(1)
        assert moving.any() and inside.all() == (attack.box == "project")
