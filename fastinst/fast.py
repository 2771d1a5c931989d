"""The inference fast path: the same network, rewritten for speed without changing its outputs.

:func:`optimize_for_inference` returns a copy of a :class:`~fastinst.model.FastInst` in which

- every frozen (or eval-mode) BatchNorm that follows a convolution is folded into the convolution's
  weight and bias (``W' = W * s``, ``b' = b * s + (beta - mean * s)`` with
  ``s = gamma / sqrt(var + eps)``, the FrozenBatchNorm2d formula of detectron2);
- the prediction heads apply the pixel projection to the queries instead of the pixels
  (:class:`~fastinst.decoder.PredictionHead`, ``project_queries``);
- the 1x1 convolutions run through oneDNN on CPU (:func:`use_onednn_for_pointwise`; with one
  thread PyTorch would otherwise send them to a slower GEMM path);
- the weights are in channels-last (NHWC) memory format, the layout oneDNN's CPU convolutions and
  cuDNN's tensor-core kernels prefer; GroupNorm, bilinear resizing and the decoder's flatten work
  on it without copies;
- optionally, the backbone and pixel decoder are compiled with ``torch.compile`` (see
  :func:`compile_convolutions`).

The post-processing half of the fast path is :func:`fastinst.postprocess.instance_inference_lowres`.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn

from .backbones.resnet_d import BottleneckD, ResNetD
from .decoder import PredictionHead
from .layers import Conv2dNorm, FrozenBatchNorm2d
from .model import FastInst


def norm_scale_shift(norm: nn.Module) -> Optional[tuple]:
    """``(scale (C,), shift (C,))`` of a FrozenBatchNorm2d or an eval-mode BatchNorm2d, else None."""
    if isinstance(norm, FrozenBatchNorm2d):
        return norm.scale_shift()
    if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats:
        weight = norm.weight if norm.affine else torch.ones_like(norm.running_mean)
        bias = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
        scale = weight * (norm.running_var + norm.eps).rsqrt()
        return scale, bias - norm.running_mean * scale
    return None


@torch.no_grad()
def fold_norm_into(conv: nn.Module, norm: nn.Module) -> bool:
    """Fold ``norm`` (applied right after ``conv``) into ``conv``'s weight and bias, in place.

    ``conv`` is an ``nn.Conv2d`` (a bias is added when it has none) or a :class:`~fastinst.backbones.resnet_d.DeformConv2d`
    (which then gets a ``bias``). Returns False (nothing changed) when ``norm`` is not foldable
    (GroupNorm, training-mode BatchNorm).
    """
    folded = norm_scale_shift(norm)
    if folded is None:
        return False
    scale, shift = (t.detach().float() for t in folded)
    weight = conv.weight.detach().float()
    conv.weight = nn.Parameter((weight * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype), requires_grad=False)
    old_bias = getattr(conv, "bias", None)
    bias = shift if old_bias is None else old_bias.detach().float() * scale + shift
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    return True


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every foldable norm that directly follows a convolution, in place; returns how many.

    Covers :class:`Conv2dNorm` (``.norm``), ``nn.Sequential`` runs ``(Conv2d, norm)`` (ResNet-d stem
    and downsample), and the ``convN``/``bnN`` pairs of ResNet-d (:class:`BottleneckD`, :class:`ResNetD`).
    """
    count = 0
    for module in list(model.modules()):
        if isinstance(module, Conv2dNorm) and module.norm is not None and fold_norm_into(module, module.norm):
            module.norm = None
            count += 1
        elif isinstance(module, nn.Sequential):
            children = list(module.children())
            for i in range(1, len(children)):
                if isinstance(children[i - 1], nn.Conv2d) and fold_norm_into(children[i - 1], children[i]):
                    module[i] = nn.Identity()
                    count += 1
        elif isinstance(module, BottleneckD):
            for k in (1, 2, 3):
                if fold_norm_into(getattr(module, f"conv{k}"), getattr(module, f"bn{k}")):
                    setattr(module, f"bn{k}", nn.Identity())
                    count += 1
        elif isinstance(module, ResNetD):
            if isinstance(module.conv1[-1], nn.Conv2d) and fold_norm_into(module.conv1[-1], module.bn1):
                module.bn1 = nn.Identity()
                count += 1
    return count


