"""Image classifiers driven by the same attack and training core as the FM.

Two networks from the adversarial-training literature:

- :class:`LeNet`: the convolutional network of the "Harnessing adversarial examples"
  report (MatConvNet's MNIST LeNet), with the kernel of its third convolution derived
  from the input size so that 32x32 CIFAR-10 images work too.
- :class:`MLP`: the fully connected ReLU network of Huang et al.'s Table 1
  ("Learning with a strong adversary", 2015).

Both return logits; the softmax belongs to the loss (cross-entropy) or to whoever
reads probabilities. Both keep their layers as an ``nn.Sequential`` of *blocks*, so a
training objective can perturb an intermediate representation: ``front(x, s)`` runs
blocks ``[0, s)``, ``back(h, s)`` runs ``[s, n_blocks)``, and
``back(front(x, s), s) == forward(x)`` for every ``s`` in ``0..n_blocks``. The default
split is the start of the classifier block, so ``front(x)`` is the penultimate
representation.

Initialisation is deterministic: the weights are drawn from ``generator`` when one is
given, and otherwise from torch's global generator, so ``torch.manual_seed`` before
construction fixes them too.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fmadv.errors import ConfigError
from fmadv.threat import Attackable

__all__ = ["IMAGE_MODELS", "ImageModel", "LeNet", "MLP", "make_image_model"]


class ImageModel(Attackable, nn.Module):
    """Base class: a stack of blocks with a movable representation split.

    Subclasses fill :attr:`layers` (one ``nn.Sequential`` per block) and set
    :attr:`default_split`, the index of the classifier block.
    """

    layers: nn.Sequential
    default_split: int

    @property
    def n_blocks(self) -> int:
        """Number of blocks in :attr:`layers`."""
        return len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of images, shape (batch, n_classes)."""
        return self.layers(self._check_input(x))

    def front(self, x: torch.Tensor, split: int | None = None) -> torch.Tensor:
        """Run blocks ``[0, split)``: the representation at ``split``.

        Parameters
        ----------
        x
            A batch of images.
        split
            Block index in ``0..n_blocks``; None means :attr:`default_split`, the start
            of the classifier block (the penultimate representation).
        """
        split = self._resolve_split(split)
        if split == 0:
            return x
        return self.layers[:split](self._check_input(x))

    def back(self, h: torch.Tensor, split: int | None = None) -> torch.Tensor:
        """Run blocks ``[split, n_blocks)`` on a representation ``h = front(x, split)``.

        Parameters
        ----------
        h
            The representation at ``split``.
        split
            The same split as given to :meth:`front`; None means :attr:`default_split`.
        """
        split = self._resolve_split(split)
        if split == 0:
            h = self._check_input(h)
        return self.layers[split:](h)

    def _resolve_split(self, split: int | None) -> int:
        if split is None:
            return self.default_split
        if isinstance(split, bool) or not 0 <= split <= self.n_blocks:
            raise ConfigError(f"split must be in 0..{self.n_blocks}, got {split!r}")
        return int(split)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _init_parameters(self, generator: torch.Generator | None, init_std: float | None) -> None:
        """Draw every weight and bias, from ``generator`` (or the global generator).

        With ``init_std`` None the scheme is torch's default for ``nn.Linear`` and
        ``nn.Conv2d`` (weights and biases uniform in +-1/sqrt(fan_in)); drawing it here
        rather than relying on the constructors is what lets a private generator fix it.
        With ``init_std`` set, weights are N(0, init_std^2) and biases zero, as in
        MatConvNet's examples (init_std = 0.01).
        """
        with torch.no_grad():
            for module in self.modules():
                if not isinstance(module, (nn.Linear, nn.Conv2d)):
                    continue
                weight, bias = module.weight, module.bias
                if init_std is None:
                    bound = 1.0 / math.sqrt(weight[0].numel())
                    weight.uniform_(-bound, bound, generator=generator)
                    if bias is not None:
                        bias.uniform_(-bound, bound, generator=generator)
                else:
                    weight.normal_(0.0, init_std, generator=generator)
                    if bias is not None:
                        bias.zero_()


def _check_init_std(init_std: float | None) -> float | None:
    if init_std is not None and not init_std > 0:
        raise ConfigError(f"init_std must be > 0 (or None for torch's default), got {init_std}")
    return init_std


def lenet_kernel(input_size: int) -> int:
    """Kernel of LeNet's third convolution, so that its output map is 1x1.

    The map shrinks as ``n -> n - 4`` (5x5 conv), ``-> floor(n / 2)`` (pool),
    ``-> n - 4`` (5x5 conv), ``-> floor(n / 2)`` (pool); the third kernel takes what is
    left: 28 -> 24 -> 12 -> 8 -> 4 gives 4 (MNIST), 32 -> 28 -> 14 -> 10 -> 5 gives 5
    (CIFAR-10).

    Raises
    ------
    ConfigError
        ``input_size`` below 16, where nothing is left for the third convolution.
    """
    if isinstance(input_size, bool) or input_size < 16:
        raise ConfigError(f"LeNet needs input_size >= 16, got {input_size!r}")
    size = (input_size - 4) // 2
    return (size - 4) // 2


