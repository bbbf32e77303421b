"""Models used by the lessons: the first source document's three (corrected so they run:
``ComplexModel``'s ``fc1`` takes 16*30*30 features, since a 3x3 convolution turns 32x32 into
30x30, and ``torch.flatten`` replaces a ``view`` that would silently reshape a wrong batch),
the second document's ``Net``, and two small CNNs.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SimpleModel", "SimpleModelDifferent", "ComplexModel", "ModifiedComplexModel", "Net"]
__all__ += ["SmallCNN", "RenamedCNN", "conv_output_size"]


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Spatial size after a convolution (the formula in ``torch.nn.Conv2d``'s docs)."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


class SimpleModel(nn.Module):
    """Two linear layers, 10 -> ``hidden`` -> 2 (the document's first model, hidden=5)."""

    def __init__(self, hidden: int = 5):
        super().__init__()
        self.fc1 = nn.Linear(10, hidden)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class SimpleModelDifferent(SimpleModel):
    """The document's "different architecture": the same layers with 6 hidden units."""

    def __init__(self):
        super().__init__(hidden=6)


class ComplexModel(nn.Module):
    """Conv(3->16, 3x3) + ReLU + two linear layers, for 3x32x32 inputs (``fc1``: 16*30*30 in)."""

    input_size = 32

    def __init__(self, hidden: int = 10, num_classes: int = 2):
        super().__init__()
        side = conv_output_size(self.input_size, kernel_size=3)  # 30
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3)
        self.relu1 = nn.ReLU()
        self.fc1 = nn.Linear(16 * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


class ModifiedComplexModel(ComplexModel):
    """The document's modified model: ``fc1`` has 12 outputs and ``fc2`` 12 inputs."""

    def __init__(self):
        super().__init__(hidden=12)


class Net(nn.Module):
    """The production post's skeleton: ``Sequential(Linear(32, 64), ReLU, Linear(64, 10))``."""

    def __init__(self, in_features: int = 32, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """A tiny CNN with BatchNorm and Dropout, for lessons about buffers and eval mode.

    Input: ``(N, in_channels, 16, 16)``. It has a *persistent* buffer (BatchNorm's running
    statistics, saved in the state_dict) and a *non-persistent* one, ``input_scale`` (kept on
    the module, moved with ``.to()``, but not saved).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 4, dropout: float = 0.5):
        super().__init__()
        self.features = _cnn_features(in_channels)
        self.classifier = _cnn_head(num_classes, dropout)
        self.register_buffer("input_scale", torch.tensor(1.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x * self.input_scale))


class RenamedCNN(nn.Module):
    """``SmallCNN`` after a refactor that renamed ``features`` to ``backbone`` and
    ``classifier`` to ``head``: the same layers and shapes, other state_dict keys."""

    def __init__(self, in_channels: int = 1, num_classes: int = 4, dropout: float = 0.5):
        super().__init__()
        self.backbone = _cnn_features(in_channels)
        self.head = _cnn_head(num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _cnn_features(in_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, kernel_size=3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 16 -> 8
        nn.Conv2d(8, 16, kernel_size=3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8 -> 4
    )


def _cnn_head(num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(16 * 4 * 4, num_classes))