def optimize_for_inference(model: FastInst, *, channels_last: bool = True, compile: bool = False) -> FastInst:
    """An eval-mode copy of ``model`` with norms folded and (optionally) channels-last weights.

    The copy shares nothing with ``model`` (training it further does not change the copy), carries
    ``fast_path = True`` and ``channels_last`` attributes that :class:`~fastinst.predictor.Predictor`
    reads, and has no gradients. Outputs equal the original's within float32 rounding (the reference
    tests run both paths against the official vectors).
    """
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    fold_batch_norms(fast)
    use_onednn_for_pointwise(fast)
    for module in fast.modules():
        if isinstance(module, PredictionHead):
            module.project_queries = True
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    fast.fast_path = True
    fast.channels_last = channels_last
    if compile:
        compile_convolutions(fast)
    return fast


def use_onednn_for_pointwise(model: nn.Module) -> int:
    """Mark every 1x1, stride-1, unpadded, ungrouped :class:`Conv2dNorm` to run through oneDNN on
    CPU (see :meth:`Conv2dNorm._conv_forward`), in place, for inference only; returns how many
    (0 when PyTorch was built without oneDNN)."""
    if not torch.backends.mkldnn.is_available():
        return 0
    count = 0
    for module in model.modules():
        if (isinstance(module, Conv2dNorm) and module.kernel_size == (1, 1) and module.stride == (1, 1)
                and module.padding == (0, 0) and module.dilation == (1, 1) and module.groups == 1):
            module.onednn_pointwise = True
            count += 1
    return count


def prepare_for_training(model: nn.Module, *, channels_last: bool = False) -> nn.Module:
    """The training half of the fast path, in place; returns ``model``.

    Every :class:`~fastinst.layers.Conv2dNorm` followed by a :class:`FrozenBatchNorm2d` applies the
    norm to its weights instead of its output (``fold_frozen_norm``; the FrozenBN of the ResNet
    backbones, detectron2's ``NORM: FrozenBN``): one activation-sized pass forward and one backward
    fewer per convolution, same parameters, same state dict, gradients equal within float32
    rounding. ``channels_last`` also puts the weights in NHWC memory format (the parameters stay
    the same objects, so an optimizer built before keeps working). On this project's CPU, 1 thread,
    D1-R50-576, it saved a few percent of the step's CPU time in two runs
    (``benchmarks/bench_train_step.py --channels-last``: 0.86 of the straight step against 0.90);
    off by default. On a GPU cuDNN prefers it.
    """
    for module in model.modules():
        if isinstance(module, Conv2dNorm) and isinstance(module.norm, FrozenBatchNorm2d):
            module.fold_frozen_norm = True
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def compile_convolutions(model: FastInst, **options) -> FastInst:
    """Wrap the backbone and the pixel decoder in ``torch.compile`` (in place).

    Only the convolutional part is compiled: its shapes depend only on the padded input size, so a
    compiled graph is reused for every image of the same size bucket (see :mod:`fastinst.cuda`),
    while the query proposal's data-dependent top-k and the decoder stay eager. ``dynamic=False``
    compiles one specialised graph per input size.
    """
    options.setdefault("dynamic", False)
    model.backbone = torch.compile(model.backbone, **options)
    model.pixel_decoder = torch.compile(model.pixel_decoder, **options)
    return model


def prepare_batch(model: FastInst, batch: Tensor) -> Tensor:
    """The input layout ``model`` expects: channels-last for a channels-last fast-path model."""
    if getattr(model, "channels_last", False):
        return batch.contiguous(memory_format=torch.channels_last)
    return batch
