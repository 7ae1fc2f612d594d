"""Models: backbones by name, classifier heads, and the backbone + head network.

Importing this package registers every backbone (CIFAR ResNets, torchvision
ImageNet ResNets, the ``timm:`` family).
"""

from longtail.models import resnet_cifar_kuangliu, resnet_imagenet
from longtail.models.difficulty_net import DifficultyNet
from longtail.models.heads import HEADS, CosineHead, LinearHead, LWSHead, TauNormHead, create_head
from longtail.models.network import Network
from longtail.models.projector import Projector
from longtail.models.registry import create_backbone, list_backbones, register_backbone, register_backbone_family
from longtail.models.resnet_cifar import BasicBlock, ResNetCifar, ShortcutA, make_stage

__all__ = [
    "HEADS",
    "BasicBlock",
    "CosineHead",
    "DifficultyNet",
    "LWSHead",
    "LinearHead",
    "Network",
    "Projector",
    "ResNetCifar",
    "ShortcutA",
    "TauNormHead",
    "create_backbone",
    "create_head",
    "list_backbones",
    "make_stage",
    "register_backbone",
    "register_backbone_family",
    "resnet_cifar_kuangliu",
    "resnet_imagenet",
]
