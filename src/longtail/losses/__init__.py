"""Long-tailed classification losses (docs/methods/baselines.md §1).

Every loss is an ``nn.Module`` built with a keyword ``class_counts`` plus its hyper-parameters, maps
``(logits (B, C), target (B,))`` to a scalar, and has a ``weight`` attribute (``None`` or a (C,) tensor)
that a training method may reassign at any time, e.g. for deferred re-weighting. The representation
losses are the exception: DRO-LT's :class:`RobustLoss` takes features and centroids, and
:class:`BNSLoss` two views' embeddings and the labels.
"""

from longtail.losses.balanced_softmax import BalancedSoftmaxLoss
from longtail.losses.bns import BNSLoss
from longtail.losses.ce import CrossEntropy
from longtail.losses.diffnet import (
    DifficultyWeightedLoss,
    difficulty_class_weights,
    driver_loss,
    driver_target,
)
from longtail.losses.drolt import (
    FrequencyWeightedCE,
    RobustLoss,
    applied_epsilons,
    class_centroids,
    frequency_weights,
)
from longtail.losses.focal import FocalLoss
from longtail.losses.las import LabelAwareSmoothingLoss, cifar_las_smoothing, label_aware_smoothing
from longtail.losses.ldam import LDAMLoss, check_head_scale, ldam_margins
from longtail.losses.logit_adjust import LogitAdjustedLoss, posthoc_adjust
from longtail.losses.ride import DistillationLoss, RIDEDistillLoss, RIDELoss, ride_temperatures
from longtail.losses.weights import (
    ClassWeightedLoss,
    DeferredReweighting,
    class_balanced_weights,
    inverse_frequency_weights,
    log_prior,
)

__all__ = [
    "BalancedSoftmaxLoss",
    "BNSLoss",
    "ClassWeightedLoss",
    "CrossEntropy",
    "DeferredReweighting",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "class_balanced_weights",
    "inverse_frequency_weights",
    "check_head_scale",
    "ldam_margins",
    "log_prior",
    "posthoc_adjust",
    "DistillationLoss",
    "RIDEDistillLoss",
    "RIDELoss",
    "ride_temperatures",
    "FrequencyWeightedCE",
    "RobustLoss",
    "applied_epsilons",
    "class_centroids",
    "frequency_weights",
    "DifficultyWeightedLoss",
    "difficulty_class_weights",
    "driver_loss",
    "driver_target",
    "LabelAwareSmoothingLoss",
    "cifar_las_smoothing",
    "label_aware_smoothing",
]
