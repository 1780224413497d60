"""Huang et al.'s minimal step and PGD against closed forms and against each other."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fmadv.attacks import FGSM, PGD, L2Step, MinimalStep, Target, make_attack
from fmadv.errors import ConfigError
from tests.test_attacks_contract import random_mlp

WIDE = (-100.0, 100.0)  # a box that never clips, where a test wants the raw step


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_problem(rows: int = 16, features: int = 7, classes: int = 4, seed: int = 0):
    """Logits x W^T + b in float64: the linearisation is exact. Labels = predictions."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, features, generator=generator, dtype=torch.float64)
    bias = torch.randn(classes, generator=generator, dtype=torch.float64)
    x = torch.rand(rows, features, generator=generator, dtype=torch.float64)

    def logits(rows_: torch.Tensor) -> torch.Tensor:
        return rows_ @ weight.T + bias

    return x, logits, logits(x).argmax(1), weight


def closed_form(x, logits, labels, weight, norm):
    """Per row, loop over the classes: the smallest r with f_j(x + r) = f_y(x + r)."""
    dual = {
        "l2": lambda w: w.norm(),
        "linf": lambda w: w.abs().sum(),
        "l1": lambda w: w.abs().max(),
    }
    steps = []
    for i in range(len(x)):
        f, y = logits(x[i : i + 1])[0], int(labels[i])
        best = None
        for j in range(len(f)):
            if j == y:
                continue
            w, c = weight[j] - weight[y], f[y] - f[j]
            if best is None or c / dual[norm](w) < best[0]:
                if norm == "l2":
                    r = c * w / w.square().sum()
                elif norm == "linf":
                    r = c * torch.sign(w) / w.abs().sum()
                else:
                    top = w.abs().argmax()
                    r = torch.zeros_like(w)
                    r[top] = c * torch.sign(w[top]) / w[top].abs()
                best = (c / dual[norm](w), r)
        steps.append(best[1])
    return torch.stack(steps)


def no_loss(rows: torch.Tensor) -> torch.Tensor:
    raise AssertionError("MinimalStep must not call the loss")


@pytest.mark.parametrize("norm", ["l2", "linf", "l1"])
def test_minimal_step_is_the_closed_form(norm):
    x, logits, labels, weight = linear_problem()
    r = MinimalStep(norm=norm).minimal_step(x, Target(no_loss, logits, labels))
    expected = closed_form(x, logits, labels, weight, norm)
    torch.testing.assert_close(r, expected, rtol=1e-10, atol=1e-12)
    # Each lands on a boundary: after the step some other class ties the true one.
    moved = logits(x + r)
    true = moved.gather(1, labels[:, None])[:, 0]
    others = moved.scatter(1, labels[:, None], -torch.inf).amax(1)
    torch.testing.assert_close(others, true, rtol=0, atol=1e-10)
    if norm == "l1":
        assert ((r != 0).sum(1) == 1).all()


@pytest.mark.parametrize("norm", ["l2", "linf", "l1"])
def test_budget_equal_to_the_distance_lands_on_the_boundary(norm):
    x, logits, labels, weight = linear_problem()
    expected = closed_form(x, logits, labels, weight, norm)
    order = {"l2": 2, "linf": float("inf"), "l1": 1}[norm]
    for i in range(len(x)):
        distance = float(torch.linalg.vector_norm(expected[i], ord=order))
        if norm == "linf" and distance > 1:
            continue  # an L-inf budget lives in [0, 1]
        attack = MinimalStep(eps=distance, norm=norm)
        x_adv = attack.perturb(x, Target(no_loss, logits, labels), WIDE)
        torch.testing.assert_close(x_adv[i] - x[i], expected[i], rtol=1e-9, atol=1e-12)
        top2 = logits(x_adv[i : i + 1])[0].topk(2).values
        torch.testing.assert_close(top2[0], top2[1], rtol=0, atol=1e-10)
        assert logits(x_adv[i : i + 1])[0, labels[i]] >= top2[0] - 1e-10


@pytest.mark.parametrize("norm, order", [("l2", 2), ("linf", float("inf")), ("l1", 1)])
def test_step_norm_is_the_budget(norm, order):
    x, logits, labels, _ = linear_problem()
    x_adv = MinimalStep(eps=0.3, norm=norm).perturb(x, Target(no_loss, logits, labels), WIDE)
    norms = torch.linalg.vector_norm(x_adv - x, ord=order, dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 0.3))


