"""Classifier heads: features (B, D) -> logits (B, C).

* :class:`LinearHead`: the usual ``Wf + b`` (CE, Focal, cRT, …).
* :class:`CosineHead`: LDAM-DRW's ``NormedLinear`` (docs/methods/baselines.md §1, docs/methods/ride.md §1),
  scale included, so losses receive scaled logits.
* :class:`TauNormHead` and :class:`LWSHead`: the decoupled classifier stages of
  Kang et al. (arXiv 1910.09217, docs/methods/baselines.md §3) built on a stage-1 linear head.

Heads are also available by name (``"linear"``, ``"cosine"``) through
:func:`create_head`, for configs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class LinearHead(nn.Linear):
    """Linear classifier with ``weight`` (C, D) and optional ``bias`` (C).

    Args:
        init: ``"kaiming_normal"`` (default) as LDAM-DRW's CIFAR ResNets
            (``_weights_init``, the bias keeps PyTorch's init), or ``"default"``
            for PyTorch's ``nn.Linear`` init as in torchvision / classifier-balancing.
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True, init: str = "kaiming_normal"):
        super().__init__(in_features, num_classes, bias=bias)
        if init == "kaiming_normal":
            nn.init.kaiming_normal_(self.weight)
        elif init != "default":
            raise ValueError(f"unknown init '{init}'; use 'kaiming_normal' or 'default'")


class CosineHead(nn.Module):
    """Cosine classifier: ``scale · ⟨f/‖f‖, w_c/‖w_c‖⟩``, no bias (LDAM-DRW ``NormedLinear``).

    The weight has shape (D, C) as in the reference, initialised uniform(−1, 1)
    and then every column rescaled to unit norm.
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0):
        super().__init__()
        self.in_features = in_features
        self.out_features = num_classes
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(in_features, num_classes))
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(features, dim=1).mm(F.normalize(self.weight, dim=0))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}"


def _frozen_copy(linear: nn.Linear) -> nn.Linear:
    frozen = copy.deepcopy(linear)
    frozen.requires_grad_(False)
    return frozen


class TauNormHead(nn.Module):
    """τ-normalised classifier: ``f · (w_c / ‖w_c‖^τ)``, bias dropped, nothing trainable.

    Computed from ``linear.weight`` at every call, so ``tau`` can be changed
    (swept on val) and the linear layer reloaded without rebuilding the head.
    As in classifier-balancing's ``tau_norm.py``, the bias is dropped at every
    τ, so τ = 0 is not the stage-1 classifier.

    Args:
        linear: the stage-1 linear head; a frozen copy is kept as ``self.linear``.
        tau: the exponent.
    """

    def __init__(self, linear: nn.Linear, tau: float = 1.0):
        super().__init__()
        self.linear = _frozen_copy(linear)
        self.tau = tau
        self.out_features = linear.out_features

    def normalized_weight(self) -> torch.Tensor:
        """``W_c / ‖W_c‖_2^τ`` row-wise (a zero row stays zero)."""
        weight = self.linear.weight
        norms = weight.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)
        return weight / norms.pow(self.tau)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.mm(self.normalized_weight().t())

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


class LWSHead(nn.Module):
    """Learnable weight scaling: ``s ⊙ (W f + b)`` with (W, b) frozen, ``scales`` s init 1.

    The scale multiplies the bias too, as in classifier-balancing
    ``models/TauNormClassifier.py`` (docs/methods/baselines.md §6, B6). Any head can be scaled (a cosine
    head too), and with ``train_linear`` the wrapped head keeps training alongside s
    (Difficulty-Net's CIFAR stage 2: cRT from the stage-1 classifier plus LWS, docs/methods/diffnet.md §4).

    Args:
        linear: the stage-1 head; a (frozen unless ``train_linear``) copy is kept as ``self.linear``.
        train_linear: train the wrapped head's parameters too.
    """

    def __init__(self, linear: nn.Module, train_linear: bool = False):
        super().__init__()
        self.linear = copy.deepcopy(linear) if train_linear else _frozen_copy(linear)
        self.out_features = linear.out_features
        self.scales = nn.Parameter(torch.ones(linear.out_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scales * self.linear(features)


HEADS: dict[str, Callable[..., nn.Module]] = {"linear": LinearHead, "cosine": CosineHead}


def create_head(name: str, in_features: int, num_classes: int, **kwargs) -> nn.Module:
    """Build the head registered as ``name`` in :data:`HEADS`."""
    if name not in HEADS:
        raise KeyError(f"unknown head '{name}'; available: {', '.join(sorted(HEADS))}")
    return HEADS[name](in_features, num_classes, **kwargs)
