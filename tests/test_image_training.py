from dataclasses import replace

import numpy as np
import pytest
import torch

from fmadv.attacks import L2Step
from fmadv.attacks.core import perturb_dense
from fmadv.data.image_prep import PreparedImages
from fmadv.errors import ConfigError, ModelFileError
from fmadv.estimators.image import (
    METHODS,
    ImageClassifier,
    ImageTrainConfig,
    image_attack,
    image_loop,
    train_image_classifier,
)
from fmadv.losses import cross_entropy
from fmadv.models.image import MLP
from fmadv.training.objectives import (
    AdversarialObjective,
    RepresentationAdversarialObjective,
    VirtualAdversarialObjective,
)


def tiny_images(n=400, seed=0) -> PreparedImages:
    """8x8 one-channel images whose class is which quadrant is bright (learnable)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.uniform(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for label, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        x[y == label, :, r : r + 4, c : c + 4] += 0.6
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    part = n * 3 // 4
    low, high = torch.zeros(1, 8, 8), torch.ones(1, 8, 8)
    return PreparedImages(tx[:part], ty[:part], tx[part:], ty[part:], tx[part:], ty[part:],
                          low, high, 255, None, 4, (1, 8, 8), name="tiny")  # fmt: skip


FAST_LOOP = image_loop(epochs=2, batch_size=50, lr=0.05)
FAST = {"model": "mlp", "eps": 0.5, "loop": FAST_LOOP}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_learns(method):
    data = tiny_images()
    clf = train_image_classifier(data, ImageTrainConfig(method=method, **FAST))
    assert len(clf.history.records) == 2
    assert all(np.isfinite(r["train_loss"]) for r in clf.history.records)
    assert clf.history.records[-1]["valid_accuracy"] > 0.6  # chance is 0.25


def test_objective_values_by_hand():
    torch.manual_seed(0)
    model = MLP(in_features=64, hidden=(16,), n_classes=4)
    data = tiny_images(80)
    x, y = data.train_x[:20], data.train_y[:20]
    attack = L2Step(0.5)
    x_adv = attack.perturb(x, lambda z: cross_entropy(model(z), y), data.bounds)
    clean = cross_entropy(model(x), y).mean()
    adv = cross_entropy(model(x_adv), y).mean()
    goodfellow = AdversarialObjective(attack, beta=0.7, clean_weight=0.3, bounds=data.bounds)
    torch.testing.assert_close(goodfellow(model, x, y, cross_entropy), 0.3 * clean + 0.7 * adv)
    lwa = AdversarialObjective(attack, adversarial_only=True, bounds=data.bounds)
    torch.testing.assert_close(lwa(model, x, y, cross_entropy), adv)
    assert adv > clean


def test_representation_attack_trains_the_layers_before_the_split():
    torch.manual_seed(0)
    model = MLP(in_features=64, hidden=(16, 16), n_classes=4)
    data = tiny_images(40)
    objective = RepresentationAdversarialObjective(L2Step(1.0), split=1)
    loss = objective(model, data.train_x[:20], data.train_y[:20], cross_entropy)
    loss.backward()
    first = model.layers[0]
    weights = [p for p in first.parameters() if p.dim() == 2]
    assert weights and weights[0].grad.abs().sum() > 0
    clean = cross_entropy(model(data.train_x[:20]), data.train_y[:20]).mean()
    assert loss > clean  # the perturbed representation costs more


def test_vat_without_a_step_is_cross_entropy_and_labels_are_optional():
    torch.manual_seed(0)
    model = MLP(in_features=64, hidden=(16,), n_classes=4)
    data = tiny_images(40)
    x, y = data.train_x[:20], data.train_y[:20]
    no_step = VirtualAdversarialObjective(eps=0.0)(model, x, y, cross_entropy)
    torch.testing.assert_close(no_step, cross_entropy(model(x), y).mean(), rtol=1e-5, atol=1e-6)
    unlabelled = torch.full_like(y, -1)
    smoothness = VirtualAdversarialObjective(eps=1.0)(model, x, unlabelled, cross_entropy)
    assert torch.isfinite(smoothness) and smoothness > 0
    with pytest.raises(ConfigError):
        VirtualAdversarialObjective(eps=-1.0)


def test_semi_supervised_vat_and_its_checks():
    data = tiny_images()
    clf = train_image_classifier(data, ImageTrainConfig(method="vat", labeled=40, **FAST))
    assert clf.history.records[-1]["valid_accuracy"] > 0.5
    with pytest.raises(ConfigError, match="needs method 'vat'"):
        train_image_classifier(data, ImageTrainConfig(method="lwa", labeled=40, **FAST))


def test_save_load_and_determinism(tmp_path):
    data = tiny_images()
    config = ImageTrainConfig(method="goodfellow", **FAST)
    a = train_image_classifier(data, config)
    b = train_image_classifier(data, config)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    a.save(tmp_path / "m.safetensors")
    loaded = ImageClassifier.load(tmp_path / "m.safetensors")
    torch.testing.assert_close(loaded.model(data.test_x), a.model(data.test_x))
    assert loaded.config == config and loaded.shape == (1, 8, 8)
    from fmadv.io import save_tensors

    save_tensors(tmp_path / "fm.safetensors", {"x": torch.zeros(1)}, {})
    with pytest.raises(ModelFileError, match="expected 'fmadv.image'"):
        ImageClassifier.load(tmp_path / "fm.safetensors")


def test_earlier_model_files_still_load(tmp_path):
    """Earlier files hold one flat config: the loop's settings beside the image ones, and
    the budgets named ``budget`` and ``rep_budget``."""
    from fmadv.io import load_tensors, save_tensors

    loop = image_loop(epochs=2, batch_size=50, lr=0.05, seed=3)
    config = ImageTrainConfig(method="lwa", eps=0.5, rep_eps=2.0, loop=loop)
    data = tiny_images()
    trained = train_image_classifier(data, config)
    trained.save(tmp_path / "new.safetensors")
    tensors, header = load_tensors(tmp_path / "new.safetensors", kind="fmadv.image")
    flat = {
        "model": "mlp", "method": "lwa", "epochs": 2, "batch_size": 50, "lr": 0.05,
        "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0, "dropout": 0.5,
        "attack": "l2", "budget": 0.5, "goodfellow_weight": 0.5, "split": None,
        "rep_budget": 2.0, "vat_eps": 2.0, "labeled": None, "patience": 0, "seed": 3,
        "device": "auto",
    }  # fmt: skip
    metadata = {k: v for k, v in header.items() if not k.startswith("format")}
    save_tensors(tmp_path / "old.safetensors", tensors, {**metadata, "config": flat}, "fmadv.image")
    loaded = ImageClassifier.load(tmp_path / "old.safetensors")
    assert loaded.config == replace(config, box="clip")  # their attacks clipped
    torch.testing.assert_close(loaded.model(data.test_x), trained.model(data.test_x))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "magic"}, "unknown method"),
        ({"goodfellow_weight": 1.5}, "goodfellow_weight"),
        ({"eps": -1.0}, "eps must be"),
        ({"loop": image_loop(lr=0.0)}, "lr must be"),
    ],
)
def test_bad_image_options(options, message):
    with pytest.raises(ConfigError, match=message):
        ImageTrainConfig(**{**FAST, **options}).validate()


def test_image_budgets_are_l2_norms_and_the_box_convention_says_what_reaches_the_model():
    fgsm = image_attack("fgsm", 1.5, 784)
    assert (fgsm.eps, fgsm.measure, fgsm.threat.norm, fgsm.box) == (1.5, "l2", "l2", "project")
    assert image_attack("l2", 1.5, 784).eps == 1.5
    assert image_attack("pgd", 1.5, 784, norm="linf").eps == pytest.approx(1.5 / 28)
    # Pixels near the walls: clipping shortens the step, the projection keeps its norm.
    torch.manual_seed(0)
    x = torch.rand(30, 1, 8, 8).round() * 0.9 + 0.05
    model = MLP(in_features=64, hidden=(16,), n_classes=4)
    y = torch.randint(0, 4, (30,))

    def norms(name, box):
        attack = image_attack(name, 1.5, 64, box)
        x_adv = perturb_dense(attack, model, x, y, cross_entropy, (0.0, 1.0))
        inside = bool(((x_adv >= 0) & (x_adv <= 1)).all())
        return (x_adv - x).flatten(1).norm(dim=1), inside

    for name in ("fgsm", "l2", "minimal-step"):
        (clipped, clip_inside), (projected, project_inside) = (
            norms(name, "clip"),
            norms(name, "project"),
        )
        unclipped, none_inside = norms(name, "none")
        assert clip_inside and project_inside and not none_inside
        torch.testing.assert_close(unclipped, torch.full_like(unclipped, 1.5))
        torch.testing.assert_close(projected, torch.full_like(projected, 1.5))
        assert (clipped < 1.5 - 1e-3).all()