def test_misclassified_rows_move_further_away():
    x, logits, labels, _ = linear_problem()
    wrong = (labels + 1) % 4
    x_adv = MinimalStep(eps=0.3).perturb(x, Target(no_loss, logits, wrong), WIDE)
    margin = logits(x).gather(1, wrong[:, None])[:, 0] - logits(x).amax(1)
    margin_adv = logits(x_adv).gather(1, wrong[:, None])[:, 0] - logits(x_adv).amax(1)
    assert (margin_adv <= margin + 1e-12).all()


def test_rows_without_a_boundary_stay_and_stay_finite():
    x, logits, labels, _ = linear_problem()
    # Even rows: every class has the same gradient, so the gaps never change.
    frozen = (torch.arange(len(x)) % 2 == 0).to(x.dtype)[:, None]

    def outputs(rows):
        return frozen * logits(x) + (1 - frozen) * logits(rows)

    for norm in ("l2", "linf", "l1"):
        attack = MinimalStep(eps=0.2, norm=norm)
        x_adv = attack.perturb(x, Target(no_loss, outputs, labels), WIDE)
        assert torch.isfinite(x_adv).all()
        assert torch.equal(x_adv[::2], x[::2])
        assert (x_adv[1::2] != x[1::2]).any(1).all()
        r = attack.minimal_step(x, Target(no_loss, outputs, labels))
        assert torch.isfinite(r).all() and (r[::2] == 0).all()


def test_batched_alpha_equals_one_image_at_a_time():
    generator = torch.Generator().manual_seed(3)
    model = random_mlp(generator, (1 * 6 * 6, 20, 5)).double()

    def outputs(images):
        return model(images.flatten(1)).softmax(1)

    images = torch.rand(24, 1, 6, 6, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (24,), generator=generator)
    for norm in ("l2", "linf", "l1"):
        attack = MinimalStep(eps=0.1, norm=norm)
        batched = attack.perturb(images, Target(no_loss, outputs, labels))
        single = torch.cat(
            [
                attack.perturb(images[i : i + 1], Target(no_loss, outputs, labels[i : i + 1]))
                for i in range(len(images))
            ]
        )
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)


def test_alpha_needs_outputs_and_labels():
    x, logits, labels, _ = linear_problem()
    attack = MinimalStep(eps=0.1)
    with pytest.raises(ConfigError, match="outputs"):
        attack.perturb(x, no_loss)
    with pytest.raises(ConfigError, match="labels"):
        attack.perturb(x, Target(no_loss, logits))
    with pytest.raises(ConfigError, match="labels"):
        attack.perturb(x, Target(no_loss, logits, labels[:3]))
    with pytest.raises(ConfigError, match="shape"):
        attack.perturb(x, Target(no_loss, lambda r: logits(r)[:, 0], labels))


@pytest.mark.parametrize(
    "make",
    [
        lambda: MinimalStep(norm="l3"),
        lambda: MinimalStep(eps=-0.1),
        lambda: MinimalStep(eps=1.5, norm="linf"),
        lambda: PGD(norm="l1"),
        lambda: PGD(eps=2.0),
        lambda: PGD(steps=0),
        lambda: PGD(restarts=0),
        lambda: PGD(step_size=-1.0),
        lambda: PGD(support="some"),
    ],
)
def test_bad_options_raise(make):
    with pytest.raises(ConfigError):
        make()


def test_l2_budgets_may_exceed_one():
    assert MinimalStep(eps=1.5).eps == 1.5
    assert PGD(eps=3.0, norm="l2").eps == 3.0
    assert isinstance(make_attack("pgd", 0.1), PGD)
    assert isinstance(make_attack("minimal-step", 0.1), MinimalStep)
    assert isinstance(make_attack("alpha", 0.1), MinimalStep)  # the earlier name


def mlp_classifier(seed: int = 4, rows: int = 128):
    generator = torch.Generator().manual_seed(seed)
    model = random_mlp(generator, (10, 32, 3))
    x = torch.rand(rows, 10, generator=generator)
    labels = model(x).argmax(1)

    def loss_fn(rows_: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(rows_), labels, reduction="none")

    return x, loss_fn


