"""What every registered input attack promises, on an MLP classifier and on the FM.

Each input attack of :data:`fmadv.attacks.ATTACKS` (and the non-default norms of those
that have one) runs on both models, in the unit box and in a mean-subtracted box given as
tensors: the perturbation stays within its budget and the result within the box, a zero
budget changes nothing, the loss does not fall and neither does the error rate.

PGD returns, per row, the best point it evaluated (the clean row included), so its loss
is checked row by row; the single-step attacks follow a linearisation and are checked on
the mean over the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from fmadv.attacks import APR, ATTACKS, Attack, Target, attacked_forward, input_attacks
from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier
from fmadv.losses import cross_entropy, hinge, logistic
from fmadv.sparse import SparseBatch
from fmadv.threat import BOXES
from tests.fm_helpers import planted_problem, random_fm, random_rows

ALPHA = {"mlp": 0.05, "fm": 0.05}
# Options beyond the registry defaults: every norm an attack offers is tested.
INPUT_ATTACKS = input_attacks()
VARIANTS = [(name, {}) for name in INPUT_ATTACKS] + [
    ("pgd", {"norm": "l2"}),
    ("minimal-step", {"norm": "linf"}),
    ("minimal-step", {"norm": "l1"}),
]
SINGLE_STEP = {"fgsm", "l2", "minimal-step"}


pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Problem:
    """A model's inputs, its box, and the loss / outputs / labels an attack is given."""

    x: torch.Tensor
    bounds: tuple[torch.Tensor | float, torch.Tensor | float]
    loss_fn: object
    outputs_fn: object
    labels: torch.Tensor  # class indices, for outputs_fn
    model: nn.Module
    correct: object  # x -> bool per row


def mlp_problem(box: str) -> Problem:
    generator = torch.Generator().manual_seed(0)
    model = random_mlp(generator)
    raw = torch.rand(64, 12, generator=generator)
    labels = model(raw).argmax(1)
    # A quarter of the labels disagree with the model, so that clean accuracy is below 1
    # and misclassified rows are exercised too.
    flip = torch.arange(64) % 4 == 0
    labels = torch.where(flip, (labels + 1) % 4, labels)
    x, bounds = _boxed(raw, box)
    offset = raw - x  # the model sees raw pixels whatever the box's origin

    def loss_fn(rows):
        return nn.functional.cross_entropy(model(rows + offset), labels, reduction="none")

    return Problem(
        x=x,
        bounds=bounds,
        loss_fn=loss_fn,
        outputs_fn=lambda rows: model(rows + offset).softmax(1),
        labels=labels,
        correct=lambda rows: model(rows + offset).argmax(1) == labels,
        model=model,
    )


def random_mlp(generator: torch.Generator, sizes=(12, 24, 4)) -> nn.Module:
    """A frozen tanh MLP whose weights come from ``generator`` (not the global seed)."""
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.Tanh()]
    model = nn.Sequential(*layers[:-1]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) / p.shape[-1] ** 0.5 * 2)
            p.requires_grad_(False)
    return model


def fm_problem(box: str) -> Problem:
    generator = torch.Generator().manual_seed(1)
    model = random_fm(30, 4, seed=1, scale=0.3)
    for p in model.parameters():
        p.requires_grad_(False)
    raw = (torch.rand(64, 30, generator=generator) < 0.2).float()
    signs = torch.where(torch.rand(64, generator=generator) < 0.5, -1.0, 1.0)
    x, bounds = _boxed(raw, box)
    offset = raw - x

    def scores(rows):
        return model.forward_dense(rows + offset)

    return Problem(
        x=x,
        bounds=bounds,
        loss_fn=lambda rows: hinge(scores(rows), signs),
        outputs_fn=lambda rows: torch.stack([-scores(rows), scores(rows)], 1),
        labels=((signs + 1) / 2).long(),
        correct=lambda rows: scores(rows) * signs > 0,
        model=model,
    )


def _boxed(raw: torch.Tensor, box: str):
    """Inputs and box: [0, 1] as floats, or centred by the feature means as tensors."""
    if box == "unit":
        return raw, (0.0, 1.0)
    mean = raw.mean(0)
    return raw - mean, (-mean, 1 - mean)


PROBLEMS = {"mlp": mlp_problem, "fm": fm_problem}


def make(name: str, options: dict, eps: float, support: str = "all") -> Attack:
    return ATTACKS[name](eps=eps, support=support, **options)


def run(attack: Attack, problem: Problem, x: torch.Tensor | None = None) -> torch.Tensor:
    target = Target(problem.loss_fn, problem.outputs_fn, problem.labels)
    return attack.perturb(problem.x if x is None else x, target, problem.bounds)


def budget_norm(name: str, attack: Attack) -> str:
    return attack.threat.norm


def row_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return {"linf": flat.abs().amax(1), "l2": flat.norm(dim=1), "l1": flat.abs().sum(1)}[norm]


variant_ids = [name + "".join(f"-{v}" for v in options.values()) for name, options in VARIANTS]
cases = pytest.mark.parametrize("name, options", VARIANTS, ids=variant_ids)
models = pytest.mark.parametrize("model", ["mlp", "fm"])
boxes = pytest.mark.parametrize("box", ["unit", "centred"])
supports = pytest.mark.parametrize("support", ["all", "active"])


def test_every_registered_attack_is_covered():
    embedding_attacks = set(ATTACKS) - set(INPUT_ATTACKS)
    assert embedding_attacks == {"apr"}
    assert {name for name, _ in VARIANTS} | embedding_attacks == set(ATTACKS)


