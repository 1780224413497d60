import numpy as np
import pytest
import torch

from fmadv.attacks import FGSM, adversarial_scores
from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier
from fmadv.evaluation.robustness import attacked_scores, line_search_scores, strongest_scores
from fmadv.losses import hinge, logistic, squared
from fmadv.metrics.robustness import robustness_report
from fmadv.sparse import SparseBatch
from fmadv.training.objectives import AdversarialObjective
from fmadv.training.regularizers import GradientNoise
from tests.fm_helpers import planted_problem, random_fm, random_rows

# The blog's setting (hinge, little L2) on a planted problem of a few thousand rows.
FAST = {
    "epochs": 6, "batch_size": 256, "lr": 0.05, "loss": "hinge",
    "reg_linear": 1e-5, "reg_factors": 1e-5,
}  # fmt: skip


def test_mixed_objective_is_clean_plus_beta_times_adversarial():
    model = random_fm(40, 4, seed=0)
    batch = SparseBatch(random_rows(32, 40, 4, seed=0))
    labels = torch.from_numpy(np.random.default_rng(0).choice([-1.0, 1.0], 32).astype(np.float32))
    attack = FGSM(0.1)
    clean = hinge(model(batch), labels).mean()
    adv = hinge(adversarial_scores(model, batch, labels, hinge, attack), labels).mean()
    mixed = AdversarialObjective(attack, beta=0.5)(model, batch, labels, hinge)
    only = AdversarialObjective(attack, adversarial_only=True)(model, batch, labels, hinge)
    torch.testing.assert_close(mixed, clean + 0.5 * adv)
    torch.testing.assert_close(only, adv)
    assert adv > clean  # the attack raises the loss


@pytest.mark.parametrize(
    "options, message",
    [
        ({"eps": -0.1, "beta": 0.5}, "eps must lie in"),
        ({"eps": 1.5, "beta": 0.5}, "eps must lie in"),
        ({"eps": 1.5}, "eps must lie in"),  # checked even when beta = 0
        ({"beta": -1.0}, "beta must be"),
        ({"grad_noise": -0.1}, "eta must be >= 0"),
        ({"support": "some", "beta": 0.5}, "unknown perturbation support"),
        ({"attack": "teleport", "beta": 0.5}, "unknown attack"),
        ({"grad_noise": 0.1, "grad_noise_rows": "few"}, "rows must be one of"),
        ({"beta": 0.5, "attack_precision": "fp8"}, "attack_precision must be one of"),
    ],
)
def test_bad_adversarial_options_fail_before_training(options, message):
    X, y = planted_problem(n_rows=200)
    model = FMClassifier(**options, **FAST)
    with pytest.raises(ConfigError, match=message):
        model.fit(X, y)
    assert not hasattr(model, "model_")


def test_gradient_noise_schedule_rows_and_seed():
    noise = GradientNoise(eta=0.3, gamma=0.55)
    assert noise.std(0) == pytest.approx(0.3**0.5)
    assert noise.std(9) == pytest.approx((0.3 / 10**0.55) ** 0.5)

    def noisy_grads(rows, seed=0):
        model = random_fm(30, 3, seed=1)
        batch = SparseBatch(random_rows(4, 30, 2, seed=2))
        model(batch).sum().backward()
        clean = [p.grad.clone() for p in model.parameters()]
        GradientNoise(0.5, rows=rows, seed=seed)(model, step=0)
        return clean, [p.grad.clone() for p in model.parameters()]

    clean, touched = noisy_grads("touched")
    untouched = clean[2].abs().sum(1) == 0
    assert untouched.any()
    assert torch.equal(touched[2][untouched], clean[2][untouched])
    assert not torch.equal(touched[2][~untouched], clean[2][~untouched])
    _, everywhere = noisy_grads("all")
    assert not torch.equal(everywhere[2][untouched], clean[2][untouched])
    _, again = noisy_grads("touched")
    _, other_seed = noisy_grads("touched", seed=1)
    assert torch.equal(again[2], touched[2]) and not torch.equal(other_seed[2], touched[2])


def test_robustness_report_by_hand():
    labels = np.array([1.0, 1.0, -1.0, -1.0])
    clean = np.array([2.0, 0.5, -0.5, 0.3])
    attacked = np.array([1.5, -0.2, -0.1, 0.8])
    report = robustness_report(labels, clean, attacked)
    assert report["flip_rate"] == 0.25
    assert report["clean_error"] == 0.25 and report["adversarial_error"] == 0.5
    assert report["mean_margin_clean"] == pytest.approx(np.mean([2.0, 0.5, 0.5, -0.3]))
    assert report["inside_margin_adversarial"] == 0.75


def test_adversarial_training_lowers_the_loss_under_attack():
    X, y = planted_problem(n_rows=6000)
    Xt, yt, Xv, yv = X[:5000], y[:5000], X[5000:], y[5000:]
    alpha = 0.01
    attacked_hinge = {}
    for beta in (0.0, 1.0):
        model = FMClassifier(n_factors=4, beta=beta, eps=alpha, **FAST).fit(Xt, yt)
        clean, attacked = attacked_scores(model.model_, Xv, yv, model.make_attack(), hinge)
        attacked_hinge[beta] = np.maximum(0, 1 - yv * attacked).mean()
        assert np.mean(np.sign(clean) != yv) < 0.15  # both remain useful models
    assert attacked_hinge[1.0] < 0.95 * attacked_hinge[0.0]


