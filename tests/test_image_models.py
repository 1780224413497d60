"""LeNet and MLP: shapes, parameter counts, the front/back split, dropout, determinism."""

from __future__ import annotations

import pytest
import torch

from fmadv.errors import ConfigError
from fmadv.models.image import IMAGE_MODELS, MLP, LeNet, lenet_kernel, make_image_model

# (in_channels, input_size) of MNIST and CIFAR-10.
SHAPES = {"mnist": (1, 28), "cifar10": (3, 32)}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def images(in_channels: int, size: int, n: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, in_channels, size, size, generator=g)


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
@pytest.mark.parametrize("data", sorted(SHAPES))
def test_logits_shape(name, data):
    channels, size = SHAPES[data]
    model = make_image_model(name, channels, size, n_classes=10).eval()
    out = model(images(channels, size))
    assert out.shape == (5, 10)
    assert out.dtype == torch.float32


def test_lenet_kernel_ends_at_one_by_one():
    # 28 -> 24 -> 12 -> 8 -> 4 and 32 -> 28 -> 14 -> 10 -> 5.
    assert lenet_kernel(28) == 4
    assert lenet_kernel(32) == 5
    model = LeNet()
    assert model.front(images(1, 28)).shape == (5, 500, 1, 1)
    with pytest.raises(ConfigError):
        LeNet(input_size=12)


def test_lenet_parameter_counts():
    # MNIST, LeNet(1, 10, 28):
    #   conv1 5x5, 1 -> 20:    1*5*5*20 + 20    =     520
    #   conv2 5x5, 20 -> 50:   20*5*5*50 + 50   =  25,050
    #   conv3 4x4, 50 -> 500:  50*4*4*500 + 500 = 400,500
    #   conv4 1x1, 500 -> 10:  500*10 + 10      =   5,010
    #   total                                   = 431,080
    assert n_params(LeNet(1, 10, 28)) == 431_080
    # CIFAR-10, LeNet(3, 10, 32): conv1 3*5*5*20 + 20 = 1,520; conv3 is 5x5:
    # 50*5*5*500 + 500 = 625,500; total 1,520 + 25,050 + 625,500 + 5,010 = 657,080.
    assert n_params(LeNet(3, 10, 32)) == 657_080


def test_mlp_parameter_counts():
    # 784 -> 1000: 784*1000 + 1000   =   785,000
    # 1000 -> 1000: 1000*1000 + 1000 = 1,001,000
    # 1000 -> 10: 1000*10 + 10       =    10,010
    # total                          = 1,796,010
    assert n_params(MLP()) == 1_796_010
    # CIFAR-10 input: 3072*1000 + 1000 = 3,073,000 in the first layer instead.
    assert n_params(make_image_model("mlp", 3, 32)) == 1_796_010 - 785_000 + 3_073_000
    # Dropout adds no parameters.
    assert n_params(MLP(dropout=0.5)) == 1_796_010


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
def test_front_back_split_identity(name):
    torch.manual_seed(0)
    model = make_image_model(name, 1, 28).eval()
    x = images(1, 28)
    expected = model(x)
    for split in range(model.n_blocks + 1):
        h = model.front(x, split)
        torch.testing.assert_close(model.back(h, split), expected, rtol=0, atol=0)
    # The default split is the start of the classifier: one block remains after it.
    assert model.default_split == model.n_blocks - 1
    torch.testing.assert_close(model.back(model.front(x)), expected, rtol=0, atol=0)
    with pytest.raises(ConfigError):
        model.front(x, model.n_blocks + 1)
    with pytest.raises(ConfigError):
        model.back(x, -1)


def test_representation_sizes():
    x = images(1, 28)
    assert LeNet().front(x).flatten(1).shape == (5, 500)
    assert MLP().front(x).shape == (5, 1000)
    assert MLP(hidden=(300,)).n_blocks == 2


def test_mlp_flattens_and_checks_width():
    model = MLP().eval()
    x = images(1, 28)
    torch.testing.assert_close(model(x), model(x.flatten(1)))
    with pytest.raises(ValueError):
        model(images(3, 32))
    with pytest.raises(ValueError):
        LeNet()(images(1, 32))


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    model = MLP(dropout=0.5)
    x = images(1, 28, n=8)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    # Without dropout there is nothing random in training mode either.
    plain = MLP().train()
    torch.testing.assert_close(plain(x), plain(x), rtol=0, atol=0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
def test_deterministic_init(name):
    def state(model: torch.nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in model.parameters()]

    a = state(make_image_model(name, generator=torch.Generator().manual_seed(3)))
    b = state(make_image_model(name, generator=torch.Generator().manual_seed(3)))
    c = state(make_image_model(name, generator=torch.Generator().manual_seed(4)))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    torch.manual_seed(7)
    d = state(make_image_model(name))
    torch.manual_seed(7)
    e = state(make_image_model(name))
    assert all(torch.equal(p, q) for p, q in zip(d, e, strict=True))


def test_default_init_scale_and_init_std():
    model = LeNet(generator=torch.Generator().manual_seed(0))
    conv3 = model.layers[2][0]
    bound = 1 / (50 * 4 * 4) ** 0.5
    assert conv3.weight.abs().max() <= bound
    assert conv3.weight.abs().max() > 0.9 * bound
    small = LeNet(init_std=0.01, generator=torch.Generator().manual_seed(0))
    assert all(m.bias.abs().max() == 0 for m in small.modules() if isinstance(m, torch.nn.Conv2d))
    assert small.layers[2][0].weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_make_image_model_errors():
    with pytest.raises(ConfigError, match="unknown image model"):
        make_image_model("resnet")
    with pytest.raises(ConfigError, match="unknown option"):
        make_image_model("lenet", dropout=0.5)
    with pytest.raises(ConfigError):
        MLP(dropout=1.0)
    model = make_image_model("mlp", 1, 28, n_classes=3, hidden=(20,), dropout=0.1)
    assert isinstance(model, MLP) and model.hidden == (20,) and model.n_classes == 3


def test_gradients_reach_inputs():
    # The attacks differentiate the loss with respect to the images.
    model = LeNet(3, 10, 32).eval()
    x = images(3, 32).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(5))
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.shape == x.shape and grad.abs().sum() > 0
