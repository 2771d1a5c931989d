"""The GPU half of the fast path: autocast, ``torch.compile`` over a few fixed size buckets with
CUDA graphs, pinned host memory and asynchronous copies.

:class:`AcceleratedForward` wraps a fast-path model (:func:`fastinst.fast.optimize_for_inference`)
and is what :class:`~fastinst.predictor.Predictor` calls when given a :class:`CudaConfig`:

- **size buckets**: each batch is zero-padded (bottom/right, after normalisation, as the official
  padding) to the smallest configured bucket that holds it, so a compiled graph and its CUDA graph
  are reused instead of recompiled for every image size. Padding beyond the multiple of 32 is what
  the official batched inference also does (it pads to the batch's largest image); the results are
  cropped to the image as usual. A batch larger than every bucket runs eagerly at its own size.
  The extra padding changes what the network sees, so an image whose padded size is not a bucket
  gets other predictions than alone (on the demo model, another top-4 for a 4:3 image in a 128x128
  bucket): choose buckets equal to the padded sizes of the images predicted (the benchmark prints
  this variant's agreement with the straightforward path).
- **autocast** to bfloat16 (default) or float16 on CUDA; outputs are returned in float32.
- **torch.compile** of the backbone and pixel decoder with ``mode="reduce-overhead"`` (CUDA graphs)
  and ``dynamic=False``: one graph per bucket.
- **pinned memory**: :func:`to_device` copies uint8 images through page-locked memory with
  ``non_blocking=True``, so the copy overlaps the host's work.

On CPU (or when CUDA is absent) every option falls back to the plain fast path: no autocast, no
compilation, no bucket padding (CPU results stay equal to the official ones).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .fast import compile_convolutions, prepare_batch
from .model import FastInst

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


@dataclass(frozen=True)
class CudaConfig:
    """GPU options. ``amp``: ``bf16`` | ``fp16`` | ``none``; ``buckets``: padded ``(H, W)`` sizes
    (multiples of 32) to compile for, e.g. ``((576, 768), (768, 576))`` for D1 on 4:3 images."""

    amp: str = "bf16"
    compile: bool = True
    cuda_graphs: bool = True
    buckets: Tuple[Tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of {', '.join(AMP_DTYPES)}, got {self.amp!r}")
        for h, w in self.buckets:
            if h % 32 or w % 32:
                raise ValueError(f"bucket {h}x{w} is not a multiple of 32")


def bucket_for(size: Tuple[int, int], buckets: Sequence[Tuple[int, int]]) -> Optional[Tuple[int, int]]:
    """The smallest-area bucket ``(H, W)`` with ``H >= size[0]`` and ``W >= size[1]``; None if none fits."""
    fitting = [b for b in buckets if b[0] >= size[0] and b[1] >= size[1]]
    return min(fitting, key=lambda b: (b[0] * b[1], b)) if fitting else None


def pad_to(batch: Tensor, size: Tuple[int, int]) -> Tensor:
    """Zero-pad ``batch (B,3,H,W)`` at the bottom/right to ``size``; the memory format is kept."""
    extra_h, extra_w = size[0] - batch.shape[-2], size[1] - batch.shape[-1]
    if extra_h < 0 or extra_w < 0:
        raise ValueError(f"cannot pad {tuple(batch.shape[-2:])} to the smaller {size}")
    if extra_h == 0 and extra_w == 0:
        return batch
    padded = F.pad(batch, (0, extra_w, 0, extra_h))
    if batch.is_contiguous(memory_format=torch.channels_last):
        padded = padded.contiguous(memory_format=torch.channels_last)
    return padded


def to_device(image: Tensor, device: torch.device) -> Tensor:
    """Copy a host tensor to ``device``: through pinned memory, asynchronously, on CUDA; as is elsewhere."""
    if device.type != "cuda" or image.device.type == "cuda":
        return image.to(device)
    return image.pin_memory().to(device, non_blocking=True)


class AcceleratedForward:
    """``model(batch)`` with the options of :class:`CudaConfig` where the device allows them.

    ``__call__(batch (B,3,H,W)) -> (output dict with float32 tensors, padded size (H', W'))``.
    """

    def __init__(self, model: FastInst, config: CudaConfig) -> None:
        self.model = model
        self.config = config
        self.on_cuda = model.device.type == "cuda"
        self.dtype = AMP_DTYPES[config.amp] if self.on_cuda else None
        if self.on_cuda and config.compile:
            mode = "reduce-overhead" if config.cuda_graphs else "default"
            compile_convolutions(model, mode=mode)

    def padded_size(self, size: Tuple[int, int]) -> Tuple[int, int]:
        """The size a batch of padded size ``size`` runs at (its bucket on CUDA, itself otherwise)."""
        if not self.on_cuda:
            return tuple(size)
        return bucket_for(tuple(size), self.config.buckets) or tuple(size)

    def __call__(self, batch: Tensor) -> Tuple[Dict[str, object], Tuple[int, int]]:
        size = self.padded_size((int(batch.shape[-2]), int(batch.shape[-1])))
        batch = pad_to(prepare_batch(self.model, batch), size)
        with torch.autocast("cuda", dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            out = self.model(batch)
        return _to_float(out), size


def _to_float(value):
    """Floating tensors of a (nested) output to float32; everything else unchanged."""
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _to_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_float(v) for v in value]
    return value