def test_noisy_and_adversarial_only_training_still_learn():
    X, y = planted_problem(n_rows=6000)
    Xt, yt, Xv, yv = X[:5000], y[:5000], X[5000:], y[5000:]
    for options in ({"grad_noise": 0.001}, {"adversarial_only": True, "eps": 0.01}):
        model = FMClassifier(n_factors=4, **options, **FAST).fit(Xt, yt)
        accuracy = np.mean(model.predict(Xv) == yv)
        assert accuracy > 0.75, (options, accuracy)


def test_bfloat16_attack_trains_like_float32():
    X, y = planted_problem(n_rows=3000)
    options = {"n_factors": 4, "beta": 1.0, "eps": 0.01, **FAST}
    exact = FMClassifier(**options).fit(X[:2500], y[:2500])
    rounded = FMClassifier(attack_precision="bfloat16", **options).fit(X[:2500], y[:2500])
    agree = np.mean(exact.predict(X[2500:]) == rounded.predict(X[2500:]))
    assert agree > 0.97


def test_same_seed_same_adversarial_noisy_model():
    X, y = planted_problem(n_rows=1000)
    options = {"beta": 0.5, "eps": 0.05, "grad_noise": 0.01, **FAST, "epochs": 2}
    a = FMClassifier(n_factors=3, **options).fit(X, y)
    b = FMClassifier(n_factors=3, **options).fit(X, y)
    assert torch.equal(a.model_.factors, b.model_.factors)


def test_the_line_search_is_the_exact_worst_point_of_the_segment():
    """Against a grid of 401 steps: never beaten, and matched to the grid's resolution.
    At eps = 0.5 the full step overshoots on many rows."""
    X, y = planted_problem(n_rows=600)
    model = FMClassifier(n_factors=3, **FAST).fit(X, y)
    make = model.make_attack
    clean, worst = line_search_scores(model.model_, X, y, make, 0.5, logistic)
    grid = np.stack(
        [
            attacked_scores(model.model_, X, y, make(a), logistic)[1]
            for a in np.linspace(0, 0.5, 401)
        ]
    )
    lowest = (y * grid).min(0)
    assert np.all(y * worst <= lowest + 1e-5)
    assert np.all(y * worst >= lowest - 1e-3)
    full = grid[-1]
    assert np.mean(y * worst < y * full - 1e-3) > 0.05  # the full step overshoots


@pytest.mark.parametrize("loss_fn", [hinge, logistic, squared], ids=lambda f: f.__name__)
def test_the_strong_attack_is_never_weaker_than_the_single_step_or_the_clean_row(loss_fn):
    X, y = planted_problem(n_rows=600)
    model = FMClassifier(n_factors=3, **{**FAST, "loss": loss_fn.__name__}, beta=0.5, eps=0.05)
    model.fit(X, y)
    make = model.make_attack
    clean, single = strongest_scores(model.model_, X, y, make, 0.05, loss_fn, "single")
    _, line = strongest_scores(model.model_, X, y, make, 0.05, loss_fn, "line")
    _, strong = strongest_scores(model.model_, X, y, make, 0.05, loss_fn)
    for attacked in (line, strong):
        assert np.all(y * attacked <= y * clean + 1e-6)
        assert np.all(y * attacked <= y * single + 1e-6)
    assert np.all(y * strong <= y * line + 1e-6)
    wrong = lambda scores: np.mean(np.where(scores > 0, 1, -1) != y)  # noqa: E731
    assert wrong(strong) >= wrong(line) >= max(wrong(single), wrong(clean))
    assert wrong(strong) > wrong(clean)


def test_the_line_search_objective_trains_on_the_exact_worst_point():
    """Its adversarial term is the loss at x + a* e with a* the worst step of [0, eps]:
    checked on dense rows (e the step at budget 1), and never weaker than the step."""
    from fmadv.sparse import SparseBatch
    from fmadv.training.objectives import LineSearchObjective

    X, y = planted_problem(n_rows=300)
    model = FMClassifier(n_factors=3, **FAST).fit(X, y).model_.double()
    batch = SparseBatch(X, dtype=torch.float64)
    labels = torch.from_numpy(y).double()
    objective = LineSearchObjective(FGSM(0.4), beta=1.0)
    value = objective(model, batch, labels, logistic)
    dense = batch.to_dense()
    step = FGSM(1.0).perturb(dense, lambda rows: logistic(model.forward_dense(rows), labels))
    grid = torch.linspace(0, 0.4, 801, dtype=torch.float64)
    with torch.no_grad():
        margins = torch.stack(
            [labels * model.forward_dense(dense + a * (step - dense)) for a in grid]
        )
        worst = (labels * margins.min(0).values).detach()  # the worst score, per row
        clean = logistic(model(batch), labels).mean()
    expected = clean + logistic(worst, labels).mean()
    torch.testing.assert_close(value.detach(), expected, atol=1e-4, rtol=1e-4)
    full = logistic(model.forward_dense(dense + 0.4 * (step - dense)), labels).mean()
    assert value.detach() >= clean + full.detach() - 1e-9
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_the_strong_flip_curve_never_falls_with_the_budget():
    """A perturbation within a small ball lies in every larger one: the curve keeps each
    row's worst point over the budgets up to eps, even where PGD's long steps overshoot."""
    from fmadv.evaluation.robustness import flip_curve

    X, y = planted_problem(n_rows=400)
    model = FMClassifier(n_factors=3, **FAST, beta=0.5, eps=0.05).fit(X, y)
    budgets = [0.3, 0.0, 0.01, 0.1]
    curve = flip_curve(model.model_, X, y, model.make_attack, budgets, hinge)
    assert [point["eps"] for point in curve] == budgets
    errors = {point["eps"]: point["adversarial_error"] for point in curve}
    assert errors[0.0] <= errors[0.01] <= errors[0.1] <= errors[0.3]
