"""The character CNN: one architecture for every label set, chosen for accuracy per CPU millisecond.

Three 3x3 stages (28 -> 14 -> 7 -> 3 pixels) with batch norm and two convolutions in each of
the small stages, where a channel costs least; the 28x28 stage is kept thin because it is the
expensive one. v2 added the second 7x7 convolution and widened the 14x14 stage from 64 to 80
channels: 15% slower than v1 at batch 256 on a CPU, for the same test figures but a better
validation score and a smaller gap on canvas drawings (README, "The models"). A model folder
may hold an `Ensemble` of a few CharCNNs trained apart (`python -m ml.ensemble`).
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURE = "charcnn-v2"


def _conv(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class CharCNN(nn.Module):
    """28x28 grayscale in, one logit per class out."""

    def __init__(self, num_classes: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv(1, 32),
            nn.MaxPool2d(2),
            *_conv(32, 80),
            *_conv(80, 80),
            nn.MaxPool2d(2),
            *_conv(80, 128),
            *_conv(128, 128),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 3 * 3, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Ensemble(nn.Module):
    """Several CharCNNs answering as one: the mean of their logits.

    Members trained on different train/validation cuts normalize pixels slightly differently,
    so each member's input is re-expressed in its own normalization (`x * scale + shift`).
    """

    def __init__(self, num_classes: int, members: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(CharCNN(num_classes) for _ in range(members))
        self.register_buffer("input_scale", torch.ones(members))
        self.register_buffer("input_shift", torch.zeros(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [
            member(x * self.input_scale[i] + self.input_shift[i])
            for i, member in enumerate(self.members)
        ]
        return torch.stack(logits).mean(dim=0)
