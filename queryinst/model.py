"""QueryInst (Fang et al., ICCV 2021, "Instances as Queries"): backbone -> FPN -> learned proposals
-> S stages of dynamic instance interaction, each with its own box head and dynamic mask head.

The model is tensor in, tensor out; resizing, thresholds and pasting live in
:mod:`queryinst.postprocess` and :mod:`queryinst.predictor`. Official code: mmdetection 3.3.0
``QueryInst`` / ``SparseRoIHead`` (``mmdet/models/roi_heads/sparse_roi_head.py``).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from fastinst.model import InputSpec

from .boxes import decode_deltas
from .fpn import FPN
from .mask_head import DynamicMaskHead
from .proposals import EmbeddingProposals
from .roi import boxes_to_rois, multilevel_roi_align
from .stage import DIIStage

MASK_STAGES = ("none", "last", "all")


class QueryInst(nn.Module):
    """The full network. Takes built sub-modules (no config object).

    Args:
        backbone: ``(B,3,H,W) -> {"res2".."res5"}`` (strides 4..32).
        fpn: backbone maps -> ``[P2..P5]``.
        proposals: the learned boxes and query features.
        stages: one :class:`DIIStage` per stage (6 in the released configs).
        mask_heads: one :class:`DynamicMaskHead` per stage.
        input_spec: test resize (``min_size`` = short edge cap, ``max_size`` = long edge cap) and
            RGB normalisation.
        strides: pixels per cell of each FPN level.
        backbone_norm_eval: keep the backbone's BatchNorms in eval mode while training
            (mmdetection ``norm_eval=True``, the released configs).
    """

    def __init__(self, *, backbone: nn.Module, fpn: FPN, proposals: EmbeddingProposals,
                 stages: Sequence[DIIStage], mask_heads: Sequence[DynamicMaskHead], input_spec: InputSpec,
                 strides: Sequence[int] = (4, 8, 16, 32), box_roi_size: int = 7, mask_roi_size: int = 14,
                 backbone_norm_eval: bool = True) -> None:
        super().__init__()
        if len(stages) != len(mask_heads):
            raise ValueError(f"{len(stages)} stages but {len(mask_heads)} mask heads")
        self.backbone = backbone
        self.fpn = fpn
        self.proposals = proposals
        self.stages = nn.ModuleList(stages)
        self.mask_heads = nn.ModuleList(mask_heads)
        self.input_spec = input_spec
        self.strides = tuple(strides)
        self.box_roi_size = box_roi_size
        self.mask_roi_size = mask_roi_size
        self.backbone_norm_eval = backbone_norm_eval
        self.register_buffer("pixel_mean", torch.tensor(input_spec.pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(input_spec.pixel_std).view(3, 1, 1), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.stages[0].fc_cls.out_features

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def num_proposals(self) -> int:
        return self.proposals.num_proposals

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def train(self, mode: bool = True) -> "QueryInst":
        super().train(mode)
        if mode and self.backbone_norm_eval:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def preprocess(self, images: Sequence[Tensor]) -> Tuple[Tensor, List[Tuple[int, int]]]:
        """``[(3,H_i,W_i) RGB 0..255]`` -> ``(B,3,Hp,Wp)`` normalised, then zero-padded at the
        bottom/right to a multiple of ``size_divisibility`` (mmdetection ``DetDataPreprocessor``:
        padding after normalisation), and the unpadded ``(H_i, W_i)``."""
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        div = self.input_spec.size_divisibility
        height = -(-max(h for h, _ in sizes) // div) * div
        width = -(-max(w for _, w in sizes) // div) * div
        batch = torch.zeros(len(images), 3, height, width, device=self.device)
        for i, im in enumerate(images):
            batch[i, :, : sizes[i][0], : sizes[i][1]] = (im.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
        return batch, sizes

    def pyramid(self, images: Tensor) -> List[Tensor]:
        """``(B,3,Hp,Wp)`` -> ``[P2..P5]`` FPN maps."""
        return self.fpn(list(self.backbone(images).values()))

    def box_roi_features(self, features: Sequence[Tensor], boxes: Tensor) -> Tensor:
        """``boxes (B,N,4)`` xyxy input pixels -> ``(B*N,C,7,7)`` RoIAlign features."""
        return multilevel_roi_align(features, boxes_to_rois(boxes), self.strides, self.box_roi_size)

    def mask_forward(self, stage: int, features: Sequence[Tensor], rois: Tensor, queries: Tensor) -> Tensor:
        """Stage ``stage``'s mask head: ``rois (K,5)`` (image index, xyxy), ``queries (K,C)`` that
        stage's ``attn_feats`` -> mask logits ``(K,num_classes,28,28)`` (official ``_mask_forward``)."""
        roi_features = multilevel_roi_align(features, rois, self.strides, self.mask_roi_size)
        return self.mask_heads[stage](queries, roi_features)

    def forward(self, images: Tensor, image_sizes: Sequence[Tuple[int, int]], mask_stages: str = "last"
                ) -> Dict[str, object]:
        """Run every stage.

        Args:
            images: ``(B,3,Hp,Wp)`` from :meth:`preprocess`.
            image_sizes: unpadded ``(h, w)`` per image (the proposals are scaled by them).
            mask_stages: which stages run their mask head on all N queries: ``"last"`` (official
                inference), ``"all"`` (every stage on its own refined boxes, as training does;
                for explanations) or ``"none"`` (training computes masks of matched queries only).

        Returns a dict with ``features`` (``[P2..P5]``), ``proposal_boxes (B,N,4)`` and ``stages``,
        one dict per stage: ``rois (B,N,4)`` its input boxes, ``boxes (B,N,4)`` its refined boxes
        (xyxy input pixels, not clipped), ``class_logits (B,N,K)``, ``deltas (B,N,4)``,
        ``attn_feats``/``object_feats (B,N,C)`` and, where requested, ``mask_logits (B,N,K,28,28)``.
        """
        if mask_stages not in MASK_STAGES:
            raise ValueError(f"mask_stages must be one of {MASK_STAGES}, got {mask_stages!r}")
        features = self.pyramid(images)
        boxes, queries = self.proposals(image_sizes)
        proposal_boxes = boxes
        batch, num = boxes.shape[:2]
        out_stages = []
        for s, stage in enumerate(self.stages):
            rois = boxes
            result = stage(queries, self.box_roi_features(features, rois))
            refined = decode_deltas(rois.reshape(-1, 4), result["deltas"].reshape(-1, 4)).view(batch, num, 4)
            result.update(rois=rois, boxes=refined)
            if mask_stages == "all" or (mask_stages == "last" and s == len(self.stages) - 1):
                logits = self.mask_forward(s, features, boxes_to_rois(refined),
                                           result["attn_feats"].reshape(batch * num, -1))
                result["mask_logits"] = logits.view(batch, num, *logits.shape[1:])
            out_stages.append(result)
            boxes, queries = refined.detach(), result["object_feats"]
        return {"features": features, "proposal_boxes": proposal_boxes, "stages": out_stages}
