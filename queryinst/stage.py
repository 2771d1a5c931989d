"""One QueryInst stage's box part: the dynamic instance interaction head (mmdetection ``DIIHead``).

Per stage (paper section 3; Sparse R-CNN section 3.3), for the N queries of each image:

1. ``attn = LN(q + MHA(q))``: self-attention among the queries (8 heads, no positional term).
   ``attn`` is also what the stage's mask head takes as its query.
2. ``obj = LN(attn + DynamicConv(attn, RoI 7x7))`` then ``obj = LN(obj + FFN(obj))``.
3. class logits ``fc_cls(ReLU(LN(Linear(obj))))`` (sigmoid classes, no background column) and box
   deltas ``fc_reg(3 x [ReLU(LN(Linear(.)))](obj))`` (both Linear layers bias-free before LN).
"""
from __future__ import annotations

from typing import Dict

from torch import Tensor, nn

from .dynamic_conv import DynamicConv


def _fc_ln_relu(dim: int, count: int) -> nn.Sequential:
    layers = []
    for _ in range(count):
        layers += [nn.Linear(dim, dim, bias=False), nn.LayerNorm(dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DIIStage(nn.Module):
    """Args:
        num_classes: K (sigmoid classification, no background logit).
        dim: query channels (256).
        num_heads: self-attention heads (8).
        ffn_dim: FFN hidden width (2048).
        feat_channels: DynamicConv hidden width (64).
        roi_size: box RoI side (7).
        num_cls_fcs / num_reg_fcs: Linear+LN+ReLU blocks before ``fc_cls`` (1) / ``fc_reg`` (3).
        dropout: attention / FFN dropout (0 in the released configs).
    """

    def __init__(self, num_classes: int, *, dim: int = 256, num_heads: int = 8, ffn_dim: int = 2048,
                 feat_channels: int = 64, roi_size: int = 7, num_cls_fcs: int = 1, num_reg_fcs: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.self_attn_norm = nn.LayerNorm(dim)
        self.dynamic_conv = DynamicConv(dim, feat_channels, roi_size, with_proj=True)
        self.dynamic_conv_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim), nn.Dropout(dropout))
        self.ffn_norm = nn.LayerNorm(dim)
        self.cls_fcs = _fc_ln_relu(dim, num_cls_fcs)
        self.fc_cls = nn.Linear(dim, num_classes)
        self.reg_fcs = _fc_ln_relu(dim, num_reg_fcs)
        self.fc_reg = nn.Linear(dim, 4)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: Tensor, roi_features: Tensor) -> Dict[str, Tensor]:
        """``queries (B,N,C)``, ``roi_features (B*N,C,7,7)`` (query-major per image) -> dict of
        ``attn_feats (B,N,C)``, ``object_feats (B,N,C)``, ``class_logits (B,N,K)``, ``deltas (B,N,4)``."""
        batch, num, dim = queries.shape
        attended, _ = self.self_attn(queries, queries, queries, need_weights=False)
        attn_feats = self.self_attn_norm(queries + self.dropout(attended))
        flat = attn_feats.reshape(batch * num, dim)
        obj = self.dynamic_conv_norm(flat + self.dropout(self.dynamic_conv(flat, roi_features)))
        obj = self.ffn_norm(obj + self.ffn(obj))
        class_logits = self.fc_cls(self.cls_fcs(obj))
        deltas = self.fc_reg(self.reg_fcs(obj))
        return {
            "attn_feats": attn_feats,
            "object_feats": obj.view(batch, num, dim),
            "class_logits": class_logits.view(batch, num, -1),
            "deltas": deltas.view(batch, num, 4),
        }
