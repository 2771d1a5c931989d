"""Backbones: ``(B,3,H,W) -> {"res2".."res5"}`` with an ``out_channels`` dict."""
from .resnet import ResNet
from .resnet_d import ResNetD

__all__ = ["ResNet", "ResNetD"]
