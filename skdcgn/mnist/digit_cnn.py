"""The CGN paper's small digit CNN: what judges the counterfactual images in its MNIST experiments.

Trained on counterfactuals (evaluation.classifier), it should classify digits by shape, not by colour.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class DigitCNN(nn.Module):
    """BatchNorm on the input, four unpadded convolutions, global average pooling, linear: 67,760 parameters
    for ten classes.

    No padding, as in the CGN code: a 32x32 input shrinks 28 -> 14 (pool) -> 12 -> 5 -> 3 before the average
    pool, and 28x28 works too (24 -> 12 -> 10 -> 4 -> 2); the average pool takes any larger size.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.BatchNorm2d(3),  # standardises whatever colour statistics the training images have
            nn.Conv2d(3, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))
