"""Difficulty-Net: an MLP that maps the class-accuracy vector to per-class difficulties (docs/methods/diffnet.md §2).

Source: Sinha & Ohashi, "Difficulty-Net: Learning to Predict Difficulty for Long-Tailed Recognition",
WACV 2023, arXiv 2209.02960; reference code github.com/hitachi-rd-cv/Difficulty_Net
(``CIFAR-LT/cifar_train_exaugment.py``, ``ImageNet_Places-LT/train_stage1.py``).

    o = DN_phi(a) = sigmoid(W3 relu(W2 relu(W1 a + b1) + b2) + b3),    a in [0, 1]^C,  o in (0, 1)^C

The input is the whole vector of class-wise accuracies, so each class's difficulty is judged relative
to all the others. Forms used by the paper:

* CIFAR: hidden size 128, no biases (so ``DN(0) = 0.5`` for every class);
* ImageNet-LT: 1024 with biases; Places-LT: 512 with biases.

The layers keep PyTorch's default ``nn.Linear`` initialisation; their names ``linear1..3`` match the
reference state dict.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DifficultyNet(nn.Module):
    """``Linear(C->H) -> ReLU -> Linear(H->H) -> ReLU -> Linear(H->C) -> sigmoid``.

    Args:
        num_classes: C, the length of the accuracy vector and of the output.
        hidden: H, the width of both hidden layers.
        bias: whether the three linear layers have biases (False for CIFAR, True for ImageNet/Places).

    ``forward`` takes the accuracies ``a`` of shape (C,) or (N, C) and returns difficulties of the same
    shape, each in (0, 1).
    """

    def __init__(self, num_classes: int, hidden: int = 128, bias: bool = False):
        super().__init__()
        if num_classes < 1 or hidden < 1:
            raise ValueError(f"num_classes and hidden must be positive, got {num_classes} and {hidden}")
        self.num_classes = num_classes
        self.linear1 = nn.Linear(num_classes, hidden, bias=bias)
        self.linear2 = nn.Linear(hidden, hidden, bias=bias)
        self.linear3 = nn.Linear(hidden, num_classes, bias=bias)

    def forward(self, accuracies: torch.Tensor) -> torch.Tensor:
        if accuracies.ndim not in (1, 2) or accuracies.shape[-1] != self.num_classes:
            raise ValueError(
                f"accuracies must have shape ({self.num_classes},) or (N, {self.num_classes}), "
                f"got {tuple(accuracies.shape)}"
            )
        hidden = F.relu(self.linear2(F.relu(self.linear1(accuracies))))
        return torch.sigmoid(self.linear3(hidden))