def mean_loss(attack, x, loss_fn):
    with torch.no_grad():
        return loss_fn(attack.perturb(x, loss_fn)).mean()


@pytest.mark.parametrize("alpha", [0.02, 0.1])
def test_pgd_at_least_as_strong_as_single_steps(alpha):
    x, loss_fn = mlp_classifier()
    assert mean_loss(PGD(alpha), x, loss_fn) >= mean_loss(FGSM(alpha), x, loss_fn)
    # An L2 random start lies near the sphere (uniform in a 10-ball), and steps of
    # 0.25 alpha turn along the sphere towards the gradient only slowly: in this
    # near-linear regime ten steps end a fraction of a percent short of the single
    # L2 step. Started at x, PGD follows the gradient to the sphere and beats it.
    l2_pgd = PGD(alpha, norm="l2", random_start=False)
    assert mean_loss(l2_pgd, x, loss_fn) >= mean_loss(L2Step(alpha), x, loss_fn)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_never_weaker_than_one_start(norm):
    x, loss_fn = mlp_classifier()
    with torch.no_grad():
        one = loss_fn(PGD(0.1, norm=norm, steps=3).perturb(x, loss_fn))
        five = loss_fn(PGD(0.1, norm=norm, steps=3, restarts=5).perturb(x, loss_fn))
    assert (five >= one).all()
    assert (five > one).any()


def test_seeded_random_start_is_reproducible():
    x, loss_fn = mlp_classifier()
    attack = PGD(0.1, steps=2, restarts=2, seed=7)
    assert torch.equal(attack.perturb(x, loss_fn), attack.perturb(x, loss_fn))
    other = PGD(0.1, steps=2, restarts=2, seed=8).perturb(x, loss_fn)
    assert not torch.equal(attack.perturb(x, loss_fn), other)


@pytest.mark.parametrize("norm, single", [("linf", FGSM), ("l2", L2Step)])
def test_one_step_from_the_clean_row_is_the_single_step_attack(norm, single):
    # Where the single step raises the loss, PGD's one step from x is that same step,
    # clipped (projected, the single step in L2 would carry on past the walls).
    x, loss_fn = mlp_classifier()
    pgd = PGD(0.05, norm=norm, steps=1, step_size=0.05, random_start=False, box="clip")
    x_pgd, x_single = pgd.perturb(x, loss_fn), single(0.05, box="clip").perturb(x, loss_fn)
    with torch.no_grad():
        raised = loss_fn(x_single) > loss_fn(x)
    assert raised.sum() > len(x) // 2
    torch.testing.assert_close(x_pgd[raised], x_single[raised])
    torch.testing.assert_close(x_pgd[~raised], x[~raised])


def test_pgd_returns_its_best_iterate():
    # A step as long as the ball's diameter makes the sign iterates bounce between
    # corners, so that on many rows an earlier iterate beats the last one; each row
    # gets the best of the clean row and all iterates.
    x, loss_fn = mlp_classifier()
    attack = PGD(0.1, steps=4, step_size=0.2, random_start=False)
    with torch.no_grad():
        iterate, losses = x.clone(), [loss_fn(x)]
        for _ in range(attack.steps):
            step = torch.sign(_gradient(iterate, loss_fn))
            iterate = (x + (iterate + 0.2 * step - x).clamp(-0.1, 0.1)).clamp(0, 1)
            losses.append(loss_fn(iterate))
        losses = torch.stack(losses)
        assert (losses.amax(0) > losses[-1]).sum() > 10
        torch.testing.assert_close(loss_fn(attack.perturb(x, loss_fn)), losses.amax(0))


def test_pgd_active_support_moves_only_non_zero_coordinates():
    x, loss_fn = mlp_classifier()
    x = x * (x > 0.5)
    for norm in ("linf", "l2"):
        x_adv = PGD(0.2, norm=norm, steps=3).perturb(x, loss_fn)
        active_adv = PGD(0.2, norm=norm, steps=3, support="active").perturb(x, loss_fn)
        assert (x_adv[x == 0] != 0).any()
        assert torch.equal(active_adv[x == 0], x[x == 0])


def _gradient(x: torch.Tensor, loss_fn) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(x).sum(), x)
    return grad