def test_an_embedding_attack_needs_a_model_with_embeddings():
    problem = mlp_problem("unit")
    with pytest.raises(ConfigError, match="embeddings"):
        attacked_forward(problem.model, problem.x, problem.labels, cross_entropy, APR(0.1))


@cases
@models
@boxes
@supports
def test_budget_and_box(name, options, model, box, support):
    problem = PROBLEMS[model](box)
    attack = make(name, options, ALPHA[model], support)
    x_adv = run(attack, problem)
    assert x_adv.shape == problem.x.shape
    assert torch.isfinite(x_adv).all()
    norms = row_norms(x_adv - problem.x, budget_norm(name, attack))
    assert (norms <= ALPHA[model] * (1 + 1e-5) + 1e-6).all(), norms.max()
    low, high = (torch.as_tensor(b, dtype=x_adv.dtype) for b in problem.bounds)
    assert (x_adv >= low - 1e-6).all() and (x_adv <= high + 1e-6).all()
    if support == "active":
        assert torch.equal(x_adv[problem.x == 0], problem.x[problem.x == 0])
    assert (x_adv != problem.x).any(), "the attack moved nothing"


@cases
@models
@boxes
def test_box_conventions(name, options, model, box):
    # "none": the stated norm reaches the model, in or out of the box; "clip": inside,
    # shorter; "project": inside, and a single step keeps the stated norm (the box leaves
    # room for 0.05 on every row here, except along the one coordinate of an L1 step).
    problem = PROBLEMS[model](box)
    eps = ALPHA[model]
    moved = {}
    for convention in BOXES:
        attack = make(name, {**options, "box": convention}, eps)
        assert attack.threat.box == convention
        moved[convention] = run(attack, problem) - problem.x
    norm = budget_norm(name, make(name, options, eps))
    sizes = {convention: row_norms(delta, norm) for convention, delta in moved.items()}
    moving = sizes["none"] > 0
    assert moving.sum() > len(moving) // 4
    for convention in ("clip", "project"):
        low, high = (torch.as_tensor(b) for b in problem.bounds)
        x_adv = problem.x + moved[convention]
        assert (x_adv >= low - 1e-6).all() and (x_adv <= high + 1e-6).all()
    if name in SINGLE_STEP:
        full = torch.full_like(sizes["none"][moving], eps)
        torch.testing.assert_close(sizes["none"][moving], full)
        if norm != "l1":
            torch.testing.assert_close(sizes["project"][moving], full)
        assert (sizes["clip"] <= sizes["project"] + 1e-6).all()
    assert all((size <= eps * (1 + 1e-5) + 1e-6).all() for size in sizes.values())


@cases
@models
@boxes
def test_zero_budget_changes_nothing(name, options, model, box):
    problem = PROBLEMS[model](box)
    assert torch.equal(run(make(name, options, 0.0), problem), problem.x)


@cases
@models
@boxes
def test_loss_and_error_do_not_improve(name, options, model, box):
    problem = PROBLEMS[model](box)
    x_adv = run(make(name, options, ALPHA[model]), problem)
    with torch.no_grad():
        clean, attacked = problem.loss_fn(problem.x), problem.loss_fn(x_adv)
        if name in SINGLE_STEP:
            assert attacked.mean() > clean.mean()
        else:
            assert (attacked >= clean - 1e-6).all()
            assert attacked.mean() > clean.mean()
        assert problem.correct(x_adv).sum() <= problem.correct(problem.x).sum()


@cases
def test_deterministic(name, options):
    problem = mlp_problem("centred")
    attack = make(name, options, ALPHA["mlp"])
    assert torch.equal(run(attack, problem), run(attack, problem))


# -- every attack through the core on the FM's sparse rows, and in FM training ----------


def sparse_fm_problem():
    model = random_fm(40, 4, seed=2, scale=0.4).double()
    rows = random_rows(48, 40, active=5, seed=2)
    labels = torch.from_numpy(np.random.default_rng(2).choice([-1.0, 1.0], 48))
    return model, SparseBatch(rows, dtype=torch.float64), labels


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_attacks_an_fm_through_the_core(name):
    model, batch, labels = sparse_fm_problem()
    attack = ATTACKS[name](eps=0.1)
    with torch.no_grad():
        adversarial, clean = attacked_forward(
            model, batch, labels, logistic, attack, keep_clean=True
        )
    assert torch.isfinite(adversarial).all()
    assert logistic(adversarial, labels).mean() > logistic(clean, labels).mean()
    ball = attack.single_step()
    if ball is not None and ball.space == "inputs":
        # The closed form and the generic attack on dense rows are the same perturbation.
        x_adv = attack.perturb(
            batch.to_dense(),
            lambda rows: logistic(model.forward_dense(rows), labels),
        )
        torch.testing.assert_close(adversarial, model.forward_dense(x_adv).detach())


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_trains_an_fm(name):
    X, y = planted_problem(n_rows=600)
    options = {"n_factors": 3, "epochs": 2, "batch_size": 200, "lr": 0.05}
    plain = FMClassifier(**options).fit(X, y)
    robust = FMClassifier(beta=0.5, attack=name, eps=0.05, **options).fit(X, y)
    assert all(torch.isfinite(p).all() for p in robust.model_.parameters())
    assert not torch.equal(plain.model_.factors, robust.model_.factors)
    assert np.isfinite(robust.history_.records[-1]["train_loss"])
