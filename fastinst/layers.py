"""Small building blocks shared by the backbone, the pixel decoder and the decoder.

Everything here is plain PyTorch. Attention uses ``F.scaled_dot_product_attention`` with the
``nn.MultiheadAttention`` parameter layout (packed ``in_proj_weight``), so official weights load
unchanged and the fused CPU/CUDA kernels are used.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters, as in detectron2.

    All four tensors are buffers (no ``num_batches_tracked``):
    ``y = x * s + (bias - running_mean * s)`` with ``s = weight * rsqrt(running_var + eps)``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def scale_shift(self) -> Tuple[Tensor, Tensor]:
        """``(scale (C,), shift (C,))`` with ``y = x * scale + shift``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        # one fused kernel (inference-mode batch norm), also in training where gradients flow to x
        dtype = x.dtype
        return F.batch_norm(x, self.running_mean.to(dtype), self.running_var.to(dtype), self.weight.to(dtype),
                            self.bias.to(dtype), training=False, momentum=0.0, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def make_norm(kind: str, channels: int) -> nn.Module:
    """Norm layer by name: ``FrozenBN`` | ``BN`` | ``SyncBN`` | ``GN`` (32 groups) | ``none``."""
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if kind == "BN":
        return nn.BatchNorm2d(channels)
    if kind == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if kind == "GN":
        return nn.GroupNorm(min(32, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected FrozenBN, BN, SyncBN, GN or none")


class Conv2dNorm(nn.Conv2d):
    """Convolution followed by an optional ``.norm`` and activation (detectron2's key layout:
    ``<name>.weight``, ``<name>.norm.*``).

    With ``fold_frozen_norm = True`` (set by :func:`fastinst.fast.prepare_for_training`) a
    :class:`FrozenBatchNorm2d` is applied to the weights instead of the output:
    ``conv(x, W * s) + (b * s + shift)`` equals ``conv(x, W, b) * s + shift`` up to float rounding,
    costs a weight-sized multiply instead of an activation-sized pass forward and backward, and
    gradients still reach ``W`` (and ``b``) through the multiply.
    """

    fold_frozen_norm: bool = False
    onednn_pointwise: bool = False  # set on the 1x1 convolutions of the inference fast path

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        norm: Optional[nn.Module] = None,
        activation: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.norm = norm
        self.activation = activation

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        """With ``onednn_pointwise`` (a 1x1, stride-1, unpadded convolution of the inference fast
        path, :func:`fastinst.fast.optimize_for_inference`), eager on CPU: oneDNN's convolution
        directly. PyTorch sends a 1x1 convolution of a batch under 16 with 1 thread to its GEMM path
        plus a bias copy, 1.4-2.2x slower than oneDNN on the R50's 144x192 maps on this project's CPU
        (the same numbers up to float rounding); with more threads it picks oneDNN itself. Traced,
        exported or compiled graphs get the standard operator."""
        if (self.onednn_pointwise and x.device.type == "cpu" and not torch.jit.is_tracing()
                and not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling()):
            return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(x, weight, bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.fold_frozen_norm and isinstance(self.norm, FrozenBatchNorm2d):
            scale, shift = self.norm.scale_shift()
            bias = shift if self.bias is None else self.bias * scale + shift
            x = self._conv_forward(x, self.weight * scale.view(-1, 1, 1, 1), bias)
        else:
            x = super().forward(x)
            if self.norm is not None:
                x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them. ``(..., in_dim) -> (..., out_dim)``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu_(x)  # in place: a Linear does not keep its output for backward
        return x


class Attention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters, batch-first.

    ``query (B,Lq,C)``, ``key (B,Lk,C)``, ``value (B,Lk,C)``; ``blocked`` is an optional bool mask
    ``(B,Lq,Lk)`` where True means *not allowed* (the official convention); it is shared by all
    heads. Rows that are all True must have been released by the caller.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, blocked: Optional[Tensor] = None) -> Tensor:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._split(F.linear(query, w_q, b_q))
        k = self._split(F.linear(key, w_k, b_k))
        v = self._split(F.linear(value, w_v, b_v))
        allowed = None if blocked is None else (~blocked).unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        batch, _, length, head_dim = out.shape
        out = out.transpose(1, 2).reshape(batch, length, self.num_heads * head_dim)
        return self.out_proj(out)

    def _split(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)


class AttentionBlock(nn.Module):
    """Post-norm residual attention: ``norm(x + attn(x + pos_x, mem + pos_mem, mem))``.

    Used for cross-attention (``memory`` given) and self-attention (``memory`` is ``x``).
    Shapes: ``x (B,Lq,C)``, ``memory (B,Lk,C)``, positions broadcastable to them.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        x_pos: Tensor,
        memory_pos: Tensor,
        blocked: Optional[Tensor] = None,
    ) -> Tensor:
        out = self.attn(x + x_pos, memory + memory_pos, memory, blocked)
        return self.norm(x + out)


class FeedForward(nn.Module):
    """Post-norm residual FFN: ``norm(x + linear2(relu(linear1(x))))``. ``(B,L,C) -> (B,L,C)``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.linear2(F.relu_(self.linear1(x))))