class LeNet(ImageModel):
    """LeNet of the "Harnessing adversarial examples" report (Goodfellow et al., 2015).

    Blocks (C = ``in_channels``, K = :func:`lenet_kernel` of ``input_size``):

    0. conv 5x5, C -> 20, max-pool 2x2
    1. conv 5x5, 20 -> 50, max-pool 2x2
    2. conv KxK, 50 -> 500, ReLU (a 1x1 map: the 500-d penultimate representation)
    3. conv 1x1, 500 -> ``n_classes``, flattened to logits (the classifier)

    As in MatConvNet's MNIST LeNet, which that report trains, the first two
    convolutions have no ReLU: max-pooling is their only non-linearity.

    Parameters
    ----------
    in_channels
        Image channels: 1 for MNIST, 3 for CIFAR-10.
    n_classes
        Number of classes (logits).
    input_size
        Height and width of the square input images (28 for MNIST, 32 for CIFAR-10).
    init_std
        None for torch's default initialisation; otherwise the standard deviation of
        normal weights, with zero biases (MatConvNet uses 0.01).
    generator
        Random generator of the initialisation; None draws from torch's global generator
        (seeded by ``torch.manual_seed``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        input_size: int = 28,
        init_std: float | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if in_channels < 1 or n_classes < 2:
            raise ConfigError(
                f"need in_channels >= 1 and n_classes >= 2, got {in_channels} and {n_classes}"
            )
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.input_size = input_size
        self.kernel = lenet_kernel(input_size)
        self.layers = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(20, 50, 5), nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(50, 500, self.kernel), nn.ReLU()),
            nn.Sequential(nn.Conv2d(500, n_classes, 1), nn.Flatten()),
        )
        self.default_split = 3
        self._init_parameters(generator, _check_init_std(init_std))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        # A wrong image size would not fail: the last map would just be larger than 1x1
        # and the flattened "logits" silently wider.
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"LeNet expects images of shape (batch, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}"
            )
        return x


class MLP(ImageModel):
    """Fully connected ReLU network of Huang et al.'s Table 1 (784-1000-1000-10 on MNIST).

    Blocks: one per hidden layer (linear, ReLU, then dropout when ``dropout`` > 0; the
    first block also flattens the images), then the linear classifier. Dropout modules
    exist only when ``dropout`` > 0, and act only in training mode.

    Parameters
    ----------
    in_features
        Input size, C * H * W (784 for MNIST, 3072 for CIFAR-10).
    hidden
        Widths of the hidden layers.
    n_classes
        Number of classes (logits).
    dropout
        Dropout probability after each hidden layer, in [0, 1).
    init_std
        None for torch's default initialisation; otherwise the standard deviation of
        normal weights, with zero biases.
    generator
        Random generator of the initialisation; None draws from torch's global generator
        (seeded by ``torch.manual_seed``).
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (1000, 1000),
        n_classes: int = 10,
        dropout: float = 0.0,
        init_std: float | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if in_features < 1 or n_classes < 2 or any(h < 1 for h in hidden):
            raise ConfigError(
                f"need in_features >= 1, hidden widths >= 1 and n_classes >= 2, got "
                f"{in_features}, {hidden} and {n_classes}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.in_features = in_features
        self.hidden = hidden
        self.n_classes = n_classes
        self.dropout = float(dropout)
        blocks: list[nn.Module] = []
        width = in_features
        for i, out in enumerate(hidden):
            parts: list[nn.Module] = [nn.Flatten()] if i == 0 else []
            parts += [nn.Linear(width, out), nn.ReLU()]
            if dropout > 0:
                parts.append(nn.Dropout(dropout))
            blocks.append(nn.Sequential(*parts))
            width = out
        head: list[nn.Module] = [nn.Flatten()] if not hidden else []
        blocks.append(nn.Sequential(*head, nn.Linear(width, n_classes)))
        self.layers = nn.Sequential(*blocks)
        self.default_split = len(hidden)
        self._init_parameters(generator, _check_init_std(init_std))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x[0].numel() != self.in_features:
            raise ValueError(
                f"MLP expects a batch of inputs with {self.in_features} values each, "
                f"got shape {tuple(x.shape)}"
            )
        return x


IMAGE_MODELS: dict[str, type[ImageModel]] = {"lenet": LeNet, "mlp": MLP}


def make_image_model(
    name: str,
    in_channels: int = 1,
    input_size: int = 28,
    n_classes: int = 10,
    **options: Any,
) -> ImageModel:
    """Build the image model called ``name`` for images of a given shape.

    Parameters
    ----------
    name
        A key of :data:`IMAGE_MODELS`: ``"lenet"`` or ``"mlp"``.
    in_channels, input_size
        Image shape (in_channels, input_size, input_size); the MLP takes their product
        as ``in_features``.
    n_classes
        Number of classes.
    **options
        Further keyword arguments of the model (``init_std``, ``generator``; for the
        MLP also ``hidden`` and ``dropout``).

    Raises
    ------
    ConfigError
        Unknown model name, or an option the model does not take.
    """
    if name not in IMAGE_MODELS:
        raise ConfigError(f"unknown image model {name!r}; expected one of {sorted(IMAGE_MODELS)}")
    cls = IMAGE_MODELS[name]
    # The shape arguments come from the data; only the remaining ones are options.
    shape_args = {"in_channels", "input_size", "in_features", "n_classes"}
    accepted = [p for p in inspect.signature(cls).parameters if p not in shape_args]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for image model {name!r}; "
            f"accepted: {', '.join(accepted)}"
        )
    if cls is LeNet:
        return LeNet(in_channels, n_classes, input_size, **options)
    return cls(in_features=in_channels * input_size * input_size, n_classes=n_classes, **options)
