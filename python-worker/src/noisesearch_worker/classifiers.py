"""The two Fashion-MNIST classifiers of the default bundle, deliberately of different architectures.

VerifierCNN is used in search (its class logit is the supervised verifier, its penultimate
features the self-supervised verifier's space), like DINO + linear head in the paper.
EvaluatorResNet is never used for selection: it plays Inception's part for FID / IS / accuracy.
Both take the sampler's 1x32x32 tensors in [-1, 1].
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class VerifierCNN(nn.Module):
    """Plain VGG-style CNN: two conv pairs with max-pooling, a 128-d feature layer, a linear head."""

    feature_dim = 128

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.features_fc = nn.Linear(64 * 8 * 8, self.feature_dim)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features_fc(self.conv(x.clamp(-1, 1)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class EvaluatorResNet(nn.Module):
    """Small pre-activation-free ResNet with batch norm and global average pooling (96-d features)."""

    feature_dim = 96

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 24, 3, 1, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.stages = nn.Sequential(_ResBlock(24, 24, 1), _ResBlock(24, 48, 2), _ResBlock(48, 96, 2))
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x.clamp(-1, 1))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


CLASSIFIERS = {"verifier-cnn": VerifierCNN, "evaluator-resnet": EvaluatorResNet}
